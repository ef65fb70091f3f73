"""The simulator's 2026 era (upstream-protocol.md §15.7), spoken to directly over HTTP."""

from __future__ import annotations

import time

import pytest

from tests.simulator.e3_scripts import TOOL_CHATTER
from tests.support.simulator_harness import REFRESH, Sim, new_token, parse_sse, read_all
from tests.support.simulator_harness import sim as sim  # noqa: F401 - the module's simulator fixture

MAINCHAT = "/chatglm/mainchat-api"


@pytest.fixture(scope="module")
def e3(sim: Sim):
    original = sim.control("config")
    sim.control("config", {"era": "E3"})
    yield sim
    sim.control("config", original)


def test_frames_lifecycle_tool_loop_and_framing(e3: Sim) -> None:
    access = e3.access(new_token())
    raw = read_all(e3.stream(access, "q [[sim:tools]]", meta={"chat_mode": "thinking"}))
    assert raw.startswith(b"data:  {") and b"event:" not in raw
    events = parse_sse(raw)
    first = events[0]
    assert first["parts"] == [] and first["meta_data"]["if_increase_push"] is False
    assert any(e["status"] == "processing" and not e["parts"] for e in events)
    assert all(e["tool_calls"] == [] for e in events)
    assert all(len(e["parts"]) <= 1 for e in events[:-1])  # one part per frame
    items = [i for e in events for p in e["parts"] for i in p["content"]]
    assert all(i["tool_calls"] == {} for i in items if i["type"] in ("text", "think"))
    calls = [i["tool_calls"]["name"] for i in items if i["type"] == "tool_calls"]
    assert {"finish", "search", "execute_sandbox_code"} <= set(calls)
    tool_parts = [p for e in events for p in e["parts"] if p["role"] == "tool"]
    assert tool_parts[0]["meta_data"]["tool_result_extra"]["search_results"]
    assert any(i.get("text") == TOOL_CHATTER for p in tool_parts for i in p["content"])
    assert events[-1]["status"] == "finish"


def test_e3_body_rules(e3: Sim) -> None:
    access = e3.access(new_token())
    unknown = e3.stream(access, "x", meta={"selected_model": "glm-9"})
    assert unknown.json()["status"] == 10003
    e3.control("config", {"accept_e2_modes": False})
    try:
        old_mode = e3.stream(access, "x", meta={"chat_mode": "zero"})
        assert old_mode.json()["status"] == 10004
    finally:
        e3.control("config", {"accept_e2_modes": True})
    ok = e3.stream(access, "x", meta={"selected_model": "glm-5.3-flash", "chat_mode": ""})
    assert parse_sse(read_all(ok))[-1]["status"] == "finish"


def test_second_stream_is_http_429_10061_and_stop_ends_with_10024(e3: Sim) -> None:
    token = new_token()
    access = e3.access(token)
    first = e3.stream(access, "x [[sim:long n=100 delay=0.05]]")
    chunks, head = first.iter_content(chunk_size=None), b""
    while b"\n\n" not in head:
        head += next(chunks)
    history = parse_sse(head.split(b"\n\n")[0] + b"\n\n")[0]["id"]
    busy = e3.stream(access, "y")
    assert busy.status_code == 429 and busy.json()["status"] == 10061
    stopped = e3.post(f"{MAINCHAT}/stream/stop_stream", access, json={"history_id": history})
    assert stopped.json()["status"] == 0
    rest = parse_sse(head + b"".join(chunks))
    assert rest[-1]["status"] == "error" and rest[-1]["error"]["error_code"] == 10024
    assert e3.state()["stops"][-1] == {"account": token, "history_id": history, "running": True}


def test_deletes_list_and_legacy_switch(e3: Sim) -> None:
    token = new_token()
    access = e3.access(token)
    ids = [parse_sse(read_all(e3.stream(access, f"q{i}")))[0]["conversation_id"] for i in range(3)]
    listed = e3.post(f"{MAINCHAT}/conversation/recent_list", access, json={"page": 1})
    assert {c["conversation_id"] for c in listed.json()["result"]["conversation_list"]} == set(ids)
    bulk = e3.post(
        f"{MAINCHAT}/conversation/bulk_delete", access, json={"conversation_ids": ids[:2]}
    )
    assert bulk.json() == {"status": 0, "result": None}
    e3.control("config", {"legacy_delete": "noop"})
    try:
        legacy = e3.post(
            "/chatglm/backend-api/assistant/conversation/delete",
            access,
            json={"assistant_id": "a", "conversation_id": ids[2]},
        )
        assert legacy.json()["status"] == 0
        assert e3.account(token)["conversations_alive"] == [ids[2]]  # answered, not deleted
    finally:
        e3.control("config", {"legacy_delete": "works"})
    single = e3.post(f"{MAINCHAT}/conversation/delete", access, json={"conversation_id": ids[2]})
    assert single.json()["status"] == 0 and not e3.account(token)["conversations_alive"]


def test_clock_catalogue_and_waf(e3: Sim) -> None:
    e3.control("config", {"clock_skew_ms": 5000})
    try:
        server = e3.get("/chatglm/operation-api/config/cur_ts").json()["result"]["timestamp_ms"]
        assert abs(server - (time.time() * 1000 + 5000)) < 2000
    finally:
        e3.control("config", {"clock_skew_ms": 0})
    token = new_token()
    access = e3.access(token)
    catalogue = e3.get("/chatglm/agent-api/operation/detail?tag=available_models", access)
    models = catalogue.json()["result"]["models"]
    assert [m["selected_model"] for m in models] == ["glm-5.3", "glm-5.3-flash"]
    e3.control("config", {"waf": True})
    try:
        blocked = e3.post(REFRESH, token, json={})
        assert blocked.status_code == 400 and blocked.json()["status"] == 40012
        browser = {"User-Agent": "Mozilla/5.0", "Cookie": "acw_tc=x"}
        assert e3.post(REFRESH, token, json={}, headers=browser).json()["status"] == 0
        stale = {**browser, "Cookie": "acw_tc=x; chatglm_token=old"}
        assert (
            e3.post(
                f"{MAINCHAT}/stream/update_status", access, json={"history_id": "h"}, headers=stale
            ).json()["status"]
            == 40012
        )
    finally:
        e3.control("config", {"waf": False})


def test_drawing_frames_hold_one_image_each_then_the_sentinel(e3: Sim) -> None:
    access = e3.access(new_token())
    events = parse_sse(read_all(e3.stream(access, "画猫", assistant_id="65a232c082ff90a2ad2f15e2")))
    image_frames = [
        i["image"] for e in events for p in e["parts"] for i in p["content"] if i["type"] == "image"
    ]
    assert len(image_frames) == 4 and all(len(f) == 1 for f in image_frames)
    numbers = [f[0]["image_url"].rsplit("_", 2)[-2] for f in image_frames]
    assert sorted(numbers) == ["0", "1", "2", "3"]
    last = events[-1]
    assert last["status"] == "finish"
    assert last["parts"][0]["content"][0] == {
        "tool_calls": {},
        "type": "one_to_more_finish",
        "image": [{}],
        "status": "finish",
    }
