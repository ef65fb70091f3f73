"""Tests for the chatglm.cn upstream simulator (tests/simulator), over real HTTP: concurrency,
conversations, disconnects, uploads, video and faults
(harness: ``tests/support/simulator_harness.py``)."""

from __future__ import annotations

import io
import threading
import time

import pytest
import requests
from PIL import Image

from tests.simulator import scripts as sc
from tests.support.simulator_harness import (
    DEFAULT_ASSISTANT,
    REFRESH,
    Sim,
    new_token,
    parse_sse,
    read_all,
    reconstruct,
    visible_text,
)
from tests.support.simulator_harness import account as account  # noqa: F401 - the harness's fixtures
from tests.support.simulator_harness import config as config  # noqa: F401
from tests.support.simulator_harness import sim as sim  # noqa: F401

# -- concurrency, conversations, disconnects --------------------------------------------------


def test_one_stream_per_account(sim: Sim, account: tuple[str, str]) -> None:
    token, access = account
    first = sim.stream(access, "[[sim:long n=10 delay=0.05]]")
    head = first.raw.read(20)
    assert head
    second = sim.stream(access, "hi")
    assert second.status_code == 200
    assert second.headers["Content-Type"].startswith("application/json")
    assert second.json() == {
        "status": 10040,
        "message": "a conversation stream is already outputting",
    }
    other = sim.stream(sim.access(new_token()), "hi")  # another account is unaffected
    assert parse_sse(read_all(other))[-1]["status"] == "finish"
    assert parse_sse(head + first.raw.read())[-1]["status"] == "finish"
    state = sim.account(token)
    assert state["active_streams"] == 0 and state["max_concurrent_streams"] == 2
    assert state["rejected_concurrent"] == 1 and state["stream_count"] == 1
    # the slot is free as soon as `finish` can be read: the next stream is accepted at once
    assert parse_sse(read_all(sim.stream(access, "hi")))[-1]["status"] == "finish"


def test_concurrent_accounts_stream_in_parallel(sim: Sim) -> None:
    accesses = [sim.access(new_token()) for _ in range(20)]
    statuses: list[str] = []
    # every stream waits here after its first bytes: served one after another (3 s each),
    # the twentieth would start long after the barrier's deadline
    all_started = threading.Barrier(20, timeout=30)

    def one(access: str) -> None:
        with requests.Session() as http:
            client = Sim(sim.base)
            client.http = http
            resp = client.stream(access, "[[sim:long n=10 delay=0.3]]")
            head = resp.raw.read(20)
            all_started.wait()
            events = parse_sse(head + resp.raw.read())
            statuses.append(events[-1]["status"])

    threads = [threading.Thread(target=one, args=(a,)) for a in accesses]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == ["finish"] * 20


def test_conversation_continue_delete_and_unknown(sim: Sim, account: tuple[str, str]) -> None:
    token, access = account
    events = parse_sse(read_all(sim.stream(access, "one")))
    conv = events[0]["conversation_id"]
    again = parse_sse(read_all(sim.stream(access, "two", conversation_id=conv)))
    assert again[0]["conversation_id"] == conv
    assert visible_text(reconstruct(again, "all")) == sc.TEXT_ANSWER.format(length=3, turn=2)
    delete = "/chatglm/backend-api/assistant/conversation/delete"
    body = {"assistant_id": DEFAULT_ASSISTANT, "conversation_id": conv}
    assert sim.post(delete, access, json=body).json()["status"] == 0
    state = sim.account(token)
    assert state["conversations_deleted"] == [conv] and conv not in state["conversations_alive"]
    gone = sim.stream(access, "three", conversation_id=conv)
    assert gone.status_code == 200 and gone.content == b""
    made_up = sim.stream(access, "x", conversation_id="0123456789abcdef01234567")
    assert made_up.status_code == 200 and made_up.content == b""
    again_delete = sim.post(delete, access, json=body)
    assert again_delete.status_code == 200
    assert again_delete.json() == {"status": 404, "message": "conversation not found"}
    assert sim.account(token)["active_streams"] == 0


