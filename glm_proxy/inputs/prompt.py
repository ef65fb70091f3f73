"""OpenAI-style messages -> the upstream's single user message.

The upstream takes exactly one user message per request; history lives
server-side per conversation. Without a ``conversation_id`` we emulate
multi-turn by flattening the whole history into that one message, with role
markers the web model understands. Attachments from every turn are collected
(not only the last one), so a document sent on turn one is still attached on
turn five.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from glm_proxy.http.request_guard import tick
from glm_proxy.tools.definitions import ToolConfig
from glm_proxy.tools.prompt import (
    DEFAULT_TEMPLATE,
    render_calls,
    render_result,
    render_tool_section,
)

MARKDOWN_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
SANDBOX_PATH = re.compile(r"/mnt/data/[^\s)\]\"'`]*")
ROLE_NAMES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "observation",
    "function": "observation",
}
LATEST_FILES_HINT = "Pay attention to the files and message the user sent last."


@dataclass(frozen=True, slots=True)
class AttachmentRef:
    """A file or image the client attached, by URL (http(s) or data:)."""

    url: str
    kind: str  # "image" | "file"
    filename: str | None = None
    message_index: int = 0


@dataclass(slots=True)
class Prompt:
    text: str
    attachments: list[AttachmentRef] = field(default_factory=list)


def _file_data_url(data: str) -> str:
    """OpenAI's ``file_data`` is a data URL; some clients send the bare base64 instead."""
    if data.startswith(("data:", "http://", "https://")):
        return data
    return "data:application/octet-stream;base64," + data


def _source_url(source: Any) -> str | None:
    """An Anthropic-style ``source`` (``base64`` or ``url``) as a URL."""
    if not isinstance(source, dict):
        return None
    if source.get("type") == "base64" and source.get("data"):
        media_type = source.get("media_type") or "application/octet-stream"
        return f"data:{media_type};base64,{source['data']}"
    if source.get("type") == "url" and source.get("url"):
        return str(source["url"])
    return None


def _attachment(part: dict[str, Any], index: int) -> AttachmentRef | None:
    """The attachment in one content part, in any of the shapes clients send.

    OpenAI ``image_url`` (object or bare string), OpenAI ``file`` with
    ``file_data`` (data URL or bare base64), the old project's ``file`` with
    ``file_url``, Responses-style ``input_image``/``input_file``, and
    Anthropic-style ``image``/``document`` blocks with a ``source``.
    """
    kind = part.get("type")
    if kind == "image_url":
        value = part.get("image_url")
        url = value.get("url") if isinstance(value, dict) else value
        return AttachmentRef(str(url), "image", None, index) if url else None
    if kind in ("file", "file_url"):
        if isinstance(part.get("file_url"), dict | str):
            value = part["file_url"]
            url = value.get("url") if isinstance(value, dict) else value
            return AttachmentRef(str(url), "file", None, index) if url else None
        value = part.get("file")
        if isinstance(value, dict):
            filename = value.get("filename")
            url = value.get("url") or value.get("file_url")
            if value.get("file_data"):
                url = _file_data_url(str(value["file_data"]))
            if url:
                return AttachmentRef(str(url), "file", filename, index)
    if kind == "input_image":  # Responses-style part some clients send
        value = part.get("image_url")
        url = value.get("url") if isinstance(value, dict) else value
        return AttachmentRef(str(url), "image", None, index) if url else None
    if kind == "input_file":
        filename = part.get("filename")
        url = part.get("file_url")
        if part.get("file_data"):
            url = _file_data_url(str(part["file_data"]))
        return AttachmentRef(str(url), "file", filename, index) if url else None
    if kind in ("image", "document"):  # Anthropic-style blocks
        url = _source_url(part.get("source"))
        name = part.get("title") if kind == "document" else None
        if url:
            return AttachmentRef(url, "image" if kind == "image" else "file", name, index)
    return None


def message_text(content: Any) -> str:
    """The text of a message's content (string, or the text parts of a list)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict) and part.get("type") in ("text", "input_text"):
            texts.append(str(part.get("text") or ""))
    return "\n".join(texts)


def message_attachments(content: Any, index: int) -> list[AttachmentRef]:
    if not isinstance(content, list):
        return []
    found = []
    for part in content:
        if isinstance(part, dict):
            ref = _attachment(part, index)
            if ref is not None:
                found.append(ref)
    return found


def _clean_assistant(text: str) -> str:
    """Drop images and sandbox paths from earlier answers: the model hallucinates on them."""
    return SANDBOX_PATH.sub("", MARKDOWN_IMAGE.sub("", text)).strip()


def _tool_names(messages: list[dict[str, Any]]) -> dict[str, str]:
    """Call id -> tool name, from the assistant turns' ``tool_calls``."""
    names: dict[str, str] = {}
    for message in messages:
        for call in message.get("tool_calls") or ():
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                names[str(call.get("id") or "")] = str(call["function"].get("name") or "")
    return names


