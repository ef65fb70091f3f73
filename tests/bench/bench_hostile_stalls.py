"""What one stalling request costs everyone else on the worker, measured on the real server.

Starts the upstream simulator and the proxy under gunicorn (one gevent
worker, ``WORKER_CONNECTIONS=200`` so the slow-head case is quick), then for
each case below polls ``/healthz`` every 20 ms while the hostile request runs
and prints what the request got, how long it took, the slowest ``/healthz``
meanwhile, the worker's RSS before / at its peak / after, and whether the
worker was restarted (its pid changed):

- a ``pattern`` of ``^(a+)+$`` in a structured-output schema and in a tool's
  parameters, with the model answering 23 ``a`` and a ``!``;
- 150 tools of 150 properties, and 13 tools of 150 (within the default caps);
- a ``$ref`` loop, a schema nested 150 levels, an answer of 5,000 ``[``
  under ``json_object``, tool arguments nested 1,000 levels;
- 250 connections that send half a request head and wait, and a TLS
  ClientHello on the plain port.

Run: ``python -m tests.bench.bench_hostile_stalls`` (``--only NAME`` for one case).
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import requests

from tests.conftest import launch_simulator, start_proxy, stop_proxy, stop_simulator

ENV = {"WORKER_CONNECTIONS": "200", "GUNICORN_TIMEOUT": "60"}
EVIL = "^(a+)+$"
SLOW_CONNECTIONS = 250


def worker_pid(master: int) -> int | None:
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def rss_mib(pid: int | None) -> float:
    if pid is None:
        return 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Run:
    """One case: the hostile action with /healthz and RSS sampled alongside."""

    def __init__(self, base: str, master: int) -> None:
        self.base, self.master = base, master

    def measure(self, action: Callable[[], str]) -> dict:
        pid = worker_pid(self.master)
        before = rss_mib(pid)
        latencies: list[float] = []
        peak = [before]
        done = threading.Event()

        def poll() -> None:
            while not done.is_set():
                started = time.perf_counter()
                try:
                    requests.get(f"{self.base}/healthz", timeout=120)
                except requests.RequestException:
                    pass
                latencies.append(time.perf_counter() - started)
                peak[0] = max(peak[0], rss_mib(worker_pid(self.master)))
                time.sleep(0.02)

        poller = threading.Thread(target=poll)
        poller.start()
        time.sleep(0.2)
        started = time.perf_counter()
        try:
            outcome = action()
        except Exception as exc:  # noqa: BLE001 - a bench reports, it does not stop
            outcome = f"{type(exc).__name__}"
        took = time.perf_counter() - started
        time.sleep(0.3)
        done.set()
        poller.join()
        after_pid = worker_pid(self.master)
        return {
            "outcome": outcome,
            "took": took,
            "stall": max(latencies),
            "rss": (before, peak[0], rss_mib(after_pid)),
            "restarted": after_pid != pid,
        }


def script(sim, token: str, *texts: str) -> None:
    answers = [{"text": t} for t in texts]
    requests.post(
        f"{sim.base}/_sim/script", json={"token": token, "answers": answers}, timeout=5
    ).raise_for_status()


def chat(base: str, body: dict, token: str) -> str:
    resp = requests.post(
        f"{base}/v1/chat/completions",
        json={"model": "glm-4", "messages": [{"role": "user", "content": "hi"}], **body},
        headers={"Authorization": f"Bearer {token}"},
        timeout=300,
    )
    try:
        code = resp.json().get("error", {}).get("code") or "ok"
    except ValueError:
        code = "not json"
    return f"{resp.status_code} {code}"


def tool(name: str, properties: dict) -> dict:
    schema = {"type": "object", "properties": properties}
    return {"type": "function", "function": {"name": name, "parameters": schema}}


def many_tools(count: int, props: int) -> list[dict]:
    tag = uuid.uuid4().hex[:6]  # fresh schemas: nothing cached from an earlier run
    return [
        tool(
            f"t{tag}_{i}",
            {
                f"p{j}": {"type": "string", "description": f"{tag}: {j} of {i}"}
                for j in range(props)
            },
        )
        for i in range(count)
    ]


def invoke(name: str, **params: str) -> str:
    body = "".join(f'<parameter name="{k}">{v}</parameter>\n' for k, v in params.items())
    return f'<glm_tool_calls>\n<invoke name="{name}">\n{body}</invoke>\n</glm_tool_calls>'


def slow_heads(base: str) -> str:
    port = int(base.rsplit(":", 1)[1])
    socks = []
    for _ in range(SLOW_CONNECTIONS):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        socks.append(sock)
    started = time.perf_counter()
    try:
        requests.get(f"{base}/healthz", timeout=90)
        answered = f"{time.perf_counter() - started:.2f}s"
    except requests.RequestException:
        answered = "no answer in 90s"
    for sock in socks:
        sock.close()
    return f"new /healthz in {answered}"


def client_hello(base: str) -> str:
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(bytes.fromhex("16030100a5010000a10303") + b"\x00" * 40)
        started = time.perf_counter()
        try:
            head = sock.recv(64)
        except TimeoutError:
            return "no answer in 30s"
    status = head.split(b" ")[1].decode() if head else "closed"
    return f"{status} after {time.perf_counter() - started:.2f}s"


def cases(sim, base: str) -> list[tuple[str, Callable[[], str]]]:
    def fresh() -> str:
        return "rt-" + uuid.uuid4().hex

    def redos_structured() -> str:
        token = fresh()
        script(sim, token, *[f'{{"v": "{"a" * 23}!"}}'] * 2)
        schema = {"type": "object", "properties": {"v": {"type": "string", "pattern": EVIL}}}
        fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
        return chat(base, {"response_format": fmt}, token)

    def redos_tool() -> str:
        token = fresh()
        script(sim, token, *[invoke("f", v="a" * 23 + "!")] * 2)
        return chat(base, {"tools": [tool("f", {"v": {"type": "string", "pattern": EVIL}})]}, token)

    def looped() -> str:
        schema = {"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/a"}}}
        fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
        token = fresh()
        script(sim, token, '{"a": 1}', '{"a": 1}')
        return chat(base, {"response_format": fmt}, token)

    def deep_schema() -> str:
        schema: dict = {"type": "object"}
        for _ in range(150):
            schema = {"type": "object", "properties": {"a": schema}}
        return chat(base, {"tools": [tool("d", schema["properties"])]}, fresh())

    def brackets() -> str:
        token = fresh()
        script(sim, token, "[" * 5000, "[" * 5000)
        return chat(base, {"response_format": {"type": "json_object"}}, token)

    def deep_arguments() -> str:
        token = fresh()
        nested = "[" * 1000 + "]" * 1000
        script(sim, token, *[invoke("f", v=nested)] * 2)
        return chat(base, {"tools": [tool("f", {"v": {"type": "array"}})]}, token)

    return [
        ("regex in response schema", redos_structured),
        ("regex in tool schema", redos_tool),
        ("150 tools x 150 props", lambda: chat(base, {"tools": many_tools(150, 150)}, fresh())),
        ("13 tools x 150 props", lambda: chat(base, {"tools": many_tools(13, 150)}, fresh())),
        ("$ref loop", looped),
        ("schema nested 150", deep_schema),
        ("5000 [ as json_object", brackets),
        ("tool args nested 1000", deep_arguments),
        (f"{SLOW_CONNECTIONS} slow heads", lambda: slow_heads(base)),
        ("TLS ClientHello", lambda: client_hello(base)),
    ]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", help="run only the cases whose name contains this")
    args = parser.parse_args()
    sim = launch_simulator()
    proxy = start_proxy(sim, Path(tempfile.mkdtemp()), **ENV)
    try:
        run = Run(proxy.base, proxy.proc.pid)
        print(
            f"{'case':26} {'answer':30} {'took':>7} {'worst /healthz':>15} "
            f"{'RSS before/peak/after MiB':>26} restarted"
        )
        for name, action in cases(sim, proxy.base):
            if args.only and args.only not in name:
                continue
            r = run.measure(action)
            rss = "/".join(f"{v:.0f}" for v in r["rss"])
            print(
                f"{name:26} {r['outcome'][:30]:30} {r['took']:6.2f}s {r['stall']:14.3f}s "
                f"{rss:>26} {'YES' if r['restarted'] else 'no'}",
                flush=True,
            )
        timeouts = proxy.logs().count("WORKER TIMEOUT")
        print(f"WORKER TIMEOUT lines in the gunicorn log: {timeouts}")
    finally:
        stop_proxy(proxy)
        stop_simulator(sim)
    return 0


if __name__ == "__main__":
    sys.exit(main())
