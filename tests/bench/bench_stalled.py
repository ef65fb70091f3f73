"""Stalled-reader benchmark: N streams whose clients never read, then hang up.

Not collected by pytest. Run from the repository root:

    python tests/bench/bench_stalled.py [--n 120] [--sentences 2000] [--chars 300000]
        [--hold 20] [--stall 10]

It starts the upstream simulator and the proxy (gunicorn, one gevent worker)
on free local ports, opens N raw sockets (small receive buffers) that each
send one long streaming chat request and then never read, holds them for
``--hold`` seconds, closes them all, and waits ``--settle`` seconds. It
prints the worker's idle, peak and final RSS, and how many upstream
conversations are still alive at the end (they should all be deleted).

Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import orjson
import psutil
import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench._proxy_env import proxy_env  # noqa: E402
from tests.conftest import free_port, wait_http  # noqa: E402


def worker_process(master_pid: int) -> psutil.Process:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = psutil.Process(master_pid).children()
        if children:
            return children[0]
        time.sleep(0.05)
    raise RuntimeError("no gunicorn worker found")


def stalled_stream(port: int, token: str, prompt: str, stream: bool = True) -> socket.socket:
    """Send one (streaming) request and never read the answer."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    body = orjson.dumps(
        {"model": "glm-4", "stream": stream, "messages": [{"role": "user", "content": prompt}]}
    )
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


def alive_conversations(sim_base: str, tokens: set[str]) -> int:
    accounts = requests.get(f"{sim_base}/_sim/state", timeout=60).json()["accounts"]
    values = accounts.values() if isinstance(accounts, dict) else accounts
    return sum(
        len(a.get("conversations_alive") or []) for a in values if a.get("refresh_token") in tokens
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=120, help="stalled streams")
    parser.add_argument("--sentences", type=int, default=3000, help="snapshots per answer")
    parser.add_argument(
        "--chars", type=int, default=0, help="characters in each answer (0: the sentences')"
    )
    parser.add_argument("--delay", type=float, default=0.005, help="seconds between snapshots")
    parser.add_argument("--hold", type=float, default=20.0, help="seconds the clients stall")
    parser.add_argument("--settle", type=float, default=8.0, help="seconds after hanging up")
    parser.add_argument("--stall", type=float, default=10.0, help="STREAM_STALL_TIMEOUT")
    parser.add_argument(
        "--json", action="store_true", help="non-streaming requests (one JSON answer each)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="stall-then-leave cycles")
    parser.add_argument("--send-buffer", default="0", help="STREAM_SEND_BUFFER (e.g. 64K)")
    parser.add_argument(
        "--shape", default="delta", help="simulator event shape (all/current/delta)"
    )
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
            "--shape",
            args.shape,
            "--chunk-size",
            "0",
            "--era",
            "E3",  # the 2026 protocol, the proxy's default profile (its deletes included)
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = proxy_env(
        proxy_port,
        sim_port,
        STREAM_STALL_TIMEOUT=str(args.stall),
        STREAM_SEND_BUFFER=args.send_buffer,
    )
    proxy = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sim_base = f"http://127.0.0.1:{sim_port}"
    try:
        wait_http(f"{sim_base}/_sim/health", proc=sim)
        wait_http(f"http://127.0.0.1:{proxy_port}/ping", proc=proxy)
        worker = worker_process(proxy.pid)
        # Warm up (imports, pools, caches) with a few streams read to the end, so
        # "baseline" means a worker that has served answers, not a fresh one.
        for i in range(3):
            warm = requests.post(
                f"http://127.0.0.1:{proxy_port}/v1/chat/completions",
                json={
                    "model": "glm-4",
                    "stream": True,
                    "messages": [{"role": "user", "content": "hi"}],
                },
                headers={"Authorization": f"Bearer warm-{i}-{uuid.uuid4().hex[:8]}"},
                timeout=60,
            )
            warm.raise_for_status()
        time.sleep(2.0)
        idle = worker.memory_info().rss
        peaks = [idle]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.is_set():
                peaks.append(worker.memory_info().rss)
                time.sleep(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        size = f" chars={args.chars}" if args.chars else ""
        prompt = f"stall [[sim:long n={args.sentences}{size} delay={args.delay}]]"
        mib = 2**20
        print(
            f"{args.n} stalled streams x {args.sentences} snapshots"
            f"{f' ({args.chars} characters)' if args.chars else ''}, held {args.hold:.0f}s "
            f"(STREAM_STALL_TIMEOUT={args.stall:g}s, STREAM_SEND_BUFFER={args.send_buffer})"
        )
        print(f"worker RSS baseline {idle / mib:.1f} MiB")
        for round_ in range(1, args.rounds + 1):
            peaks[:] = [worker.memory_info().rss]
            tokens = [f"stall-{i}-{uuid.uuid4().hex[:8]}" for i in range(args.n)]
            started = time.monotonic()
            sockets = [stalled_stream(proxy_port, t, prompt, not args.json) for t in tokens]
            time.sleep(max(0.0, args.hold - (time.monotonic() - started)))
            held_peak = max(peaks)
            left_held = alive_conversations(sim_base, set(tokens))
            for sock in sockets:
                sock.close()
            time.sleep(args.settle)
            final = worker.memory_info().rss
            left = alive_conversations(sim_base, set(tokens))
            print(
                f"round {round_}: peak {held_peak / mib:.1f} MiB, final {final / mib:.1f} MiB "
                f"({args.settle:.0f}s after the clients left); upstream conversations alive: "
                f"{left_held} while stalled, {left} after"
            )
        sampling.set()
        sampler.join()
    finally:
        proxy.send_signal(2)
        sim.terminate()
        proxy.wait(timeout=30)
        sim.wait(timeout=10)


if __name__ == "__main__":
    main()
