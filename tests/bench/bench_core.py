"""The streaming core's figures in one command (issue: one core, half the CPU).

Not collected by pytest. Run from the repository root:

    python tests/bench/bench_core.py [--rounds 10] [--slow 1000] [--era E3] [--profile out.prof]
                                     [--worker-figures] [--no-single] [--slow-rounds 3]

Starts the simulator and the proxy (gunicorn, one gevent worker) on free
local ports and prints, for the proxy and straight from the simulator:

- 1 stream and 32 concurrent streams, each answer 2,000 characters in 40
  cumulative snapshots 10 ms apart (the issue's workload; the simulator runs
  the 2026 protocol, the proxy's default profile): first-token time p50/p99
  (direct, proxy, overhead), the worker's CPU milliseconds per completion, and
  the simulator's own CPU milliseconds per answer served directly (``sim cpu``:
  what producing the same answer costs the upstream stand-in, for the ratio);
- ``--slow`` concurrent slow streams (one event per second, ``--slow-events``
  long, started over ``--slow-spread`` seconds so that all are open at once
  at an arrival rate one worker admits): first-token p99 overhead and the
  worker's peak RSS.

``--worker-figures`` adds, under each phase, the worker's own share measured
inside it (``_gunicorn_worker_figures.py``): request to upstream request, first
event to the client, the event loop's stalls, and the garbage collector's
pauses over 2 ms by generation (wall time; ``cpu``: the worker's own CPU in
them). On a small machine the client and the simulator share the cores with
the worker, and their pauses show in the client's first-token figures; these
are the worker's alone. (The measuring costs a little CPU: take CPU figures
from a run without it.)

``--profile x.yappi`` (or ``x.prof``, ``x.txt``) runs the worker under a
profiler for the whole run (see ``_gunicorn_profiled.py``). Deterministic
profilers inflate Python-heavy code several times over; a sampling profiler
attached to the worker (``py-spy record --pid WORKER``) shows the real split.

Everything stays on 127.0.0.1.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import psutil  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from glm_proxy.upstream.signing import signature_headers  # noqa: E402
from tests.bench._proxy_env import PROFILE_OF_ERA, add_era_option, proxy_env  # noqa: E402
from tests.bench.bench_stream import (  # noqa: E402
    SECRET,
    access_token,
    closed_loop,
    direct_request,
    percentile,
    run_concurrently,
    sample_rss,
    session,
    worker_process,
)
from tests.conftest import free_port, wait_http  # noqa: E402

FAST = "bench [[sim:long n=40 chars=2000 delay=0.01 chunk=0]]"  # the workload
SLOW = "slow [[sim:long n={n} delay=1 chunk=0]]"
WARM = "warm [[sim:text chunk=0]]"
SHORT = "short [[sim:long n=1 chars=50 delay=0.01 chunk=0]]"  # one event: the per-request cost


def first_token_proxy(http, base: str, token: str, prompt: str) -> float:
    """Seconds to the first content chunk; bytes are looked at as they arrive."""
    return first_token_and_head(http, base, token, prompt)[1]


def first_token_and_head(http, base: str, token: str, prompt: str) -> tuple[float, float]:
    """Seconds to the parsed response head, and to the first content chunk.

    The proxy's head goes out with the first event (the status waits for it),
    so the client parses the head on the first token's path; the simulator's
    head arrives before its first event, and is parsed while it thinks.
    """
    started = time.perf_counter()
    first = float("nan")
    with http.post(
        f"{base}/v1/chat/completions",
        json={"model": "glm-4", "stream": True, "messages": [{"role": "user", "content": prompt}]},
        headers={"Authorization": f"Bearer {token}"},
        stream=True,
        timeout=300,
    ) as resp:
        head = time.perf_counter() - started
        resp.raise_for_status()
        seen = b""
        for data in resp.iter_content(chunk_size=None):
            if first != first:  # not yet
                seen += data
                if b'"content":"' in seen.replace(b'"content":""', b""):
                    first = time.perf_counter() - started
    return head, first


def first_token_direct(http, sim: str, access: str, prompt: str) -> float:
    """The same, straight from the simulator (then the conversation is deleted)."""
    headers, body = direct_request(access, prompt)
    started = time.perf_counter()
    first = None
    seen = b""
    with http.post(
        f"{sim}/chatglm/backend-api/assistant/stream",
        json=body,
        headers=headers,
        stream=True,
        timeout=300,
    ) as resp:
        for data in resp.iter_content(chunk_size=None):
            seen += data
            if first is None and b'"type":"text"' in seen:
                first = time.perf_counter() - started
    marker = b'"conversation_id":"'
    if marker in seen:
        conversation = seen.split(marker)[1].split(b'"')[0].decode()
        headers.update(signature_headers(int(time.time() * 1000), uuid.uuid4().hex, SECRET))
        http.post(
            f"{sim}/chatglm/backend-api/assistant/conversation/delete",
            json={"assistant_id": body["assistant_id"], "conversation_id": conversation},
            headers=headers,
        )
    return first if first is not None else float("nan")


def answer_length(http, base: str) -> int:
    """Characters of the benchmark's answer, read back through the proxy (the issue: 2,000)."""
    resp = http.post(
        f"{base}/v1/chat/completions",
        json={"model": "glm-4", "messages": [{"role": "user", "content": FAST}]},
        headers={"Authorization": f"Bearer core-length-{uuid.uuid4().hex[:8]}"},
        timeout=60,
    )
    resp.raise_for_status()
    return len(resp.json()["choices"][0]["message"]["content"])


