"""Requests that used to stall or kill the worker, replayed against the real server.

Each case checks what the hostile caller gets (a 4xx, or the documented
structured-output failure for the model's text; never a 500), that the worker
was not restarted (same pid, no ``WORKER TIMEOUT``), and that ``/healthz``
kept answering while the hostile request ran. The health bound here is
generous (the machine running the suite is shared); the figures themselves
come from ``tests/bench/bench_hostile_stalls.py``.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import ProxyServer, start_proxy, stop_proxy
from tests.tool_support import script

HEALTHZ_BOUND = 1.0  # seconds; the stalls fixed here were 2.5 s to 75 s
EVIL = "^(a+)+$"
EVIL_TEXT = "a" * 24 + "!"  # about 6 s per match with backtracking
WORKER_CONNECTIONS = 60


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
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    @property
    def worst(self) -> float:
        return max(self.latencies)


@pytest.fixture(scope="module")
def server(simulator, tmp_path_factory) -> Iterator[ProxyServer]:
    proxy = start_proxy(
        simulator,
        tmp_path_factory.mktemp("stalls"),
        WORKER_CONNECTIONS=str(WORKER_CONNECTIONS),
        REQUEST_HEAD_TIMEOUT="30",
        GUNICORN_TIMEOUT="30",
    )
    yield proxy
    stop_proxy(proxy)


@pytest.fixture
def guarded(server: ProxyServer) -> Iterator[HealthWatch]:
    """The worker's pid is the same after the test, the log has no worker timeout, and
    /healthz answered within the bound throughout."""
    pid = worker_pid(server.proc.pid)
    with HealthWatch(server.base) as watch:
        time.sleep(0.1)  # at least one poll before the hostile request
        yield watch
    assert watch.failures == []
    assert watch.worst < HEALTHZ_BOUND, f"/healthz took {watch.worst:.2f}s"
    assert worker_pid(server.proc.pid) == pid
    assert "WORKER TIMEOUT" not in server.logs()


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


# -- caller regexes ------------------------------------------------------------------------


@pytest.mark.parametrize("stream", BOTH)
@pytest.mark.parametrize("api", APIS)
def test_backtracking_pattern_in_response_schema(server, simulator, guarded, api, stream):
    key = token()
    script(simulator, key, f'{{"v": "{EVIL_TEXT}"}}', f'{{"v": "{EVIL_TEXT}"}}')
    schema = {"type": "object", "properties": {"v": {"type": "string", "pattern": EVIL}}}
    status, code = outcome(post(server, api, key, stream, schema=schema))
    assert (status, code) in (
        (502, "invalid_structured_output"),
        (200, "invalid_structured_output"),
    )


@pytest.mark.parametrize("stream", BOTH)
@pytest.mark.parametrize("api", APIS)
def test_backtracking_pattern_in_tool_schema(server, simulator, guarded, api, stream):
    key = token()
    script(simulator, key, invoke("f", v=EVIL_TEXT), invoke("f", v=EVIL_TEXT), "no tool then")
    params = {"type": "object", "properties": {"v": {"type": "string", "pattern": EVIL}}}
    status, code = outcome(post(server, api, key, stream, tools=[("f", params)]))
    assert status == 200 and code == "ok"


@pytest.mark.parametrize("api", APIS)
def test_matching_pattern_still_validates(server, simulator, guarded, api):
    """RE2 runs the pattern: a value that matches is accepted as before."""
    key = token()
    script(simulator, key, '{"v": "aaa"}')
    schema = {"type": "object", "properties": {"v": {"type": "string", "pattern": EVIL}}}
    resp = post(server, api, key, False, schema=schema)
    assert resp.status_code == 200
    body = resp.json()
    if api == "chat":
        text = body["choices"][0]["message"]["content"]
    elif api == "responses":
        text = body["output"][-1]["content"][0]["text"]
    else:
        text = body["content"][0]["text"]
    assert json.loads(text) == {"v": "aaa"}


@pytest.mark.parametrize("stream", BOTH)
@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("where", ["schema", "tools"])
def test_pattern_re2_cannot_run_is_refused_naming_it(server, guarded, api, stream, where):
    params = {"type": "object", "properties": {"word": {"type": "string", "pattern": r"(a)\1"}}}
    parts = {"schema": params} if where == "schema" else {"tools": [("f", params)]}
    resp = post(server, api, token(), stream, **parts)
    assert resp.status_code == 400
    text = resp.text
    assert "properties" in text and "word" in text and "pattern" in text
    assert "backreferences" in text


@pytest.mark.parametrize("api", APIS)
def test_pattern_properties_run_on_re2_too(server, simulator, guarded, api):
    key = token()
    evil_key = EVIL_TEXT
    script(simulator, key, f'{{"{evil_key}": 1}}', f'{{"{evil_key}": 1}}')
    schema = {"type": "object", "patternProperties": {EVIL: {}}, "additionalProperties": False}
    status, code = outcome(post(server, api, key, False, schema=schema))
    assert (status, code) == (502, "invalid_structured_output")


def test_overlong_pattern_is_refused(server, guarded):
    params = {"type": "object", "properties": {"v": {"type": "string", "pattern": "a" * 1001}}}
    resp = post(server, "chat", token(), False, tools=[("f", params)])
    assert resp.status_code == 400
    assert "MAX_SCHEMA_PATTERN_LENGTH" in resp.json()["error"]["message"]


# -- recursion on shapes the caller chooses --------------------------------------------------

LOOPS = [
    {"$ref": "#"},
    {"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"allOf": [{"$ref": "#"}]}}},
]


@pytest.mark.parametrize("stream", BOTH)
@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("where", ["schema", "tools"])
@pytest.mark.parametrize("loop", range(len(LOOPS)))
def test_ref_loop_is_a_400(server, guarded, api, stream, where, loop):
    schema = {"type": "object", **LOOPS[loop]}
    parts = {"schema": schema} if where == "schema" else {"tools": [("f", schema)]}
    resp = post(server, api, token(), stream, **parts)
    assert resp.status_code == 400
    assert "loop" in resp.text


def test_recursive_schema_through_properties_is_fine(server, simulator, guarded):
    """A tree schema refers to itself one level down the value: legitimate, accepted."""
    key = token()
    script(simulator, key, '{"name": "a", "children": [{"name": "b", "children": []}]}')
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "children": {"type": "array", "items": {"$ref": "#"}},
        },
    }
    assert post(server, "chat", key, False, schema=schema).status_code == 200


def test_remote_ref_is_refused_not_fetched(server, guarded):
    schema = {"type": "object", "properties": {"a": {"$ref": "http://127.0.0.1:9/x.json"}}}
    resp = post(server, "chat", token(), False, schema=schema)
    assert resp.status_code == 400
    assert "nothing is fetched" in resp.text


@pytest.mark.parametrize("stream", BOTH)
@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("where", ["schema", "tools"])
def test_schema_nested_150_levels_is_a_400(server, guarded, api, stream, where):
    schema: dict = {"type": "object"}
    for _ in range(150):
        schema = {"type": "object", "properties": {"a": schema}}
    parts = {"schema": schema} if where == "schema" else {"tools": [("f", schema)]}
    resp = post(server, api, token(), stream, **parts)
    assert resp.status_code == 400
    assert "MAX_SCHEMA_DEPTH" in resp.text


@pytest.mark.parametrize("stream", BOTH)
@pytest.mark.parametrize("api", APIS)
def test_five_thousand_brackets_are_a_structured_output_failure(
    server, simulator, guarded, api, stream
):
    key = token()
    script(simulator, key, "[" * 5000, "[" * 5000 + "]" * 5000)
    parts = {"schema": {"type": "array"}} if api == "messages" else {"json_object": True}
    status, code = outcome(post(server, api, key, stream, **parts))
    assert code == "invalid_structured_output"
    assert status in (200, 502)


@pytest.mark.parametrize("stream", BOTH)
@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("depth", [1000, 3000])
def test_deeply_nested_tool_arguments_are_refused_not_crashed_on(
    server, simulator, guarded, api, stream, depth
):
    key = token()
    nested = "[" * depth + "]" * depth
    script(simulator, key, invoke("f", v=nested), invoke("f", v=nested), "no tool then")
    params = {"type": "object", "properties": {"v": {"type": "array"}}}
    status, code = outcome(post(server, api, key, stream, tools=[("f", params)]))
    assert (status, code) == (200, "ok")


# -- tool definitions: bounded, cached, sliced -------------------------------------------------


def tools(count: int, props: int) -> list[tuple[str, dict]]:
    tag = uuid.uuid4().hex[:6]  # fresh schemas, so nothing is cached from an earlier test
    return [
        (
            f"t{tag}_{i}",
            {
                "type": "object",
                "properties": {
                    f"p{j}": {"type": "string", "description": f"{tag} {i} {j}"}
                    for j in range(props)
                },
            },
        )
        for i in range(count)
    ]


@pytest.mark.parametrize("api", APIS)
def test_too_many_schema_properties_is_a_400(server, guarded, api):
    resp = post(server, api, token(), False, tools=tools(300, 150))
    assert resp.status_code == 400
    assert "MAX_SCHEMA_PROPERTIES" in resp.text


def test_many_tools_within_the_caps_leave_the_worker_responsive(server, guarded):
    resp = post(server, "chat", token(), False, tools=tools(13, 150))
    assert resp.status_code == 200


# -- the request head ------------------------------------------------------------------------


def test_slow_heads_do_not_starve_the_worker(server):
    """More half-sent heads than WORKER_CONNECTIONS: the oldest waits are shed, /healthz answers."""
    pid = worker_pid(server.proc.pid)
    port = int(server.base.rsplit(":", 1)[1])
    socks = []
    try:
        for _ in range(WORKER_CONNECTIONS + 20):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            socks.append(sock)
        started = time.perf_counter()
        assert requests.get(f"{server.base}/healthz", timeout=60).status_code == 200
        assert time.perf_counter() - started < HEALTHZ_BOUND * 3
        assert socks[0].recv(10) == b""  # the longest wait was closed to make room
    finally:
        for sock in socks:
            sock.close()
    assert worker_pid(server.proc.pid) == pid


def test_tls_client_hello_on_the_plain_port_is_a_400_at_once(server):
    port = int(server.base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(bytes.fromhex("16030100a5010000a10303") + b"\x00" * 40)
        answer = sock.recv(4096)  # within the 5 s socket timeout: REQUEST_HEAD_TIMEOUT is 30
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b'"invalid_request_error"' in answer and b"plain HTTP" in answer


@pytest.fixture(scope="module")
def quick_heads(simulator, tmp_path_factory) -> Iterator[ProxyServer]:
    proxy = start_proxy(simulator, tmp_path_factory.mktemp("heads"), REQUEST_HEAD_TIMEOUT="1")
    yield proxy
    stop_proxy(proxy)


def test_partial_head_gets_408_after_the_head_timeout(quick_heads):
    port = int(quick_heads.base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"REQUEST_HEAD_TIMEOUT" in answer


def test_silent_connection_is_closed_after_the_head_timeout(quick_heads):
    port = int(quick_heads.base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        assert sock.recv(4096) == b""


def test_kept_connection_waits_keepalive_not_the_head_timeout(quick_heads):
    """Between requests on one connection the wait is KEEPALIVE (75 s), not 1 s."""
    port = int(quick_heads.base.rsplit(":", 1)[1])
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")
        time.sleep(1.5)  # longer than REQUEST_HEAD_TIMEOUT: the kept connection stays
        sock.sendall(request)
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")


def read_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
    while len(body) < length:
        body += sock.recv(4096)
    return data