def test_client_disconnect_frees_the_slot(sim: Sim, account: tuple[str, str]) -> None:
    token, access = account
    resp = sim.stream(access, "[[sim:long n=100 delay=0.02]]")
    assert resp.raw.read(50)
    resp.close()
    deadline = time.monotonic() + 5
    while sim.account(token)["active_streams"] and time.monotonic() < deadline:
        time.sleep(0.05)
    state = sim.account(token)
    assert state["active_streams"] == 0 and state["streams_aborted"] == 1


def test_slow_scenario_sends_headers_then_silence(sim: Sim, account: tuple[str, str]) -> None:
    token, access = account
    resp = sim.stream(access, "[[sim:slow wait=3]]")
    assert resp.status_code == 200
    assert sim.account(token)["active_streams"] == 1  # the head came before the silence ended
    assert parse_sse(read_all(resp))[-1]["status"] == "finish"


# -- uploads and video ------------------------------------------------------------------------


def _png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def test_file_upload_records(sim: Sim, account: tuple[str, str]) -> None:
    token, access = account
    path = "/chatglm/backend-api/assistant/file_upload"
    image = sim.post(
        path, access, signed=False, files={"file": ("猫.png", _png(30, 20), "image/png")}
    ).json()["result"]
    assert image["width"] == 30 and image["height"] == 20 and len(image["file_id"]) == 24
    doc = sim.post(
        path, access, signed=False, files={"file": ("notes.txt", b"hello", "text/plain")}
    ).json()["result"]
    assert "width" not in doc and doc["file_name"] == "notes.txt"
    assert sim.http.get(doc["file_url"]).content == b"hello"
    assert sim.http.get(image["file_url"]).content == _png(30, 20)
    records = {u["file_id"]: u for u in sim.state()["uploads"]}
    assert records[doc["file_id"]]["size"] == 5 and records[doc["file_id"]]["account"] == token
    assert records[image["file_id"]]["filename"] == "猫.png"
    missing = sim.post(path, access, signed=False, data={"x": "1"})
    assert missing.json() == {"status": 400, "message": "bad request"}
    assert sim.post(path, "sim-at-nope", signed=False, data={}).status_code == 401


def test_video_flow(sim: Sim, account: tuple[str, str]) -> None:
    _, access = account
    frame = sim.post(
        "/chatglm/video-api/v1/static/upload",
        access,
        signed=False,
        files={"file": ("f.png", _png(1440, 960), "image/png")},
    ).json()["result"]
    uploads = {u["source_id"]: u for u in sim.state()["video_uploads"]}
    record = uploads[frame["source_id"]]
    assert (record["width"], record["height"]) == (1440, 960)
    create = "/chatglm/video-api/v1/chat"
    options = {"emotional_atmosphere": "", "mirror_mode": "推近", "video_style": "油画"}
    bad = sim.post(
        create,
        access,
        json={"prompt": "x", "advanced_parameter_extra": {**options, "video_style": "pixel"}},
    )
    assert bad.json()["status"] == 400
    task = sim.post(
        create,
        access,
        json={
            "conversation_id": "",
            "prompt": "一只猫",
            "source_list": [frame["source_id"]],
            "advanced_parameter_extra": options,
        },
    ).json()["result"]
    assert len(task["chat_id"]) == 24 and len(task["conversation_id"]) == 24
    status_path = f"/chatglm/video-api/v1/chat/status/{task['chat_id']}"
    polls = [sim.get(status_path, access).json()["result"] for _ in range(3)]
    assert [p["status"] for p in polls] == ["init", "processing", "finished"]
    done = polls[-1]
    assert done["video_duration"] == "6s" and done["resolution"] == "1440 × 960"
    assert sim.http.get(done["video_url"]).headers["Content-Type"] == "video/mp4"
    assert sim.http.get(done["cover_url"]).headers["Content-Type"] == "image/png"
    music = sim.post(
        "/chatglm/video-api/v1/static/composite_video",
        access,
        json={"chat_id": task["chat_id"], "key": "k1", "audio_id": "a1"},
    )
    assert music.json()["result"]["url"].endswith(".mp4")
    assert music.json()["result"]["url"] != done["video_url"]
    removed = sim.http.delete(
        f"{sim.base}/chatglm/video-api/v1/chat/{task['chat_id']}",
        headers={"Authorization": f"Bearer {access}"},
    )
    assert removed.json()["status"] == 0
    assert sim.get(status_path, access).json()["status"] == 404

    failing = sim.post(create, access, json={"prompt": "坏 [[sim:video_fail]]"}).json()["result"]
    path = f"/chatglm/video-api/v1/chat/status/{failing['chat_id']}"
    last = [sim.get(path, access).json()["result"] for _ in range(3)][-1]
    assert last["status"] == "failed" and last["msg"] == "generation failed (simulated)"


