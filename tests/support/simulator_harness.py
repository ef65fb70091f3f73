"""The harness of the simulator's own tests: a running simulator and a small, correct client.

The simulator runs as `python -m tests.simulator --port 0` in a subprocess (gevent server),
exactly as the proxy's end-to-end tests use it. Each test uses its own refresh tokens, so
tests do not share accounts; config changes are undone by the `config` fixture. A test
module imports the fixtures it uses (``from tests.support.simulator_harness import sim as sim``);
each module starts its own simulator.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from tests.simulator.signing import (
    DEFAULT_SECRET,
    apply_check_digit,
    compute_sign,
)

ROOT = Path(__file__).resolve().parents[2]
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
            # The simulator's own tests speak the 2025 era unless a test switches to E3.
            [sys.executable, "-m", "tests.simulator", "--host", "127.0.0.1", "--port", "0"]
            + ["--era", "E2"],
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