def _assistant_calls(message: dict[str, Any]) -> list[tuple[str, Any]]:
    """(name, arguments) of an assistant turn's ``tool_calls`` or legacy ``function_call``."""
    calls: list[tuple[str, Any]] = []
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and function.get("name"):
            calls.append((str(function["name"]), function.get("arguments") or "{}"))
    legacy = message.get("function_call")
    if isinstance(legacy, dict) and legacy.get("name"):
        calls.append((str(legacy["name"]), legacy.get("arguments") or "{}"))
    return calls


def _turn(message: dict[str, Any], names: dict[str, str]) -> tuple[str, str]:
    """One message as (role marker, text); tool calls and results in the tool syntax."""
    role = ROLE_NAMES.get(str(message.get("role")), "user")
    text = message_text(message.get("content"))
    if role == "assistant":
        text = _clean_assistant(text)
        calls = _assistant_calls(message)
        if calls:
            text = (text + "\n" if text else "") + render_calls(calls)
    elif role == "observation":
        call_id = str(message.get("tool_call_id") or "")
        name = str(message.get("name") or names.get(call_id, ""))
        text = render_result(text, call_id=call_id, name=name, error=bool(message.get("is_error")))
    return role, text


def _render(
    messages: list[dict[str, Any]], names: dict[str, str], hint_at: int | None
) -> list[str]:
    """Turns as ``<|role|>\\ntext`` lines; consecutive tool results share one turn."""
    lines: list[str] = []
    previous = ""
    for index, message in enumerate(messages):
        tick()  # long histories: let other requests run (request_guard.tick)
        role, text = _turn(message, names)
        if index == hint_at:
            lines.append(f"<|system|>\n{LATEST_FILES_HINT}")
            previous = "system"
        if role == "observation" and previous == "observation":
            lines[-1] += "\n" + text
        elif text or role != "assistant":
            lines.append(f"<|{role}|>\n{text}")
        previous = role
    return lines


def build_prompt(
    messages: list[dict[str, Any]],
    *,
    native_multi_turn: bool = False,
    tools: ToolConfig | None = None,
    tool_prompt: str = DEFAULT_TEMPLATE,
) -> Prompt:
    """Flatten ``messages`` into one upstream message.

    With ``native_multi_turn`` (the client continues an upstream conversation)
    or a single message, only the last user message is sent; otherwise every
    turn is rendered as ``<|role|>\\ntext`` and the text ends with
    ``<|assistant|>`` so the model answers the last turn.

    With ``tools``, the tool section (see ``tools.prompt``) is the last
    turn before the answer, where the model weighs it most, after any system
    prompt of the client's. Assistant tool calls and tool results go back in
    the tool syntax; continuing a conversation sends only what came after the
    model's last turn (the new tool results and user text).
    """
    attachments: list[AttachmentRef] = []
    for index, message in enumerate(messages):
        tick()  # long histories: let other requests run (request_guard.tick)
        attachments.extend(message_attachments(message.get("content"), index))
    section = render_tool_section(tools, tool_prompt) if tools is not None else ""

    first = 0
    if native_multi_turn:
        last_assistant = max(
            (i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=-1
        )
        first = last_assistant + 1
        trailing = messages[first:]
        if section or any(m.get("role") in ("tool", "function") for m in trailing):
            attachments = [a for a in attachments if a.message_index >= first]
        else:
            first = len(messages)  # the plain path below: the last user message only

    if first >= len(messages) or (len(messages) == 1 and not section):
        last_user = next((m for m in reversed(messages) if m.get("role") == "user"), messages[-1])
        if native_multi_turn:
            last_index = messages.index(last_user)
            attachments = [a for a in attachments if a.message_index == last_index]
        return Prompt(message_text(last_user.get("content")).strip(), attachments)

    last_has_files = any(a.message_index == len(messages) - 1 for a in attachments)
    hint_at = len(messages) - 1 - first if last_has_files and len(messages) > 1 else None
    lines = _render(messages[first:], _tool_names(messages), hint_at)
    if section:
        lines.append(f"<|system|>\n{section}")
    lines.append("<|assistant|>\n")
    return Prompt("\n".join(lines), attachments)
