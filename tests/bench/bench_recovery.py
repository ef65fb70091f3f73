"""How long a killed worker's conversations stay upstream: kill -9 mid-stream, then wait.

Not collected by pytest. Run from the repository root:

    python tests/bench/bench_recovery.py [--streams 6] [--lease-ttl 3] [--sweep 1] [--redis]

Starts the simulator and the server (one worker on the memory store, or two
workers on a private Redis with ``--redis``), opens ``--streams`` long
streamed answers, kills one worker with SIGKILL once every stream has named
its conversation, and prints the seconds from the kill until the simulator has
deleted every conversation of the killed worker, next to the bound the journal
promises (``LEASE_TTL`` + one ``SWEEP_INTERVAL``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import orjson
import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.conftest import (  # noqa: E402
    free_port,
    launch_simulator,
    start_proxy,
    stop_proxy,
    stop_simulator,
)
from tests.support.redis_fixture import spawn_redis  # noqa: E402

KEY = "sk-bench-recovery"


def stream(base: str, named: dict[int, str], port_of: dict[int, int], i: int) -> None:
    try:
        with requests.post(
            f"{base}/v1/chat/completions",
            headers={"Authorization": f"Bearer {KEY}"},
            json={
                "model": "glm-4",
                "stream": True,
                "messages": [{"role": "user", "content": "[[sim:long n=400]]"}],
            },
            stream=True,
            timeout=60,
        ) as resp:
            port_of[i] = resp.raw.connection.sock.getsockname()[1]
            for line in resp.iter_lines():
                if line.startswith(b"data: {"):
                    named[i] = orjson.loads(line[6:])["id"]
    except requests.RequestException:
        pass  # the killed worker's streams end so


def owner(pids: list[int], port: int) -> int | None:
    for pid in pids:
        for conn in psutil.Process(pid).net_connections(kind="tcp"):
            if conn.raddr and conn.raddr.port == port:
                return pid
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=6)
    parser.add_argument("--lease-ttl", type=float, default=3.0)
    parser.add_argument("--sweep", type=float, default=1.0)
    parser.add_argument("--redis", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-recovery-"))
    sim = launch_simulator("2026")
    redis_proc = None
    env = {
        "LEASE_TTL": str(args.lease_ttl),
        "SWEEP_INTERVAL": str(args.sweep),
        "API_KEYS": f"team:{KEY}",
        "ACCOUNTS": ",".join(f"rt-bench-{uuid.uuid4().hex}" for _ in range(args.streams)),
        "LOG_LEVEL": "WARNING",
    }
    if args.redis:
        port = free_port()
        redis_proc = spawn_redis(shutil.which("redis-server") or "redis-server", port, tmp)
        env.update(REDIS_URL=f"redis://127.0.0.1:{port}/0", WEB_CONCURRENCY="2")
    proxy = start_proxy(sim, tmp, **env)
    try:
        named: dict[int, str] = {}
        port_of: dict[int, int] = {}
        threads = [
            threading.Thread(target=stream, args=(proxy.base, named, port_of, i), daemon=True)
            for i in range(args.streams)
        ]
        for thread in threads:
            thread.start()
        while len(named) < args.streams:
            time.sleep(0.05)
        pids = [p.pid for p in psutil.Process(proxy.proc.pid).children()]
        by_stream = {i: owner(pids, port_of[i]) for i in range(args.streams)}
        victim = max(pids, key=lambda pid: list(by_stream.values()).count(pid))
        orphans = {named[i] for i, pid in by_stream.items() if pid == victim}
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        while True:
            state = sim.state()["accounts"].values()
            gone = {c for a in state for c in a["conversations_deleted"]}
            if orphans <= gone:
                break
            time.sleep(0.05)
        took = time.monotonic() - killed
        store = "redis, 2 workers" if args.redis else "memory, 1 worker"
        print(
            f"{store}: {len(orphans)} orphaned conversation(s) deleted {took:.1f}s after the "
            f"kill (bound LEASE_TTL + SWEEP_INTERVAL = {args.lease_ttl + args.sweep:.1f}s)"
        )
    finally:
        stop_proxy(proxy)
        stop_simulator(sim)
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
