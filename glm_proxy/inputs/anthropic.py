"""Anthropic Messages requests -> the chat request the answer machinery already serves.

``/v1/messages`` is a second front door to the same chat service: the
validated request (``glm_proxy.api.schemas.anthropic``) becomes the
OpenAI-shaped body ``plan_chat`` takes: system prompt first, content blocks
mapped to text/image/file parts, ``tool_use``/``tool_result`` blocks to
``tool_calls`` and ``tool`` messages, ``thinking``/``output_config`` to the
chat controls. It lives here, next to ``inputs.responses`` (the Responses
API's front door), because it is the service's input, not a wire format:
``formats/`` renders answers outward, ``prompt`` flattens chat messages for
the upstream, and both run after this. Pure: no I/O, no Flask.
"""

from __future__ import annotations

from typing import Any

import orjson

from glm_proxy.errors import InvalidRequest
from glm_proxy.observability.additions import note_ignored
from glm_proxy.tools.definitions import ToolSpec

TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
# Blocks of the model's own turns that are not sent back upstream (not counted as unknown).
MODEL_BLOCKS = ("thinking", "redacted_thinking", "server_tool_use", "web_search_tool_result")


def _source_url(source: dict[str, Any]) -> str | None:
    kind = source.get("type")
    if kind == "base64" and source.get("data"):
        media_type = source.get("media_type") or "application/octet-stream"
        return f"data:{media_type};base64,{source['data']}"
    if kind == "url" and source.get("url"):
        return str(source["url"])
    return None


def _source(block: dict[str, Any], path: str) -> dict[str, Any]:
    """A block's ``source`` object; anything else is the caller's mistake (400, not 500)."""
    source = block.get("source")
    if source is None:
        return {}
    if not isinstance(source, dict):
        raise InvalidRequest(
            f"Invalid value for '{path}.source': must be an object.", param=f"{path}.source"
        )
    return source


def _block_to_parts(block: Any, path: str) -> list[dict[str, Any]]:
    """One Anthropic content block (at ``path`` in the request) -> OpenAI-style content parts.

    Raises:
        InvalidRequest: a block or its ``source`` has the wrong type.
    """
    if isinstance(block, str):
        return [{"type": "text", "text": block}]
    if not isinstance(block, dict):
        raise InvalidRequest(
            f"Invalid value for '{path}': each content block must be an object.", param=path
        )
    kind = block.get("type")
    if kind == "text":
        return [{"type": "text", "text": str(block.get("text") or "")}]
    if kind == "image":
        url = _source_url(_source(block, path))
        return [{"type": "image_url", "image_url": {"url": url}}] if url else []
    if kind == "document":
        source = _source(block, path)
        if source.get("type") == "text":
            return [{"type": "text", "text": str(source.get("data") or "")}]
        url = _source_url(source)
        if url is None:
            return []
        if url.startswith("data:"):
            name = block.get("title") or "document"
            return [{"type": "file", "file": {"file_data": url, "filename": name}}]
        return [{"type": "file", "file_url": {"url": url}}]
    if kind not in MODEL_BLOCKS:
        note_ignored("content_type", kind, path)  # a block type newer than this server
    return []  # the model's own thinking blocks are not sent upstream


def to_chat_body(body: dict[str, Any]) -> dict[str, Any]:
    """The validated Messages request as the chat-completions body ``plan_chat`` takes."""
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if isinstance(system, list):
        system = "\n".join(str(b.get("text") or "") for b in system)
    if system:
        messages.append({"role": "system", "content": system})
    for m_index, message in enumerate(body["messages"]):
        messages.extend(_to_chat_messages(message, f"messages[{m_index}]"))
    chat: dict[str, Any] = {
        "model": body["model"],
        "messages": messages,
        "stream": bool(body.get("stream")),
        "conversation_id": (body.get("conversation_id") or "").removeprefix("msg_") or None,
        "keep_conversation": bool(body.get("keep_conversation")),
    }
    chat.update(_tool_fields(body))
    chat.update(_controls(body))
    return chat


