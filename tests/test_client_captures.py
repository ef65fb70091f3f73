"""Real requests of the agent CLIs, replayed: each one is answered.

``tests/fixtures/clients/`` holds requests captured from the pinned CLIs
(Claude Code 2.1.197, Codex 0.171.0; secrets removed): method, path, headers
and body as sent. Each is replayed against the server as is (with this test's
credentials) and must be answered 200; a streamed answer must end normally,
without an error event. When a new CLI version breaks, capture its request,
add it here, and this test shows what the server refuses.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from tests.tool_support import script

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "clients").glob("*.json"))


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _instance(schema: dict) -> object:
    """A small value that validates against ``schema`` (the shapes the captures use)."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) else kind
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {k: _instance(v) for k, v in props.items() if k in schema.get("required", props)}
    return {"string": "x", "integer": 1, "number": 1, "boolean": True, "array": []}.get(kind)


def _answer(body: dict) -> str:
    """The scripted model answer: JSON for the capture's schema, if it asks for one."""
    fmt = (body.get("output_config") or {}).get("format") or (body.get("text") or {}).get("format")
    if fmt and fmt.get("schema"):
        return json.dumps(_instance(fmt["schema"]))
    return "Hello from the simulator."


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_a_captured_client_request_is_answered(proxy, simulator, token, path):
    capture = _load(path)
    headers = dict(capture["headers"])
    if "anthropic-version" in headers:
        headers["x-api-key"] = token
    else:
        headers["Authorization"] = f"Bearer {token}"
    body = capture.get("body")
    if capture["method"] == "POST":
        script(simulator, token, _answer(body))
    resp = requests.request(
        capture["method"],
        proxy.base + capture["path"],
        json=body if capture["method"] == "POST" else None,
        headers=headers,
        timeout=120,
    )
    assert resp.status_code == 200, resp.text[:2000]
    if capture["method"] != "POST":
        return
    if not (body or {}).get("stream"):
        assert resp.json()
        return
    events = [line for line in resp.text.splitlines() if line.startswith("event:")]
    assert events, resp.text[:500]
    assert not any(e.split(":", 1)[1].strip() in ("error", "response.failed") for e in events)
    assert events[-1].split(":", 1)[1].strip() in ("message_stop", "response.completed")


def test_the_fixtures_cover_both_clients():
    names = [p.stem for p in FIXTURES]
    assert any(n.startswith("claude-code") for n in names)
    assert any(n.startswith("codex") for n in names)
