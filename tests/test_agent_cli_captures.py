"""Every request the pinned agent CLIs were seen sending, replayed byte for byte against the
server: none may fail for a field, header, tool type or message role it merely added.

The captures in ``tests/fixtures/agent_clis/`` were recorded with ``tests/tools/capture_cli.py``
(secrets masked); a new CLI version's captures are added next to them (docs/agent-cli-tests.md).
Unlike ``test_agent_clis.py`` this needs no Node.js, so it runs everywhere and points at the
exact request when a CLI run fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from tests.tool_support import script

FIXTURES = Path(__file__).parent / "fixtures" / "agent_clis"
CAPTURES = sorted(FIXTURES.glob("*.json"))
POSTS = [p for p in CAPTURES if json.loads(p.read_text())["method"] == "POST"]
DROPPED = {"host", "content-length", "connection", "accept-encoding", "x-api-key",
           "authorization"}
WORD = r"(glmword-[0-9a-f]{12})"  # the word tests/tools/capture_cli.py's note.txt holds


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def replay(proxy, capture: dict, token: str) -> requests.Response:
    """The captured request, its key replaced by ``token``; streamed answers are read whole."""
    headers = {k: v for k, v in capture["headers"].items() if k not in DROPPED}
    if "x-api-key" in capture["headers"]:
        headers["x-api-key"] = token
    else:
        headers["authorization"] = f"Bearer {token}"
    body = capture["body"]
    return requests.request(
        capture["method"], proxy.base + capture["path"], headers=headers,
        data=json.dumps(body).encode() if body is not None else None, timeout=60,
    )


def events(resp: requests.Response) -> list[dict]:
    """The JSON payloads of an SSE answer, in order."""
    return [json.loads(line[5:]) for line in resp.text.splitlines()
            if line.startswith("data:") and line[5:].strip() not in ("", "[DONE]")]


def answer_text(capture: dict, resp: requests.Response) -> str:
    """The answer's text, from a streamed or a whole Messages or Responses answer."""
    if not capture["body"].get("stream"):
        data = resp.json()
        if "content" in data:
            return "".join(b.get("text", "") for b in data["content"])
        return data.get("output_text") or ""
    texts = []
    for event in events(resp):
        delta = event.get("delta")
        if event.get("type") == "content_block_delta" and delta.get("type") == "text_delta":
            texts.append(delta["text"])
        elif event.get("type") == "response.output_text.delta":
            texts.append(delta)
    return "".join(texts)


def finished(capture: dict, resp: requests.Response) -> bool:
    """Whether the answer ended as its API says a complete answer ends."""
    if not capture["body"].get("stream"):
        return resp.status_code == 200
    kinds = [event.get("type") for event in events(resp)]
    return "message_stop" in kinds or "response.completed" in kinds


def test_the_captures_are_there():
    names = {p.name for p in CAPTURES}
    assert {"claude-code-2.1.197-messages.json", "codex-0.171.0-responses.json"} <= names


def scripted_answer(body: dict) -> tuple[dict, str]:
    """The model's answer to script for a captured request, and the text it must come back as.

    After a tool result the answer quotes the word the tool returned; a request with a JSON
    schema gets its answer as JSON with the schema's first required key.
    """
    has_tool_result = "glmword-" in json.dumps(body)
    wanted = (body.get("text") or body.get("output_config") or {}).get("format") or {}
    word = "glmword-000000000000" if has_tool_result else "none"
    if wanted.get("type") == "json_schema":  # Codex's --output-schema, Claude Code's titles
        key = wanted["schema"]["required"][0]
        def say(value: str) -> str:
            return json.dumps({key: value})
    else:
        def say(value: str) -> str:
            return f"The word is {value}."
    answer = {"text": say("{echo}"), "echo": WORD} if has_tool_result else {"text": say(word)}
    return answer, say(word)


@pytest.mark.parametrize("path", POSTS, ids=[p.stem for p in POSTS])
def test_a_captured_request_is_answered(proxy, simulator, token, path):
    capture = load(path)
    answer, expected = scripted_answer(capture["body"])
    script(simulator, token, answer)
    resp = replay(proxy, capture, token)
    assert resp.status_code == 200, f"{path.name}: {resp.status_code} {resp.text[:600]}"
    assert finished(capture, resp), f"{path.name}: the answer did not end: {resp.text[-600:]}"
    text = answer_text(capture, resp)
    if expected.startswith("{"):
        assert json.loads(text) == json.loads(expected), f"{path.name}: {text!r}"
    else:
        assert text == expected, f"{path.name}: {text!r}"


def test_the_warm_up_probe_is_answered(proxy):
    """Claude Code's ``HEAD /`` before its first request (the capture shows it)."""
    capture = load(FIXTURES / "claude-code-2.1.197-head.json")
    assert (capture["method"], capture["path"]) == ("HEAD", "/")
    resp = requests.head(proxy.base + "/", timeout=10)
    assert resp.status_code == 200
