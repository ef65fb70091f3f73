"""Helpers shared by the team / pool / admin / Redis end-to-end tests."""

from __future__ import annotations

import os
import signal
import uuid
from typing import Any

import openai
import psutil
import requests

from tests.conftest import ProxyServer, Simulator

LONG = "[[sim:long n=20 delay=0.03]]"  # an answer that streams for ~0.6 s


def new_tokens(n: int, prefix: str = "rt") -> list[str]:
    """Fresh refresh tokens: new simulator accounts, so tests never share state."""
    return [f"{prefix}-{uuid.uuid4().hex}" for _ in range(n)]


def jwt_token(prefix: str = "rt") -> str:
    """A fresh refresh token shaped like chatglm's (a JWT): with team keys configured,
    pass-through forwards only such values."""
    return f"{prefix}-{uuid.uuid4().hex}.e30.{uuid.uuid4().hex[:16]}"


def new_key(name: str) -> str:
    return f"sk-{name}-{uuid.uuid4().hex}"


def client(proxy: ProxyServer, key: str, timeout: float = 60) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.v1, api_key=key, max_retries=0, timeout=timeout)


def ask(proxy: ProxyServer, key: str, prompt: str, *, stream: bool = False, **extra: Any) -> str:
    """One chat completion through the official SDK; the answer text."""
    sdk = client(proxy, key)
    if not stream:
        done = sdk.chat.completions.create(
            model="glm-4", messages=[{"role": "user", "content": prompt}], extra_body=extra
        )
        return done.choices[0].message.content or ""
    parts = []
    with sdk.chat.completions.create(
        model="glm-4",
        messages=[{"role": "user", "content": prompt}],
        stream=True,
        extra_body=extra,
    ) as chunks:
        for chunk in chunks:
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
    return "".join(parts)


def admin(proxy: ProxyServer, admin_key: str, method: str, path: str, **kw: Any) -> Any:
    resp = requests.request(
        method,
        f"{proxy.base}/admin{path}",
        headers={"Authorization": f"Bearer {admin_key}"},
        timeout=30,
        **kw,
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


def stream_entries(sim: Simulator, marker: str) -> list[dict]:
    """The simulator's stream requests whose prompt contains ``marker``, oldest first."""
    found = []
    for entry in sim.requests_log("/assistant/stream"):
        stream = entry.get("stream") or {}
        if marker in str(stream.get("content")):
            found.append(entry)
    return sorted(found, key=lambda e: e["time"])


def kill_hard(proxy: ProxyServer) -> None:
    """SIGKILL the gunicorn master and its workers: a crash, no cleanup code runs."""
    try:
        children = psutil.Process(proxy.proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    for proc in [*children]:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proxy.proc.kill()
    proxy.proc.wait(timeout=10)


def assert_no_secrets(text: str, secrets: list[str]) -> None:
    leaked = [s[:6] + "..." for s in secrets if s in text]
    assert not leaked, f"raw secrets in the logs: {leaked}"