# -- faults -----------------------------------------------------------------------------------


def test_response_replacing_faults(sim: Sim, account: tuple[str, str]) -> None:
    token, access = account
    for kind in ("http_500", "http_502", "non_sse", "empty_body", "access_expired"):
        sim.control("faults", {"token": token, "kind": kind})
    r500 = sim.stream(access, "hi")
    assert r500.status_code == 500 and r500.json()["message"] == "internal server error"
    r502 = sim.stream(access, "hi")
    assert r502.status_code == 502 and r502.headers["Content-Type"].startswith("text/html")
    non_sse = sim.stream(access, "hi")
    assert non_sse.status_code == 200
    assert non_sse.headers["Content-Type"].startswith("application/json")
    empty = sim.stream(access, "hi")
    assert empty.status_code == 200 and empty.content == b""
    expired = sim.stream(access, "hi")
    assert expired.status_code == 401 and expired.json()["code"] == 401
    assert sim.stream(access, "hi").status_code == 401  # that access token is gone now
    fresh = sim.access(token)
    assert parse_sse(read_all(sim.stream(fresh, "hi")))[-1]["status"] == "finish"
    assert sim.account(token)["active_streams"] == 0


def test_stream_altering_faults(sim: Sim, account: tuple[str, str]) -> None:
    token, access = account
    sim.control("faults", {"token": token, "kind": "slow_first_byte", "seconds": 0.6})
    started = time.monotonic()
    slow = sim.stream(access, "hi")
    assert time.monotonic() - started >= 0.6
    assert parse_sse(read_all(slow))[-1]["status"] == "finish"

    sim.control("faults", {"token": token, "kind": "drop_mid_stream"})
    dropped = sim.stream(access, "hi")
    with pytest.raises(requests.exceptions.RequestException):
        read_all(dropped)

    sim.control("faults", {"token": token, "kind": "truncate_stream"})
    truncated = parse_sse(read_all(sim.stream(access, "hi")))
    assert truncated and all(e["status"] == "init" for e in truncated)
    state = sim.account(token)
    assert state["active_streams"] == 0 and state["streams_aborted"] == 2


def test_refresh_faults_and_wildcard(sim: Sim) -> None:
    token = new_token()
    sim.control("faults", {"token": token, "kind": "refresh_dead"})
    sim.control("faults", {"token": token, "kind": "refresh_500"})
    assert sim.post(REFRESH, token, json={}).json()["status"] == 40102
    r500 = sim.post(REFRESH, token, json={})
    assert r500.status_code == 500 and r500.json()["status"] == 500
    assert sim.post(REFRESH, token, json={}).json()["status"] == 0

    access = sim.access(new_token())
    sim.control("faults", {"token": "*", "kind": "http_500", "count": 2})
    assert sim.stream(access, "hi").status_code == 500
    assert sim.stream(sim.access(new_token()), "hi").status_code == 500
    assert sim.stream(access, "hi").status_code == 200
    bad = sim.http.post(f"{sim.base}/_sim/faults", json={"token": "x", "kind": "nope"})
    assert bad.status_code == 400


def test_reset_and_config_validation(sim: Sim) -> None:
    assert sim.http.post(f"{sim.base}/_sim/config", json={"shap": "all"}).status_code == 400
    sim.access(new_token())
    sim.control("reset")  # global: this test is deliberately the last one in the module
    state = sim.state()
    assert state["accounts"] == {} and state["requests"] == [] and state["uploads"] == []
