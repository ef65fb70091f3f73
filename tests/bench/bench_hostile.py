"""What one hostile caller costs everyone else, measured on the real server.

Starts the upstream simulator, a local file server and the proxy under
gunicorn (one gevent worker), then for each scenario polls ``/healthz`` every
20 ms while the hostile request runs and prints how long the hostile request
took, what it got, and the slowest ``/healthz`` seen meanwhile:

- a 20 MB ``messages`` array of 600,000 messages (refused by MAX_MESSAGES);
- 120,000 messages under raised caps (validated and flattened in slices);
- 50 bodies whose ``Content-Length`` promises more than is sent (408);
- a URL attachment served one byte every 0.1 s (FETCH_TOTAL_TIMEOUT).

Run: ``python -m tests.bench.bench_hostile``.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import requests

from tests.conftest import ROOT, Simulator, free_port, start_proxy, stop_proxy, wait_http
from tests.support.fileserver import start_file_server

ENV = {
    "MAX_MESSAGES": "200000",
    "MAX_CONTENT_PARTS": "400000",
    "REQUEST_BODY_TIMEOUT": "2",
    "FETCH_ALLOW_HOSTS": "127.0.0.1",
    "FETCH_TOTAL_TIMEOUT": "3",
}


def measure(base: str, action: Callable[[], str]) -> tuple[str, float, float]:
    """(outcome of ``action``, its seconds, slowest /healthz meanwhile)."""
    latencies: list[float] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            started = time.perf_counter()
            requests.get(f"{base}/healthz", timeout=120)
            latencies.append(time.perf_counter() - started)
            time.sleep(0.02)

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.2)
    started = time.perf_counter()
    outcome = action()
    elapsed = time.perf_counter() - started
    time.sleep(0.2)
    done.set()
    poller.join()
    return outcome, elapsed, max(latencies)


def post(base: str, raw: bytes) -> str:
    resp = requests.post(
        f"{base}/v1/chat/completions",
        data=raw,
        headers={"Authorization": "Bearer rt-bench", "Content-Type": "application/json"},
        timeout=300,
    )
    return f"{resp.status_code} {resp.json().get('error', {}).get('code', 'ok')}"


def short_bodies(base: str, count: int) -> str:
    port = int(base.rsplit(":", 1)[1])
    body = b'{"model": "glm-4", "messages": []}'
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer rt-b\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (len(body) + 100)
    )
    statuses: list[str] = []

    def one() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(head + body)
            try:
                statuses.append(sock.recv(64).split(b" ")[1].decode())
            except TimeoutError:
                statuses.append("no answer in 60s")

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return f"{count}x {sorted(set(statuses))}"


def main() -> int:
    port = free_port()
    sim_proc = subprocess.Popen(
        [sys.executable, "-m", "tests.simulator", "--host", "127.0.0.1", "--port", str(port)]
        + ["--era", "E3"],  # the 2026 protocol, the proxy's default profile
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    files, httpd = start_file_server()
    try:
        wait_http(f"http://127.0.0.1:{port}/_sim/state", proc=sim_proc)
        simulator = Simulator(f"http://127.0.0.1:{port}", sim_proc)
        proxy = start_proxy(simulator, Path(tempfile.mkdtemp()), **ENV)
        try:
            huge = orjson.dumps(
                {"model": "glm-4", "messages": [{"role": "user", "content": "hello"}] * 600_000}
            )
            turn = [{"type": "text", "text": "hello"}, {"type": "text", "text": "again"}]
            pair = [{"role": "user", "content": turn}, {"role": "assistant", "content": "ok"}]
            long = orjson.dumps({"model": "glm-4", "messages": pair * 60_000})
            drip = {
                "type": "image_url",
                "image_url": {"url": files.url("/drip?bytes=300&every=0.1")},
            }
            fetch = orjson.dumps(
                {"model": "glm-4", "messages": [{"role": "user", "content": [drip]}]}
            )
            hello = [{"role": "user", "content": "hi"}]
            values = orjson.dumps({"model": "glm-4", "messages": hello, "extra": [{}] * 2_000_000})
            scenarios = [
                (f"600k messages ({len(huge) / 1e6:.0f} MB)", lambda: post(proxy.base, huge)),
                (f"2M objects ({len(values) / 1e6:.0f} MB)", lambda: post(proxy.base, values)),
                (f"120k messages ({len(long) / 1e6:.0f} MB)", lambda: post(proxy.base, long)),
                ("50 short bodies", lambda: short_bodies(proxy.base, 50)),
                ("dripping URL (30 s)", lambda: post(proxy.base, fetch)),
            ]
            print(f"{'scenario':28} {'answer':28} {'took':>7} {'slowest /healthz':>17}")
            for name, action in scenarios:
                outcome, took, slowest = measure(proxy.base, action)
                print(f"{name:28} {outcome:28} {took:6.2f}s {slowest:16.3f}s")
        finally:
            stop_proxy(proxy)
    finally:
        httpd.shutdown()
        sim_proc.terminate()
        sim_proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
