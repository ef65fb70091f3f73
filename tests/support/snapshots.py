"""Raw reads of the simulator's answers, one per scenario, for the snapshot parser's tests."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest
import requests

from glm_proxy.protocol.snapshots import SnapshotParser
from glm_proxy.upstream.signing import signature_headers

SECRET = "8a1317a7468aa3ad86e997d08f3f31cb"  # the simulator's signing secret (as the proxy's)


SCENARIOS = [
    "[[sim:long n=40 chars=2000 chunk=0]]",
    "[[sim:long n=30]]",
    "[[sim:long n=30 shape=current]]",
    "[[sim:long n=30 shape=delta]]",
    "[[sim:long n=25 chunk=7]]",
    "[[sim:text]]",
    "[[sim:think]]",
    "[[sim:search]]",
    "[[sim:search_late]]",
    "[[sim:code]]",
    "[[sim:multi]]",
    "[[sim:intervene]]",
    "[[sim:error]]",
]


@pytest.fixture(scope="module")
def simulator_answer_reads(simulator) -> list[list[bytes]]:
    """The raw reads of one answer per scenario, straight from the simulator (its era)."""
    http = requests.Session()

    def signed(token: str) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        headers.update(signature_headers(int(time.time() * 1000), uuid.uuid4().hex, SECRET))
        return headers

    refresh = f"snapshots-{uuid.uuid4().hex[:8]}"
    resp = http.post(
        f"{simulator.base}/chatglm/user-api/user/refresh", json={}, headers=signed(refresh)
    )
    access = resp.json()["result"]["access_token"]
    recorded = []
    for prompt in SCENARIOS:
        body = {
            "assistant_id": "65940acff94777010aa6b796",
            "conversation_id": "",
            "messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]}],
            "meta_data": {"is_networking": False},
        }
        url = f"{simulator.base}/chatglm/backend-api/assistant/stream"
        with http.post(url, json=body, headers=signed(access), stream=True, timeout=60) as resp:
            recorded.append(list(resp.iter_content(chunk_size=None)))
    assert sum(len(reads) for reads in recorded) > 100
    return recorded


def outcome(parse, raw: bytes):
    try:
        return ("ok", parse(raw))
    except orjson.JSONDecodeError:
        return ("error",)


def check_stream(raws: list[bytes], parser: SnapshotParser | None = None) -> SnapshotParser:
    parser = parser or SnapshotParser()
    seen = []
    for raw in raws:
        got = outcome(parser.parse, raw)
        assert got == outcome(orjson.loads, raw), raw[-120:]
        seen.append((raw, got))
    for raw, got in seen:  # nothing returned earlier was changed since
        assert got == outcome(orjson.loads, raw)
    return parser


def event(text: str, status: str = "init", extra: dict | None = None) -> dict:
    part = {
        "id": "p1",
        "logic_id": "l1",
        "role": "assistant",
        "content": [{"tool_calls": {}, "type": "text", "text": text, "status": status}],
        "model": "glm",
        "meta_data": {"auto_glm_data": {}},
        "status": status,
    }
    return {
        "id": "m1",
        "conversation_id": "c1",
        "parts": [part],
        "meta_data": {},
        "status": status,
        "last_error": {},
        **(extra or {}),
    }
