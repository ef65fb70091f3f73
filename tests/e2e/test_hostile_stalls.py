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
import uuid
from collections.abc import Iterator

import pytest
import requests

from tests.conftest import ProxyServer, start_proxy, stop_proxy
from tests.support.hostile import (
    APIS,
    BOTH,
    HEALTHZ_BOUND,
    HealthWatch,
    invoke,
    outcome,
    post,
    token,
    worker_pid,
)
from tests.support.tools import script

EVIL = "^(a+)+$"
EVIL_TEXT = "a" * 24 + "!"  # about 6 s per match with backtracking


@pytest.fixture(scope="module")
def server(simulator, tmp_path_factory) -> Iterator[ProxyServer]:
    proxy = start_proxy(
        simulator,
        tmp_path_factory.mktemp("stalls"),
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
        yield watch
    assert watch.failures == []
    assert watch.worst < HEALTHZ_BOUND, f"/healthz took {watch.worst:.2f}s"
    assert worker_pid(server.proc.pid) == pid
    assert "WORKER TIMEOUT" not in server.logs()


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
    assert "properties/word/pattern" in text
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


# -- deep JSON the caller sends in its history -------------------------------------------------


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def history_with_call(api: str, arguments: dict) -> tuple[str, dict]:
    """A request whose history holds one earlier tool call with these arguments."""
    text = json.dumps(arguments)
    if api == "chat":
        call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": text}}
        messages = [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        ]
        return "/v1/chat/completions", {"model": "glm-4", "messages": messages}
    if api == "responses":
        items = [
            {"type": "message", "role": "user", "content": "hi"},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": text},
            {"type": "function_call_output", "call_id": "c1", "output": "ok"},
        ]
        return "/v1/responses", {"model": "glm-4", "input": items}
    use = {"type": "tool_use", "id": "t1", "name": "f", "input": arguments}
    result = {"type": "tool_result", "tool_use_id": "t1", "content": "ok"}
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [use]},
        {"role": "user", "content": [result]},
    ]
    return "/v1/messages", {"model": "glm-4", "max_tokens": 50, "messages": messages}


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("depth", [200, 500])
def test_deep_arguments_in_the_history_are_never_a_500(server, guarded, api, depth):
    path, body = history_with_call(api, nested(depth))
    key = token()
    resp = requests.post(
        f"{server.base}{path}",
        json=body,
        headers={"Authorization": f"Bearer {key}", "x-api-key": key},
        timeout=60,
    )
    if api == "messages" and depth == 500:  # the body itself nests too deeply
        assert resp.status_code == 400
        assert "254 levels" in resp.json()["error"]["message"]
    else:
        assert resp.status_code in (200, 400), resp.text[:300]
