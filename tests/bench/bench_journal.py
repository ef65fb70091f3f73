"""What the conversation journal costs each answer: the file (SQLite) and Redis homes.

Not collected by pytest. Run from the repository root:

    python tests/bench/bench_journal.py [--answers 2000] [--redis-url redis://...]

Each answer writes its entry when the conversation is named, hands it to the
janitor when the answer ends, and removes it once the delete is confirmed: the
figures are p50/p99 of those three calls together, per answer, and of one
recovery round over an empty journal (what every ``SWEEP_INTERVAL`` costs).
For Redis a private ``redis-server`` is started on a free port unless
``--redis-url`` is given.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from glm_proxy.store.journal import Entry, StoreJournal, open_file  # noqa: E402
from glm_proxy.store.memory import MemoryStore  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cycle(journal, answers: int) -> tuple[list[float], float]:
    costs = []
    for _ in range(answers):
        cid = uuid.uuid4().hex[:24]
        now = time.time()
        started = time.perf_counter()
        journal.record(Entry(cid, "fp", "assistant", now, lease="L", due=now + 30))
        journal.hand_over([cid], now + 120)
        journal.remove(cid)
        costs.append((time.perf_counter() - started) * 1e6)
    started = time.perf_counter()
    journal.due(time.time(), 100)
    return costs, (time.perf_counter() - started) * 1e6


def report(name: str, costs: list[float], round_us: float) -> None:
    print(
        f"{name:<7} per answer p50 {percentile(costs, 0.5):7.0f} us  "
        f"p99 {percentile(costs, 0.99):7.0f} us   empty round {round_us:5.0f} us"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--answers", type=int, default=2000)
    parser.add_argument("--redis-url", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        journal = open_file(MemoryStore(), 30.0, tmp)
        report("file", *cycle(journal, args.answers))
        journal.close()
    url, proc = args.redis_url, None
    if not url and shutil.which("redis-server"):
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}/0"
        import redis

        deadline = time.monotonic() + 10
        while True:  # until the server answers
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    if url:
        from glm_proxy.store.redis import RedisStore

        try:
            store = RedisStore.from_url(url, prefix=f"bench{uuid.uuid4().hex[:6]}:")
            report("redis", *cycle(StoreJournal(store, 30.0), args.answers))
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(10)


if __name__ == "__main__":
    main()
