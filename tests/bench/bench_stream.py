"""Streaming benchmark: K concurrent completions through the proxy vs straight from the simulator.

Not collected by pytest. Run from the repository root:

    python tests/bench/bench_stream.py --k 1 50 200 [--rounds 3] [--events 20]

It starts the upstream simulator and the proxy (gunicorn, one gevent worker)
on free local ports, warms up one account per concurrent stream, then for
each K prints:

- time to first token (TTFT) p50/p99 directly from the simulator and through
  the proxy, and the proxy's overhead (difference of the two);
- proxy CPU milliseconds per completion (user+system time of the worker);
- the worker's peak RSS during the run, and its idle RSS before any load.

Everything stays on 127.0.0.1.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import gevent.pool  # noqa: E402
import psutil  # noqa: E402
import requests  # noqa: E402
from requests.adapters import HTTPAdapter  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from glm_proxy.upstream.signing import signature_headers  # noqa: E402
from tests.bench._proxy_env import proxy_env  # noqa: E402
from tests.conftest import free_port, wait_http  # noqa: E402

SECRET = "8a1317a7468aa3ad86e997d08f3f31cb"


def session(pool: int) -> requests.Session:
    s = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool, max_retries=0)
    s.mount("http://", adapter)
    return s


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def first_token_proxy(http: requests.Session, base: str, token: str, prompt: str) -> float:
    started = time.perf_counter()
    first = None
    with http.post(
        f"{base}/v1/chat/completions",
        json={"model": "glm-4", "stream": True, "messages": [{"role": "user", "content": prompt}]},
        headers={"Authorization": f"Bearer {token}"},
        stream=True,
        timeout=120,
    ) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines():
            if (
                first is None
                and line.startswith(b"data: {")
                and b'"content":"' in line
                and b'"content":""' not in line
            ):
                first = time.perf_counter() - started
    return first if first is not None else float("nan")


def access_token(http: requests.Session, sim: str, refresh: str) -> str:
    headers = {"Authorization": f"Bearer {refresh}", "Content-Type": "application/json"}
    headers.update(signature_headers(int(time.time() * 1000), uuid.uuid4().hex, SECRET))
    resp = http.post(f"{sim}/chatglm/user-api/user/refresh", data=b"{}", headers=headers)
    return resp.json()["result"]["access_token"]


def direct_request(access: str, prompt: str) -> tuple[dict[str, str], dict]:
    """Signed headers and body of a stream request straight to the simulator."""
    headers = {"Authorization": f"Bearer {access}", "Content-Type": "application/json"}
    headers.update(signature_headers(int(time.time() * 1000), uuid.uuid4().hex, SECRET))
    body = {
        "assistant_id": "65940acff94777010aa6b796",
        "conversation_id": "",
        "messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]}],
        "meta_data": {"is_networking": False},
    }
    return headers, body


def first_token_direct(http: requests.Session, sim: str, access: str, prompt: str) -> float:
    headers, body = direct_request(access, prompt)
    started = time.perf_counter()
    first = None
    conversation = None
    with http.post(
        f"{sim}/chatglm/backend-api/assistant/stream",
        json=body,
        headers=headers,
        stream=True,
        timeout=120,
    ) as resp:
        for line in resp.iter_lines():
            if line.startswith(b"data:") and first is None and b'"type":"text"' in line:
                first = time.perf_counter() - started
            if conversation is None and b'"conversation_id":"' in line:
                conversation = line.split(b'"conversation_id":"')[1].split(b'"')[0].decode()
    if conversation:
        headers.update(signature_headers(int(time.time() * 1000), uuid.uuid4().hex, SECRET))
        http.post(
            f"{sim}/chatglm/backend-api/assistant/conversation/delete",
            json={"assistant_id": body["assistant_id"], "conversation_id": conversation},
            headers=headers,
        )
    return first if first is not None else float("nan")


def run_concurrently(k: int, fn, args_list) -> list[float]:
    """Run every call at once (a burst): used for warm-up."""
    group = gevent.pool.Pool(k)
    return [r for r in group.imap_unordered(lambda a: fn(*a), args_list)]


def closed_loop(fn, args_list, rounds: int, spread: float) -> list[float]:
    """K clients, each running ``rounds`` requests back to back (closed loop).

    Client starts are spread over ``spread`` seconds, so K streams are open at
    any moment but arrivals are not one synchronized burst.
    """
    results: list[float] = []

    def client(index: int, args) -> None:
        gevent.sleep(spread * index / max(1, len(args_list)))
        for _ in range(rounds):
            results.append(fn(*args))

    gevent.joinall([gevent.spawn(client, i, a) for i, a in enumerate(args_list)])
    return results


def sample_rss(worker: psutil.Process, peaks: list[int]) -> None:
    while True:
        peaks.append(worker.memory_info().rss)
        gevent.sleep(0.05)


def worker_process(master_pid: int) -> psutil.Process:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = psutil.Process(master_pid).children()
        if children:
            return children[0]
        time.sleep(0.05)
    raise RuntimeError("no gunicorn worker found")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", type=int, nargs="+", default=[1, 50, 200])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=20, help="snapshots per answer")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds between snapshots")
    args = parser.parse_args()

    sim_port, proxy_port = free_port(), free_port()
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.simulator",
            "--host",
            "127.0.0.1",
            "--port",
            str(sim_port),
            "--chunk-size",
            "0",
            "--era",
            "E3",  # the 2026 protocol, the proxy's default profile (its deletes included)
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = proxy_env(proxy_port, sim_port)
    proxy = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sim_base, proxy_base = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{proxy_port}"
    try:
        wait_http(f"{sim_base}/_sim/health", proc=sim)
        wait_http(f"{proxy_base}/ping", proc=proxy)
        worker = worker_process(proxy.pid)
        time.sleep(1.0)
        idle_rss = worker.memory_info().rss / 2**20
        print(f"proxy worker idle RSS: {idle_rss:.1f} MiB")
        http = session(max(args.k) + 10)
        prompt = f"bench [[sim:long n={args.events} delay={args.delay} chunk=0]]"
        print(
            f"{'K':>5} {'direct p50':>11} {'direct p99':>11} {'proxy p50':>10} "
            f"{'proxy p99':>10} {'ovh p50':>8} {'ovh p99':>8} {'cpu ms/req':>10} "
            f"{'peak RSS':>9}"
        )
        for k in args.k:
            tokens = [f"bench-{k}-{i}-{uuid.uuid4().hex[:8]}" for i in range(k)]
            # Warm up: one completion per account (token refresh, connections).
            run_concurrently(
                k,
                first_token_proxy,
                [(http, proxy_base, t, "warm [[sim:text chunk=0]]") for t in tokens],
            )
            accesses = run_concurrently(
                k, lambda t: access_token(http, sim_base, t), [(t,) for t in tokens]
            )
            peak = worker.memory_info().rss
            spread = args.events * args.delay
            direct = closed_loop(
                first_token_direct,
                [(http, sim_base, a, prompt) for a in accesses],
                args.rounds,
                spread,
            )
            peaks = [peak]
            sampler = gevent.spawn(sample_rss, worker, peaks)
            cpu_before = sum(worker.cpu_times()[:2])
            through = closed_loop(
                first_token_proxy,
                [(http, proxy_base, t, prompt) for t in tokens],
                args.rounds,
                spread,
            )
            cpu_after = sum(worker.cpu_times()[:2])
            sampler.kill()
            peak = max(peaks)
            completions = k * args.rounds
            cpu_ms = (cpu_after - cpu_before) * 1000 / completions
            direct = [d * 1000 for d in direct if d == d]
            through = [t * 1000 for t in through if t == t]
            d50, d99 = percentile(direct, 0.5), percentile(direct, 0.99)
            p50, p99 = percentile(through, 0.5), percentile(through, 0.99)
            print(
                f"{k:>5} {d50:>9.2f}ms {d99:>9.2f}ms {p50:>8.2f}ms {p99:>8.2f}ms "
                f"{p50 - d50:>6.2f}ms {p99 - d99:>6.2f}ms {cpu_ms:>10.2f} "
                f"{peak / 2**20:>7.1f}MiB"
            )
            if len(through) < completions:
                print(f"      ({completions - len(through)} proxy streams had no content)")
    finally:
        proxy.send_signal(2)  # SIGINT: quick shutdown, idle keep-alive sockets don't wait
        sim.terminate()
        proxy.wait(timeout=30)
        sim.wait(timeout=10)


if __name__ == "__main__":
    main()
