"""Tests for the chatglm.cn upstream simulator (tests/simulator), over real HTTP: signing,
tokens, and the answers of every scenario in every shape.

The simulator runs as `python -m tests.simulator --port 0` in a subprocess (gevent server),
exactly as the proxy's end-to-end tests use it; the harness is in
``tests/support/simulator_harness.py``. Sessions, uploads, video and faults are tested in
``test_simulator_sessions.py``.
"""

from __future__ import annotations

import io
import time
import uuid
from typing import Any

import orjson
import pytest
from PIL import Image

from tests.simulator import scripts as sc
from tests.simulator.signing import (
    apply_check_digit,
    compute_sign,
    has_valid_check_digit,
)
from tests.support.simulator_harness import (
    REFRESH,
    STREAM,
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

# -- signing and tokens --------------------------------------------------------------------


def test_check_digit_worked_example() -> None:
    ts = apply_check_digit("1745827200123")
    assert ts == "1745827200103"
    nonce = "0f3c1a2b4d5e6f708192a3b4c5d6e7f8"
    assert compute_sign(ts, nonce) == "de8c561f178c3901aa2173c879beb9f3"
    assert has_valid_check_digit("1790732179905")
    assert not has_valid_check_digit("1745827200123")
    captured = compute_sign("1790732179905", "75988225830f4d93b6702dcd0a2e9baf")
    assert captured == "a32ee7a2876ad44e6658475f0a7c69eb"


def test_signature_accepted_and_rejected(sim: Sim, config: Any) -> None:
    token = new_token()
    bad = {"X-Timestamp": "1745827200103", "X-Nonce": "ab" * 16, "X-Sign": "0" * 32}
    for headers in ({}, bad):
        resp = sim.http.post(
            sim.base + REFRESH, json={}, headers={"Authorization": f"Bearer {token}", **headers}
        )
        assert resp.status_code == 400
        assert resp.json() == {"status": 400, "message": "bad request: invalid signature"}
    assert sim.post(REFRESH, token, json={}).status_code == 200
    log = [r for r in sim.state()["requests"] if r["path"] == REFRESH][-3:]
    assert [r["sign_valid"] for r in log] == [None, False, True]

    config(enforce_check_digit=True)
    ts, nonce = "1745827200123", uuid.uuid4().hex  # raw ms, no check digit
    raw = {
        "X-Timestamp": ts,
        "X-Nonce": nonce,
        "X-Sign": compute_sign(ts, nonce),
        "Authorization": f"Bearer {token}",
    }
    assert sim.http.post(sim.base + REFRESH, json={}, headers=raw).status_code == 400
    assert sim.post(REFRESH, token, json={}).status_code == 200


def test_refresh_envelope_dead_tokens_and_legacy(sim: Sim) -> None:
    token = new_token()
    first = sim.post(REFRESH, token, json={}).json()
    assert first["status"] == 0 and first["message"] == "success"
    result = first["result"]
    assert len(result["user_id"]) == 24 and result["refresh_token"] == token
    assert result["is_guest"] is False and result["mode"] == 1
    second = sim.post(REFRESH, token, json={}).json()["result"]
    assert second["user_id"] == result["user_id"]
    assert second["access_token"] != result["access_token"]
    assert sim.account(token)["refresh_count"] == 2

    dead = sim.post(REFRESH, "dead-" + token, json={})
    assert dead.status_code == 401
    assert dead.json() == {"status": 40102, "message": "token expired (40102)"}
    missing = sim.post(REFRESH, None, json={})
    assert missing.status_code == 401 and missing.json()["status"] == 40103
    sim.control("tokens/dead", {"token": token})
    assert sim.post(REFRESH, token, json={}).json()["status"] == 40102

    legacy = sim.post("/chatglm/backend-api/v1/user/refresh", new_token(), signed=False, json={})
    assert legacy.json()["result"]["accessToken"].startswith("sim-at-")
    info = sim.get("/chatglm/user-api/user/info", sim.access(new_token())).json()
    assert info["status"] == 0 and len(info["result"]["user_id"]) == 24


def test_refresh_rotation_maps_to_original_account(sim: Sim, config: Any) -> None:
    config(rotate_refresh=True, rotate_invalidates_old=True)
    token = new_token()
    rotated = sim.post(REFRESH, token, json={}).json()["result"]["refresh_token"]
    assert rotated != token
    assert sim.post(REFRESH, token, json={}).json()["status"] == 40102
    again = sim.post(REFRESH, rotated, json={}).json()["result"]
    account = sim.account(token)
    assert account["refresh_count"] == 2
    assert account["current_refresh_token"] == again["refresh_token"]


def test_access_token_expiry_and_unknown(sim: Sim, config: Any) -> None:
    config(access_ttl=0.5)
    access = sim.access(new_token())
    time.sleep(0.7)  # the scenario: past the access token's TTL on purpose
    expired = sim.stream(access, "hi")
    assert expired.status_code == 401
    assert expired.json() == {"code": 401, "status": 401, "message": "unauthorized"}
    assert sim.stream("sim-at-unknown", "hi").status_code == 401


# -- stream: scenarios and shapes ------------------------------------------------------------


def expected(name: str, prompt: str) -> dict[str, str]:
    """Final visible text (and reasoning) per scenario, from the exported constants."""
    text = sc.TEXT_ANSWER.format(length=len(prompt), turn=1)
    table = {
        "text": {"text": text},
        "slow": {"text": text},
        "think": {"text": sc.THINK_ANSWER, "think": sc.THINK_REASONING},
        "search": {"text": sc.SEARCH_ANSWER},
        "search_late": {"text": sc.SEARCH_LATE_ANSWER},
        "code": {"text": sc.CODE_ANSWER, "code": sc.CODE_SOURCE},
        "image": {"text": sc.IMAGE_ANSWER},
        "multi": {"text": f"{sc.MULTI_FIRST}\n{sc.MULTI_SECOND}"},
        "intervene": {"text": sc.INTERVENE_PARTIAL},
        "error": {"text": sc.ERROR_PARTIAL},
        "long": {"text": "".join(sc.LONG_SENTENCE.format(i=i) for i in range(1, 6))},
        "unknown_types": {"text": sc.UNKNOWN_ANSWER},
    }
    return table[name]


SCENARIO_ARGS = {"long": " n=5 delay=0", "slow": " wait=0.2"}
END_STATUS = {"intervene": "intervene", "error": "error"}


@pytest.mark.parametrize(
    "name",
    [
        "text",
        "slow",
        "think",
        "search",
        "search_late",
        "code",
        "image",
        "multi",
        "intervene",
        "error",
        "long",
        "unknown_types",
    ],
)
def test_scenario_same_answer_in_every_shape(sim: Sim, name: str) -> None:
    access = sim.access(new_token())
    results = {}
    for shape in ("all", "current", "delta"):
        prompt = f"question [[sim:{name}{SCENARIO_ARGS.get(name, '')} shape={shape:<7}]]"
        resp = sim.stream(access, prompt)
        assert resp.status_code == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        events = parse_sse(read_all(resp))
        first, final = events[0], events[-1]
        assert first["parts"] == [] and len(first["conversation_id"]) == 24
        assert all(e["status"] == "init" for e in events[:-1])
        assert final["status"] == END_STATUS.get(name, "finish")
        for event in events:
            assert set(event) >= {
                "id",
                "conversation_id",
                "assistant_id",
                "created_at",
                "meta_data",
                "status",
                "last_error",
                "parts",
            }
            assert event["conversation_id"] == first["conversation_id"]
        segments = reconstruct(events, shape)
        for kind, want in expected(name, prompt).items():
            assert visible_text(segments, kind) == want, (shape, kind)
        normalised = orjson.loads(orjson.dumps(segments).replace(first["id"].encode(), b"HID"))
        results[shape] = (normalised, final.get("last_error"), final.get("error"))
    assert results["all"] == results["current"] == results["delta"]
    segments, last_error, error = results["all"]
    if name == "intervene":
        assert last_error == {"intervene_text": sc.INTERVENE_TEXT}
    if name == "error":
        assert error == {"error_code": 10024, "err_msg": "generator exit"}


def _items(segments: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [i for s in segments for i in s["items"] if i["type"] == kind]


def test_scenario_side_channels(sim: Sim) -> None:
    """Search sources, tool calls, execution output, images and unknown types are there."""
    access = sim.access(new_token())

    def run(directive: str) -> list[dict[str, Any]]:
        return reconstruct(parse_sse(read_all(sim.stream(access, directive))), "all")

    search = run("[[sim:search]]")
    assert search[0]["meta_data"]["metadata_list"] == sc.SEARCH_SOURCES
    assert _items(search, "quote_result")
    late = run("[[sim:search_late]]")
    assert _items(late, "tool_calls")[0]["tool_calls"]["name"] == "search"
    assert late[1]["meta_data"]["tool_result_extra"]["search_results"] == sc.SEARCH_LATE_RESULTS
    code_events = parse_sse(read_all(sim.stream(access, "[[sim:code]]")))
    outputs = [
        i["content"]
        for e in code_events
        for p in e["parts"]
        for i in p["content"]
        if i["type"] == "execution_output"
    ]
    assert len(outputs) > 3 and set(outputs) == {sc.CODE_OUTPUT}
    image = run("[[sim:image]]")
    url = _items(image, "image")[0]["image"][0]["image_url"]
    assert url.startswith(sim.base + "/sfile/testpath/") and url.endswith("_0_0.png")
    png = sim.http.get(url)
    assert png.headers["Content-Type"] == "image/png" and png.content == sim.http.get(url).content
    assert Image.open(io.BytesIO(png.content)).size == (64, 48)
    unknown = run("[[sim:unknown_types]]")
    types = {i["type"] for s in unknown for i in s["items"]}
    assert {"browser_result", "one_to_more_finish"} <= types


def test_drawing_assistant(sim: Sim) -> None:
    access = sim.access(new_token())
    drawing = sc.DRAWING_ASSISTANT_ID
    for shape in ("all", "delta"):
        resp = sim.stream(
            access, f"请画：一只猫 [[sim:draw shape={shape}]]", assistant_id=drawing, meta={}
        )
        segments = reconstruct(parse_sse(read_all(resp)), shape)
        urls = [u["image_url"] for i in _items(segments, "image") for u in i["image"]]
        assert len(urls) == 4 and all(u.endswith(f"_{n}_0.png") for n, u in enumerate(urls))
        assert visible_text(segments) == sc.DRAW_ANSWER
        assert visible_text(segments, "code") == sc.DRAW_REWRITTEN.format(prompt="请画：一只猫")
    plain = parse_sse(read_all(sim.stream(access, "请画：猫", assistant_id=drawing, meta={})))
    assert len(_items(reconstruct(plain, "all"), "image")[0]["image"]) == 4
    blocked = parse_sse(read_all(sim.stream(access, "画 [[sim:intervene]]", assistant_id=drawing)))
    assert blocked[-1]["status"] == "intervene"
    noimage = reconstruct(
        parse_sse(read_all(sim.stream(access, "画 [[sim:noimage]]", assistant_id=drawing))), "all"
    )
    assert not _items(noimage, "image") and visible_text(noimage) == sc.NOIMAGE_ANSWER


def test_last_directive_wins_and_request_log(sim: Sim, account: tuple[str, str]) -> None:
    _, access = account
    prompt = "<|user|>\n[[sim:error]]\n<|assistant|>\nx\n<|user|>\n[[sim:think]]\n<|assistant|>\n"
    meta = {"chat_mode": "zero", "is_networking": False}
    events = parse_sse(read_all(sim.stream(access, prompt, meta=meta)))
    assert events[-1]["status"] == "finish"
    assert visible_text(reconstruct(events, "all"), "think") == sc.THINK_REASONING
    entry = [r for r in sim.state()["requests"] if r["path"] == STREAM][-1]
    assert entry["sign_valid"] is True
    assert entry["stream"]["scenario"] == "think"
    assert entry["stream"]["chat_mode"] == "zero" and entry["stream"]["is_networking"] is False
    assert entry["stream"]["content"][0]["item"] == {"type": "text", "text": prompt}


def test_utf8_characters_split_across_chunks(sim: Sim, account: tuple[str, str]) -> None:
    _, access = account
    chunks = list(sim.stream(access, "hi").raw.read_chunked(decode_content=False))
    assert max(len(c) for c in chunks) <= 7

    def decodes(chunk: bytes) -> bool:
        try:
            chunk.decode("utf-8")
            return True
        except UnicodeDecodeError:
            return False

    assert sum(not decodes(c) for c in chunks) >= 3
    joined = b"".join(chunks)
    assert "🚀".encode() in joined
    assert visible_text(reconstruct(parse_sse(joined), "all")).startswith("你好！")

    whole = list(sim.stream(access, "[[sim:text chunk=0]]").raw.read_chunked(decode_content=False))
    assert all(c.startswith(b"event:message\ndata: ") and c.endswith(b"\n\n") for c in whole)
