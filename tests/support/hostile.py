"""Helpers for the hostile-caller tests: /healthz watching, the worker's pid, one request
shape for the three APIs (structured-output schema and/or tools), and reading the outcome."""

from __future__ import annotations

import re
import threading
import time
import uuid
from pathlib import Path

import requests

from tests.conftest import ProxyServer

# The one wall-clock bound the suite keeps, on purpose: the hostile-caller requirement is that
# /healthz keeps answering (within 200 ms) whatever one caller sends, and a stall is what these
# tests exist to catch. 1 s is five times the requirement, room for a busy shared machine; the
# stalls fixed in tests/e2e/test_hostile_*.py were 2.5 s to 75 s. The figures themselves are
# printed by tests/bench/bench_hostile_stalls.py.
HEALTHZ_BOUND = 1.0  # seconds


def worker_pid(master: int) -> int:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


class HealthWatch:
    """Polls /healthz from a thread while the block runs; ``worst`` is the slowest answer."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._done.is_set():
            started = time.perf_counter()
            try:
                status = requests.get(f"{self.base}/healthz", timeout=30).status_code
                if status != 200:
                    self.failures.append(str(status))
            except requests.RequestException as exc:
                self.failures.append(type(exc).__name__)
            self.latencies.append(time.perf_counter() - started)
            self._done.wait(0.02)

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.latencies and time.monotonic() < deadline:  # one answer before the test
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    @property
    def worst(self) -> float:
        return max(self.latencies)


def token() -> str:
    return "rt-" + uuid.uuid4().hex


def outcome(resp: requests.Response) -> tuple[int, str]:
    """(status, error code or 'ok'); a streamed answer's error event counts as its code."""
    if resp.headers.get("content-type", "").startswith("text/event-stream"):
        text = resp.text
        assert resp.status_code == 200
        if '"invalid_structured_output"' in text or "did not produce valid JSON" in text:
            return 200, "invalid_structured_output"
        assert not re.search(r'"error":\s*\{', text), text[-500:]
        return 200, "ok"
    error = resp.json().get("error")
    if error is None:
        return resp.status_code, "ok"
    if "did not produce valid JSON" in error["message"]:  # Anthropic errors carry no code
        return resp.status_code, "invalid_structured_output"
    return resp.status_code, error.get("code") or error["type"]


# -- the three APIs, with a structured-output schema or tools --------------------------------


def post(server: ProxyServer, api: str, key: str, stream: bool, **parts) -> requests.Response:
    """A request to ``api`` with ``schema`` (structured output) and/or ``tools`` (parameters)."""
    schema, tools = parts.get("schema"), parts.get("tools") or []
    json_object = parts.get("json_object", False)
    if api == "chat":
        body: dict = {"model": "glm-4", "messages": [{"role": "user", "content": "hi"}]}
        if schema is not None:
            spec = {"name": "out", "schema": schema}
            body["response_format"] = {"type": "json_schema", "json_schema": spec}
        if json_object:
            body["response_format"] = {"type": "json_object"}
        if tools:
            body["tools"] = [
                {"type": "function", "function": {"name": n, "parameters": p}} for n, p in tools
            ]
        path = "/v1/chat/completions"
    elif api == "responses":
        body = {"model": "glm-4", "input": "hi"}
        if schema is not None:
            body["text"] = {"format": {"type": "json_schema", "name": "out", "schema": schema}}
        if json_object:
            body["text"] = {"format": {"type": "json_object"}}
        if tools:
            body["tools"] = [{"type": "function", "name": n, "parameters": p} for n, p in tools]
        path = "/v1/responses"
    else:
        body = {
            "model": "glm-4",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": "hi"}],
        }
        if schema is not None:
            body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
        if tools:
            body["tools"] = [{"name": n, "input_schema": p} for n, p in tools]
        path = "/v1/messages"
    body["stream"] = stream
    return requests.post(
        f"{server.base}{path}",
        json=body,
        headers={"Authorization": f"Bearer {key}", "x-api-key": key},
        timeout=120,
    )


APIS = ["chat", "responses", "messages"]
BOTH = [False, True]


def invoke(name: str, **params: str) -> str:
    body = "".join(f'<parameter name="{k}">{v}</parameter>\n' for k, v in params.items())
    return f'<glm_tool_calls>\n<invoke name="{name}">\n{body}</invoke>\n</glm_tool_calls>'
