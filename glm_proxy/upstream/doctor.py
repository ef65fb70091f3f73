"""``python -m glm_proxy doctor``: which step of talking to chatglm.cn breaks, and what to change.

Runs, with one account, against the configured upstream (``GLM_BASE_URL``,
``GLM_PROTOCOL`` and every other setting, as the service would):

1. ``refresh``: exchange the refresh token (signing, cookies, device id, WAF);
2. ``time``: read the server clock (2026; a failure falls back to the local clock);
3. ``models``: read the model catalogue (2026);
4. ``answer``: stream one tiny answer;
5. ``stop``: ask the upstream to stop that answer (2026);
6. ``delete``: delete the conversation by the configured calls, then look it
   up in the account's conversation list (``recent_list``, 2026) to confirm
   it is gone: a call that answers success but deletes nothing fails here.

Each step prints one line, ``OK`` or what failed (HTTP status / envelope code
and message, never a secret) and which setting to look at; the exit code is 0
only when every step passed. The refresh token comes from ``GLM_REFRESH_TOKEN``
or a prompt (never the command line, which other users of the machine can
read); optional browser cookies from ``GLM_COOKIES`` (a ``Cookie:`` header
value or a Netscape cookies.txt path). The admin API runs the same steps per
pool account (``POST /admin/accounts/<id>/doctor``).
"""

from __future__ import annotations

import getpass
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from glm_proxy.accounts import Account
from glm_proxy.errors import GLMProxyError, RefreshTokenExpired
from glm_proxy.protocol.events import ConversationStarted, Finished, TextDelta
from glm_proxy.protocol.sse import SSEDecoder, decode_json
from glm_proxy.protocol.translate import Translator
from glm_proxy.upstream import control
from glm_proxy.upstream.identity import parse_cookies
from glm_proxy.upstream.refusals import FIXES

if TYPE_CHECKING:
    from glm_proxy.config import Settings

PROMPT = "Reply with the single word: pong"


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    ok: bool
    detail: str = ""
    hint: str = ""

    def line(self) -> str:
        if self.ok:
            return f"{self.name:<8} OK{'  ' + self.detail if self.detail else ''}"
        hint = f" -> check {self.hint}" if self.hint else ""
        return f"{self.name:<8} FAILED  {self.detail}{hint}"

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.name, "ok": self.ok, "detail": self.detail, "hint": self.hint}


HINTS = {
    "refresh": "GLM_REFRESH_TOKEN (log in again and copy chatglm_refresh_token), GLM_SIGN_SECRET, "
    "GLM_REFRESH_PATH; from a datacenter IP the account's cookies (GLM_COOKIES / cookies=)",
    "time": "GLM_TIME_PATH, GLM_TIME_FIELD (or GLM_TIME_SYNC=false)",
    "models": "GLM_CATALOGUE_PATH (or GLM_MODEL_CATALOGUE=false)",
    "answer": "GLM_STREAM_PATH, GLM_DEFAULT_MODEL, GLM_MODE_MAP, GLM_PROTOCOL",
    "stop": "GLM_STOP_PATH (or GLM_STOP_ON_DISCONNECT=false)",
    "delete": "GLM_DELETE_METHODS and the delete paths",
}


def _failure(exc: GLMProxyError) -> str:
    """What the upstream said: HTTP status, envelope code, message (secret-free)."""
    reason = getattr(exc, "reason", "")
    if reason in ("guest_token", "banned"):
        return f"{reason}: {exc.message}"
    if isinstance(exc, RefreshTokenExpired):
        return "the refresh token was rejected (40102): expired or revoked"
    said = []
    http, code = getattr(exc, "upstream_http", None), getattr(exc, "upstream_code", None)
    if http is not None:
        said.append(f"HTTP {http}")
    if code is not None:
        said.append(f"status {code}")
    prefix = f"upstream {', '.join(said)}: " if said else ""
    return f"{prefix}{exc.message}"


def _hint(name: str, exc: GLMProxyError) -> str:
    """The setting most likely at fault for this failure."""
    text = exc.message.lower()
    reason = getattr(exc, "reason", "")
    if reason in FIXES and reason not in ("unknown", "token_expired"):
        return f"account {reason}: {FIXES[reason]}"
    if isinstance(exc, RefreshTokenExpired):
        return "GLM_REFRESH_TOKEN (log in to chatglm.cn again and copy chatglm_refresh_token)"
    if exc.code == "upstream_waf_blocked":
        return (
            "the account's browser cookies (GLM_COOKIES / cookies=, README: cookie import), "
            "GLM_USER_AGENT"
        )
    if "signature" in text:
        return "GLM_SIGN_SECRET, GLM_SIGN_CHECK_DIGIT"
    if "timestamp" in text:
        return "GLM_TIME_SYNC, GLM_TIME_PATH, the machine's clock"
    return HINTS[name]