def _controls(body: dict[str, Any]) -> dict[str, Any]:
    """Thinking, length, stop sequences and output format, as chat-completions fields.

    ``thinking`` ``enabled``/``adaptive`` select the reasoning mode, ``disabled``
    turns it off, ``between_tools`` (think only between tool calls: the upstream
    has no such switch) leaves the model's default. Anthropic counts
    thinking against ``max_tokens`` when thinking is on, which is what OpenAI's
    ``max_completion_tokens`` means; otherwise it bounds the visible text, like
    OpenAI's ``max_tokens``.
    """
    chat: dict[str, Any] = {}
    kind = (body.get("thinking") or {}).get("type")
    output_config = body.get("output_config") or {}
    effort: Any = output_config.get("effort")
    if kind in ("enabled", "adaptive"):
        chat["reasoning_effort"] = {"max": "xhigh"}.get(effort, effort or "high")
    elif kind == "disabled":
        chat["reasoning_effort"] = "none"
    limit_field = "max_completion_tokens" if kind in ("enabled", "adaptive") else "max_tokens"
    if body.get("max_tokens"):
        chat[limit_field] = body["max_tokens"]
    stops = body.get("stop_sequences")
    if stops:
        chat["stop"] = [stops] if isinstance(stops, str) else list(stops)
    output_format = output_config.get("format")
    if output_format:
        schema = {"name": "output", "schema": output_format["schema"], "strict": True}
        chat["response_format"] = {"type": "json_schema", "json_schema": schema}
    return chat


def _tool_fields(body: dict[str, Any]) -> dict[str, Any]:
    """Anthropic ``tools``/``tool_choice`` in the chat-completions terms ``plan_chat`` reads.

    ``tools`` are the ``ToolSpec``s the request schema checked; ``tool_config``
    takes them as they are, so they are not checked a second time.
    """
    tools: tuple[ToolSpec, ...] = body.get("tools") or ()
    if not tools:
        return {}
    chat: dict[str, Any] = {
        "tools": tuple(
            ToolSpec(tool.name, tool.description, tool.parameters or {"type": "object"})
            for tool in tools
        )
    }
    choice = body.get("tool_choice") or {}
    kind = choice.get("type")
    if kind == "tool":
        chat["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    elif kind in TOOL_CHOICES:
        chat["tool_choice"] = TOOL_CHOICES[kind]
    if choice.get("disable_parallel_tool_use"):
        chat["parallel_tool_calls"] = False
    return chat


def _tool_result(block: dict[str, Any], path: str) -> dict[str, Any]:
    """A ``tool_result`` block as a ``tool`` message (string or content blocks, ``is_error``)."""
    content = block.get("content")
    if isinstance(content, list):
        parts: list[dict[str, Any]] = []
        for index, inner in enumerate(content):
            parts.extend(_block_to_parts(inner, f"{path}.content[{index}]"))
        content = parts
    elif content is not None and not isinstance(content, str):
        raise InvalidRequest(
            f"Invalid value for '{path}.content': must be a string or an array of blocks.",
            param=f"{path}.content",
        )
    return {
        "role": "tool",
        "tool_call_id": str(block.get("tool_use_id") or ""),
        "content": content or "",
        "is_error": bool(block.get("is_error")),
    }


def _to_chat_messages(message: dict[str, Any], path: str) -> list[dict[str, Any]]:
    """One Anthropic message -> chat messages: ``tool_use`` blocks become the assistant
    turn's ``tool_calls``, ``tool_result`` blocks become ``tool`` messages (before the
    user's own text, as Anthropic orders them)."""
    content = message["content"]
    if not isinstance(content, list):
        return [{"role": message["role"], "content": content}]
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for b_index, block in enumerate(content):
        where = f"{path}.content[{b_index}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "tool_use":
            name = block.get("name")
            if not isinstance(name, str) or not name:
                raise InvalidRequest(
                    f"Invalid value for '{where}.name': must be a non-empty string.",
                    param=f"{where}.name",
                )
            arguments = block.get("input") if isinstance(block.get("input"), dict) else {}
            calls.append(
                {
                    "id": str(block.get("id") or ""),
                    "type": "function",
                    "function": {"name": name, "arguments": orjson.dumps(arguments).decode()},
                }
            )
        elif kind == "tool_result":
            results.append(_tool_result(block, where))
        else:
            parts.extend(_block_to_parts(block, where))
    out: list[dict[str, Any]] = list(results)
    if calls:
        out.append({"role": message["role"], "content": parts, "tool_calls": calls})
    elif parts or not results:
        out.append({"role": message["role"], "content": parts})
    return out
