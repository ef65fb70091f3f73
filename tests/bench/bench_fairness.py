"""How long a light key waits behind a heavy key's burst (fair queueing across keys).

Not collected by pytest. Run from the repository root:

    python tests/bench/bench_fairness.py [--trials 5] [--queued 1,4,16] [--redis]

The real server (gunicorn) and the upstream simulator, two pool accounts and
two API keys. For each figure of ``--queued`` (N) and each trial: key
``heavy`` opens N + 2 streamed answers at once (two take the accounts, N wait
in line), and once they are in line key ``light`` asks for one answer. The
light key's wait is the time from sending its request to its first token.

With first come, first served across keys the wait grows with N (one answer
time per two heavy requests ahead); with fair queueing it stays near one
answer time, whatever N is. ``--redis`` runs two workers on a private
``redis-server`` instead of one worker on the memory store. Also printed:
how many of heavy's queued requests started upstream before light's.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import openai  # noqa: E402

from tests.conftest import (  # noqa: E402
    free_port,  # noqa: E402
    launch_simulator,
    start_proxy,
    stop_proxy,
    stop_simulator,
)
from tests.support.redis_fixture import spawn_redis  # noqa: E402

ANSWER = "[[sim:long n=10 delay=0.05]]"  # about half a second of streaming


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def first_token(proxy, key: str, prompt: str) -> float:
    """Seconds from sending a streamed request to its first token; reads the answer to the end."""
    sdk = openai.OpenAI(base_url=proxy.v1, api_key=key, max_retries=0, timeout=300)
    started = time.perf_counter()
    first = None
    with sdk.chat.completions.create(
        model="glm-4", messages=[{"role": "user", "content": prompt}], stream=True
    ) as chunks:
        for chunk in chunks:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - started
    return first if first is not None else float("nan")


def started_upstream(sim, marker: str) -> list[float]:
    """Start times (simulator clock) of the stream requests whose prompt holds ``marker``."""
    times = []
    for entry in sim.requests_log("/assistant/stream"):
        if marker in str((entry.get("stream") or {}).get("content")):
            times.append(entry["time"])
    return sorted(times)


def trial(sim, proxy, keys: dict[str, str], queued: int) -> tuple[float, int]:
    """One burst: light's wait and how many queued heavy requests started before light."""
    tag = uuid.uuid4().hex[:8]
    heavy = queued + 2
    with concurrent.futures.ThreadPoolExecutor(heavy + 1) as pool:
        burst = [
            pool.submit(first_token, proxy, keys["heavy"], f"h-{tag}-{n} {ANSWER}")
            for n in range(heavy)
        ]
        deadline = time.monotonic() + 30
        while len(started_upstream(sim, f"h-{tag}-")) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # let the rest of the burst reach the line (a benchmark may)
        light = pool.submit(first_token, proxy, keys["light"], f"l-{tag} {ANSWER}")
        wait = light.result(timeout=300)
        for future in burst:
            future.result(timeout=300)
    light_start = started_upstream(sim, f"l-{tag}")[0]
    heavy_starts = started_upstream(sim, f"h-{tag}-")
    ahead = sum(1 for t in heavy_starts[2:] if t < light_start)
    return wait, ahead


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--queued", default="1,4,16", help="heavy requests in line")
    parser.add_argument("--redis", action="store_true", help="two workers on Redis")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-fair-"))
    sim = launch_simulator()
    redis_proc = None
    keys = {"heavy": f"sk-heavy-{uuid.uuid4().hex}", "light": f"sk-light-{uuid.uuid4().hex}"}
    env = {
        "ACCOUNTS": ",".join(f"rt-bench-{uuid.uuid4().hex}" for _ in range(2)),
        "API_KEYS": ",".join(f"{name}:{key}" for name, key in keys.items()),
        "QUEUE_TIMEOUT": "300",
        "KEY_RPM": "0",
        "LOG_LEVEL": "WARNING",
    }
    if args.redis:
        port = free_port()
        redis_proc = spawn_redis(shutil.which("redis-server") or "redis-server", port, tmp)
        env.update(REDIS_URL=f"redis://127.0.0.1:{port}/0", WEB_CONCURRENCY="2")
    proxy = start_proxy(sim, tmp, **env)
    try:
        first_token(proxy, keys["light"], f"warm-up {ANSWER}")
        first_token(proxy, keys["heavy"], f"warm-up {ANSWER}")
        answer = first_token(proxy, keys["light"], "one short answer")
        print(
            f"{'redis, 2 workers' if args.redis else 'memory, 1 worker'}; 2 accounts; "
            f"{args.trials} trials per row; an answer streams ~0.5 s (first token {answer:.3f}s)"
        )
        for queued in [int(n) for n in args.queued.split(",")]:
            waits, ahead = [], []
            for _ in range(args.trials):
                wait, before = trial(sim, proxy, keys, queued)
                waits.append(wait)
                ahead.append(before)
            print(
                f"heavy queued={queued:>3}  light wait p50={percentile(waits, 50):6.2f}s "
                f"p99={percentile(waits, 99):6.2f}s  "
                f"queued heavy served before light: max {max(ahead)} of {queued}"
            )
    finally:
        stop_proxy(proxy)
        stop_simulator(sim)
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