def _answer(client, account: Account) -> tuple[str, str, str]:
    """(conversation id, history id, text) of one tiny streamed answer."""
    s = client.settings
    meta: dict[str, Any] = {"is_networking": False, "platform": "pc", "input_question_type": "xxxx"}
    if s.glm_send_selected_model:
        meta.update(selected_model=s.glm_default_model, chat_mode="", reasoning_effort="low")
    payload = {
        "assistant_id": s.glm_assistant_id,
        "conversation_id": "",
        "project_id": "",
        "chat_type": "user_chat",
        "messages": [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}],
        "meta_data": meta,
    }
    response = client.open_stream(account, payload, referer=client.referer())
    translator, decoder = Translator(), SSEDecoder()
    text, conversation = "", ""
    for chunk in client.iter_stream(response):
        for event in decoder.feed(chunk):
            if not event.data:
                continue
            for delta in translator.feed(decode_json(event)):
                if isinstance(delta, ConversationStarted):
                    conversation = delta.conversation_id
                elif isinstance(delta, TextDelta):
                    text += delta.text
                elif isinstance(delta, Finished):
                    break
    translator.finish()
    return conversation, translator.history_id or "", text


def run_checks(client, account: Account) -> list[Step]:
    """Every step against ``client``'s upstream with ``account``; stops after a hard failure."""
    s = client.settings
    steps: list[Step] = []

    def step(name: str, action: Callable[[], str], optional: bool = False) -> bool:
        try:
            detail = action()
        except GLMProxyError as exc:
            steps.append(Step(name, False, _failure(exc), _hint(name, exc)))
            return optional
        steps.append(Step(name, True, detail))
        return True

    def refresh() -> str:
        client.invalidate(account)
        client.access_token(account)
        return "access token issued"

    if not step("refresh", refresh):
        return steps
    if s.glm_time_sync:
        step("time", lambda: f"clock offset {control.sync_clock(client, account):+.0f} ms", True)
    if s.glm_model_catalogue:

        def models() -> str:
            names = [
                m["selected_model"]
                for m in control.catalogue_models(control.fetch_catalogue(client, account))
            ]
            return ", ".join(names) or "empty catalogue"

        step("models", models, True)
    answer: dict[str, str] = {}

    def stream() -> str:
        conversation, history, text = _answer(client, account)
        answer.update(conversation=conversation, history=history)
        if not conversation:
            raise GLMProxyError("the answer named no conversation")
        return f"{len(text)} characters"

    if not step("answer", stream):
        return steps
    if s.glm_stop_on_disconnect and answer.get("history"):
        step("stop", lambda: client.stop_stream(account, answer["history"]) or "", True)
    step("delete", lambda: _delete_and_confirm(client, account, answer["conversation"]), True)
    return steps


def _delete_and_confirm(client, account: Account, conversation_id: str) -> str:
    """Delete by the configured calls, then check the conversation list no longer has it."""
    method = client.delete_conversations(
        account, client.settings.glm_assistant_id, [conversation_id]
    )
    try:
        listed = control.listed_conversations(client, account)
    except GLMProxyError as exc:
        return (
            f"via {method}; not confirmed: the conversation list is unavailable ({_failure(exc)})"
        )
    if conversation_id in listed:
        raise GLMProxyError(
            f"the delete via {method} answered success, but the conversation is still in the "
            "account's conversation list (recent_list)"
        )
    return f"via {method}; confirmed: the conversation is no longer listed"


def _read_token(settings: Settings, stdin: TextIO) -> str:
    token = settings.doctor_refresh_token.strip()
    if token:
        return token
    if stdin.isatty():
        return getpass.getpass("chatglm refresh token (chatglm_refresh_token cookie): ").strip()
    return stdin.readline().strip()


def _read_cookies(settings: Settings) -> str:
    value = settings.doctor_cookies.strip()
    if value and "=" not in value and Path(value).is_file():
        value = Path(value).read_text(encoding="utf-8")
    if value:
        parse_cookies(value)  # a malformed value fails here, before any request
    return value


def main(
    argv: list[str] | None = None, stdin: TextIO | None = None, out: TextIO | None = None
) -> int:
    """The ``doctor`` command; returns the exit code."""
    from glm_proxy.config import ConfigError, Settings
    from glm_proxy.store.memory import MemoryStore
    from glm_proxy.upstream.client import UpstreamClient

    out = out or sys.stdout
    logging.basicConfig(level=logging.ERROR)  # the step lines say it all
    try:
        settings = Settings.from_env({"STORE": "memory", "REDIS_URL": ""})
        cookies = _read_cookies(settings)
    except (ConfigError, ValueError, OSError) as exc:
        print(f"config   FAILED  {exc}", file=out)
        return 2
    token = _read_token(settings, stdin or sys.stdin)
    if not token:
        print("token    FAILED  no refresh token (set GLM_REFRESH_TOKEN or type it)", file=out)
        return 2
    client = UpstreamClient(settings, MemoryStore())
    account = Account.from_token(token, cookies=cookies)
    print(
        f"doctor: {settings.glm_base_url} protocol {settings.glm_protocol}, account {account}"
        + (", with cookies" if cookies else ""),
        file=out,
    )
    steps = run_checks(client, account)
    for item in steps:
        print(item.line(), file=out)
    ok = bool(steps) and all(item.ok for item in steps) and steps[-1].name == "delete"
    print("all checks passed" if ok else "some checks failed", file=out)
    return 0 if ok else 1