def start(args) -> tuple[subprocess.Popen, subprocess.Popen, str, str]:
    sim_port, proxy_port = free_port(), free_port()
    sim = subprocess.Popen(
        [sys.executable, "-m", "tests.simulator", "--host", "127.0.0.1", "--port", str(sim_port)]
        + ["--chunk-size", "0", "--era", args.era],  # E3: the 2026 upstream, the default profile
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = proxy_env(
        proxy_port,
        sim_port,
        QUEUE_TIMEOUT="120",
        QUEUE_MAX="5000",
        GLM_PROTOCOL=PROFILE_OF_ERA[args.era],
    )
    config = "gunicorn.conf.py"
    if args.profile:
        env["GLM_PROXY_PROFILE"] = args.profile
        config = str(Path(__file__).with_name("_gunicorn_profiled.py"))
    elif args.worker_figures:
        env["GLM_BENCH_WORKER_FIGURES"] = args.worker_figures
        config = str(Path(__file__).with_name("_gunicorn_worker_figures.py"))
    proxy = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", config, "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return sim, proxy, f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{proxy_port}"


def phase(
    http, sim_base, proxy_base, worker, k: int, rounds: int, prompt: str, spread: float, sim=None
):
    tokens = [f"core-{k}-{i}-{uuid.uuid4().hex[:8]}" for i in range(k)]
    run_concurrently(min(k, 100), first_token_proxy, [(http, proxy_base, t, WARM) for t in tokens])
    accesses = run_concurrently(
        min(k, 100), lambda t: access_token(http, sim_base, t), [(t,) for t in tokens]
    )
    sim_before = sim.cpu_times() if sim is not None else None
    direct = closed_loop(
        first_token_direct, [(http, sim_base, a, prompt) for a in accesses], rounds, spread
    )
    sim_cpu = float("nan")
    if sim is not None:
        sim_after = sim.cpu_times()
        sim_cpu = (sim_after.user - sim_before.user) + (sim_after.system - sim_before.system)
        sim_cpu = sim_cpu * 1000 / (k * rounds)
    peaks = [worker.memory_info().rss]
    sampler = gevent.spawn(sample_rss, worker, peaks)
    before = worker.cpu_times()
    began = time.time()
    through = closed_loop(
        first_token_proxy, [(http, proxy_base, t, prompt) for t in tokens], rounds, spread
    )
    after = worker.cpu_times()
    ended = time.time()
    cpu = (after.user - before.user) + (after.system - before.system)
    user = after.user - before.user
    sampler.kill()
    direct = [d * 1000 for d in direct if d == d]
    through = [t * 1000 for t in through if t == t]
    return {
        "k": k,
        "completions": k * rounds,
        "missing": k * rounds - len(through),
        "cpu_ms": cpu * 1000 / (k * rounds),
        "user_ms": user * 1000 / (k * rounds),
        "d50": percentile(direct, 0.5),
        "d99": percentile(direct, 0.99),
        "p50": percentile(through, 0.5),
        "p99": percentile(through, 0.99),
        "rss": max(peaks) / 2**20,
        "sim_ms": sim_cpu,  # the simulator's CPU per direct answer (it also serves the proxy)
        "window": (began, ended),
    }


def worker_figures(path: str, window: tuple[float, float]) -> str:
    """The worker's own lines (``_gunicorn_worker_figures.py``) of one phase, summed up."""
    time.sleep(1.2)  # the worker flushes every second
    began, ended = window
    seen: dict[str, list[float]] = {"request": [], "deliver": [], "stall": []}
    collections: dict[str, list[float]] = {}
    with open(path) as lines:
        for line in lines:
            kind, at, ms = line.split()
            if began <= float(at) <= ended:
                (seen[kind] if kind in seen else collections.setdefault(kind, [])).append(float(ms))
    request, deliver, stalls = seen["request"], seen["deliver"], seen["stall"]
    return (
        f"{'  worker alone':<22} request->upstream p50/p99 {percentile(request, 0.5):.2f}/"
        f"{percentile(request, 0.99):.2f} ms; first event->client p50/p99 "
        f"{percentile(deliver, 0.5):.2f}/{percentile(deliver, 0.99):.2f} ms; "
        f"loop stalls over 10 ms: {len(stalls)}, longest {max(stalls, default=0):.1f} ms"
        + "".join(
            f"; {kind} over 2 ms: {len(ms)}, longest {max(ms):.1f}"
            for kind, ms in sorted(collections.items())
        )
    )


def show(label: str, r: dict) -> None:
    print(
        f"{label:<22} {r['d50']:>7.1f} {r['d99']:>7.1f} {r['p50']:>7.1f} {r['p99']:>7.1f} "
        f"{r['p50'] - r['d50']:>7.1f} {r['p99'] - r['d99']:>7.1f} {r['cpu_ms']:>8.2f} "
        f"{r['rss']:>7.1f} {r['user_ms']:>9.2f} {r['sim_ms']:>8.2f}"
        + (f"  ({r['missing']} streams had no content)" if r["missing"] else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--slow", type=int, default=1000, help="slow streams (0 = skip)")
    parser.add_argument(
        "--no-single",
        action="store_true",
        help="skip the one-stream phase (the longest): for interleaved CPU comparisons",
    )
    parser.add_argument(
        "--short",
        action="store_true",
        help="also 32 streams of one-event answers: what each request costs besides its events",
    )
    parser.add_argument("--slow-events", type=int, default=12, help="events per slow stream")
    parser.add_argument(
        "--slow-rounds",
        type=int,
        default=1,
        help="slow streams answered this many times each, their first tokens pooled: a p99 "
        "of several thousand answers moves less between runs than one of a thousand",
    )
    parser.add_argument(
        "--slow-spread", type=float, default=10.0, help="seconds over which slow streams start"
    )
    parser.add_argument("--profile", default="", help="profile the worker: x.yappi, x.prof, x.txt")
    parser.add_argument(
        "--worker-figures",
        action="store_const",
        const=str(Path(tempfile.gettempdir()) / f"glm-bench-worker-{uuid.uuid4().hex[:8]}.txt"),
        default="",
        help="also print the worker's own share, measured inside it (costs some CPU)",
    )
    add_era_option(parser)
    args = parser.parse_args()
    sim, proxy, sim_base, proxy_base = start(args)
    try:
        wait_http(f"{sim_base}/_sim/health", proc=sim)
        wait_http(f"{proxy_base}/ping", proc=proxy)
        worker = worker_process(proxy.pid)
        sim_process = psutil.Process(sim.pid)
        time.sleep(1.0)
        print(f"worker idle RSS {worker.memory_info().rss / 2**20:.1f} MiB; times in ms")
        http = session(max(args.slow, 32) + 10)
        print(f"workload: {answer_length(http, proxy_base)} characters in 40 snapshots 10 ms apart")
        print(
            f"{'workload':<22} {'dir p50':>7} {'dir p99':>7} {'prx p50':>7} {'prx p99':>7} "
            f"{'ovh p50':>7} {'ovh p99':>7} {'cpu/cmpl':>8} {'RSS MiB':>7} {'user/cmpl':>8} "
            f"{'sim cpu':>8}"
        )
        base = (http, sim_base, proxy_base, worker)
        phases = [] if args.no_single else [("1 stream", 1, args.rounds * 4, FAST, 0, sim_process)]
        phases.append(("32 streams", 32, args.rounds, FAST, 0.4, sim_process))
        if args.short:
            phases.append(("32 streams, 1 event", 32, args.rounds * 4, SHORT, 0.4, sim_process))
        if args.slow:
            slow = SLOW.format(n=args.slow_events)
            label = f"{args.slow} slow streams" + (
                f" x{args.slow_rounds}" if args.slow_rounds > 1 else ""
            )
            phases.append((label, args.slow, args.slow_rounds, slow, args.slow_spread, None))
        for label, k, rounds, prompt, spread, simulator in phases:
            result = phase(*base, k, rounds, prompt, spread, simulator)
            show(label, result)
            if args.worker_figures:
                print(worker_figures(args.worker_figures, result["window"]))
    finally:
        proxy.send_signal(2)
        sim.terminate()
        proxy.wait(timeout=60)
        sim.wait(timeout=10)
        if args.worker_figures and Path(args.worker_figures).exists():
            Path(args.worker_figures).unlink()


if __name__ == "__main__":
    main()
