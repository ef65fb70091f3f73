"""Tests for the chatglm.cn upstream simulator (tests/simulator), over real HTTP.

The simulator runs as `python -m tests.simulator --port 0` in a subprocess (gevent server),
exactly as the proxy's end-to-end tests use it. Each test uses its own refresh tokens, so
tests do not share accounts; config changes are undone by the `config` fixture.
"""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from PIL import Image

from tests.simulator import scripts as sc
from tests.simulator.signing import (
    DEFAULT_SECRET,
    apply_check_digit,
    compute_sign,
    has_valid_check_digit,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ASSISTANT = "65940acff94777010aa6b796"
STREAM = "/chatglm/backend-api/assistant/stream"
REFRESH = "/chatglm/user-api/user/refresh"


# -- harness -------------------------------------------------------------------------------


class Sim:
    """A running simulator plus a tiny, correct upstream client for it."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = requests.Session()

    def signed(self, token: str | None = None, secret: str = DEFAULT_SECRET) -> dict[str, str]:
        ts = apply_check_digit(str(int(time.time() * 1000)))
        nonce = uuid.uuid4().hex
        headers = {"X-Timestamp": ts, "X-Nonce": nonce, "X-Sign": compute_sign(ts, nonce, secret)}
        headers["App-Name"] = "chatglm"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def post(self, path: str, token: str | None = None, signed: bool = True, **kw: Any):
        headers = (
            self.signed(token)
            if signed
            else ({"Authorization": f"Bearer {token}"} if token else {})
        )
        headers.update(kw.pop("headers", {}))
        return self.http.post(self.base + path, headers=headers, timeout=30, **kw)

    def get(self, path: str, token: str | None = None, signed: bool = True, **kw: Any):
        headers = self.signed(token) if signed else {"Authorization": f"Bearer {token}"}
        return self.http.get(self.base + path, headers=headers, timeout=30, **kw)

    def control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        resp = self.http.post(f"{self.base}/_sim/{path}", json=body or {}, timeout=10)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def state(self) -> dict[str, Any]:
        return self.http.get(f"{self.base}/_sim/state", timeout=10).json()

    def account(self, refresh_token: str) -> dict[str, Any]:
        return self.state()["accounts"][refresh_token]

    def access(self, refresh_token: str) -> str:
        resp = self.post(REFRESH, refresh_token, json={})
        assert resp.status_code == 200, resp.text
        return resp.json()["result"]["access_token"]

    def stream(
        self,
        access: str,
        text: str,
        conversation_id: str = "",
        assistant_id: str = DEFAULT_ASSISTANT,
        meta: dict[str, Any] | None = None,
        **kw: Any,
    ) -> requests.Response:
        body = {
            "assistant_id": assistant_id,
            "conversation_id": conversation_id,
            "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
            "meta_data": meta if meta is not None else {"is_networking": True},
        }
        return self.post(STREAM, access, json=body, stream=True, **kw)


def new_token(prefix: str = "rt") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def parse_sse(raw: bytes) -> list[dict[str, Any]]:
    """Split on blank lines BEFORE decoding, as a correct client must."""
    events = []
    for block in raw.split(b"\n\n"):
        for line in block.split(b"\n"):
            if line.startswith(b"data:"):
                events.append(orjson.loads(line[5:].strip()))
    return events


def read_all(resp: requests.Response) -> bytes:
    return b"".join(resp.iter_content(chunk_size=None))


GROWING = {
    "text": "text",
    "think": "think",
    "code": "code",
    "execution_output": "content",
    "image": "image",
}


def reconstruct(events: list[dict[str, Any]], shape: str) -> list[dict[str, Any]]:
    """Reference consumer: merge parts by logic_id and items by position.

    `all`/`current` frames are cumulative (replace); `delta` init frames append to growing
    fields and `finish` frames replace. Returns the final segments in order of appearance.
    """
    segments: dict[str, dict[str, Any]] = {}
    for event in events:
        for part in event["parts"]:
            seg = segments.setdefault(part["logic_id"], {"items": []})
            seg.update(
                role=part["role"],
                recipient=part["recipient"],
                meta_data=part["meta_data"],
                status=part["status"],
            )
            appending = shape == "delta" and part["status"] == "init"
            for i, item in enumerate(part["content"]):
                if i >= len(seg["items"]):
                    seg["items"].append({})
                held = seg["items"][i]
                key = GROWING.get(item["type"])
                if appending and key and held.get("type") == item["type"]:
                    held[key] = held[key] + item[key]
                    held["status"] = item["status"]
                else:
                    seg["items"][i] = dict(item)
    return list(segments.values())


def visible_text(segments: list[dict[str, Any]], kind: str = "text") -> str:
    return "\n".join(i[kind] for s in segments for i in s["items"] if i.get("type") == kind)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    """The simulator as a subprocess; stderr goes to a file (a full pipe would block it)."""
    log_path = tmp_path_factory.mktemp("simulator") / "stderr.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.simulator", "--host", "127.0.0.1", "--port", "0"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        try:
            line = proc.stdout.readline() if proc.stdout else ""
            assert line.startswith("simulator listening on http://"), log_path.read_text()
            yield Sim(line.split()[-1])
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            print(f"simulator stderr: {log_path}")


@pytest.fixture
def config(sim: Sim) -> Iterator[Any]:
    """Set config keys for one test; the original values come back afterwards."""
    original = sim.control("config")
    yield lambda **kw: sim.control("config", kw)
    sim.control("config", original)


@pytest.fixture
def account(sim: Sim) -> tuple[str, str]:
    token = new_token()
    return token, sim.access(token)


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
    time.sleep(0.7)
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

    def one(access: str) -> None:
        with requests.Session() as http:
            client = Sim(sim.base)
            client.http = http
            events = parse_sse(read_all(client.stream(access, "[[sim:long n=10 delay=0.05]]")))
            statuses.append(events[-1]["status"])

    started = time.monotonic()
    threads = [threading.Thread(target=one, args=(a,)) for a in accesses]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == ["finish"] * 20
    assert time.monotonic() - started < 5


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
    _, access = account
    started = time.monotonic()
    resp = sim.stream(access, "[[sim:slow wait=1]]")
    assert time.monotonic() - started < 0.8 and resp.status_code == 200
    assert parse_sse(read_all(resp))[-1]["status"] == "finish"
    assert time.monotonic() - started >= 1.0


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
