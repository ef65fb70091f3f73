"""Responses API requests -> the chat request the answer machinery already serves.

A Responses request is a third front door to the same answer: its input items
become the chat messages ``plan_chat`` takes (``function_call`` -> an
assistant message with ``tool_calls``, ``function_call_output`` -> a ``tool``
message, ``reasoning`` items dropped), its tools become chat tools
(``tools.responses``: custom, namespace and web_search tools too),
and ``reasoning.effort``, ``text.format`` and ``max_output_tokens`` become
``reasoning_effort``, ``response_format`` and ``max_tokens``.

Everything here is pure except ``ResponseStore`` (which reads and writes the
shared store) and ``resolve_previous``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from glm_proxy.errors import InvalidRequest
from glm_proxy.observability.additions import note_ignored
from glm_proxy.protocol.formats.responses import CUSTOM_INPUT
from glm_proxy.tools.responses import (
    ADDITIONAL_TOOLS,
    PLAIN_NAMESPACE,
    WEB_SEARCH_TOOLS,
    ToolOffer,
    flat_name,
    map_tool_choice,
    map_tools,
)

__all__ = [
    "WEB_SEARCH_TOOLS",
    "ResponsesRequest",
    "input_item",
    "map_tool_choice",
    "map_tools",
    "output_items",
    "to_chat_body",
    "to_messages",
]

MESSAGE_ROLES = ("user", "system", "developer", "assistant")
# Items of the model's own turns (or the client's bookkeeping) not sent back upstream.
DROPPED_ITEMS = ("reasoning", "web_search_call", "compaction", "compaction_summary")
REFUSED_PARTS = ("input_audio", "audio", "input_video")
LOGPROBS_INCLUDE = "message.output_text.logprobs"


@dataclass
class ResponsesRequest:
    """A Responses request mapped for the chat planner, plus what the formatter needs."""

    chat_body: dict[str, Any]
    items: list[dict[str, Any]]  # this request's input items (for the stored history)
    custom_tools: frozenset[str] = frozenset()
    history: list[dict[str, Any]] = field(default_factory=list)  # earlier turns' items
    namespaced: dict[str, tuple[str, str]] = field(default_factory=dict)  # flat -> (ns, name)


# -- input items -> chat messages ---------------------------------------------------------


def input_items(value: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``input`` as a list of items (a string is one user message)."""
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    return list(value)


def _bad(path: str, text: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid value for '{path}': {text}", param=path)


def _content_part(part: Any, path: str) -> dict[str, Any] | None:
    """One Responses content part -> a chat content part (None: a type left out)."""
    if isinstance(part, str):
        return {"type": "text", "text": part}
    if not isinstance(part, dict):
        raise _bad(path, "each content part must be an object.")
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text", "summary_text"):
        return {"type": "text", "text": str(part.get("text") or "")}
    if kind == "refusal":
        return {"type": "text", "text": str(part.get("refusal") or "")}
    if kind == "input_image":
        url = part.get("image_url")
        if isinstance(url, dict):
            url = url.get("url")
        if not url:
            raise _bad(
                path,
                "`file_id` images are not supported (there is no Files API here); "
                "send `image_url` as an http(s) or data: URL.",
            )
        return {"type": "image_url", "image_url": {"url": str(url)}}
    if kind == "input_file":
        if part.get("file_data"):
            file = {"file_data": str(part["file_data"]), "filename": part.get("filename")}
            return {"type": "file", "file": file}
        if part.get("file_url"):
            return {"type": "file", "file_url": {"url": str(part["file_url"])}}
        raise _bad(
            path,
            "`file_id` files are not supported (there is no Files API here); "
            "send `file_data` (base64 or a data: URL) or `file_url`.",
        )
    if kind in REFUSED_PARTS:  # the question itself may be in it: never answer without it
        raise _bad(path, f"{kind!r} content is not supported by this server.")
    note_ignored("content_type", kind, path)  # a part type newer than this server
    return None


def _content(content: Any, path: str) -> str | list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise _bad(path, "must be a string or an array of content parts.")
    parts = (_content_part(part, f"{path}[{i}]") for i, part in enumerate(content))
    return [part for part in parts if part is not None]


def _output_text(output: Any, path: str) -> str | list[dict[str, Any]]:
    """A tool output: a string, or content parts (text, images)."""
    if output is None:
        return ""
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return _content(output, path)
    return orjson.dumps(output).decode()


def _call_id(item: dict[str, Any], path: str) -> str:
    call_id = item.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        raise _bad(f"{path}.call_id", "a tool call item needs a `call_id` string.")
    return call_id


def _tool_call(item: dict[str, Any], path: str) -> dict[str, Any]:
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise _bad(f"{path}.name", "a tool call item needs a `name`.")
    namespace = item.get("namespace")
    if isinstance(namespace, str) and namespace and namespace != PLAIN_NAMESPACE:
        name = flat_name(namespace, name)  # the name the member was offered under
    if item.get("type") == "custom_tool_call":
        arguments = orjson.dumps({CUSTOM_INPUT: str(item.get("input") or "")}).decode()
    else:
        given = item.get("arguments")
        arguments = given if isinstance(given, str) else orjson.dumps(given or {}).decode()
    return {
        "id": _call_id(item, path),
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def to_messages(items: list[dict[str, Any]], path: str = "input") -> list[dict[str, Any]]:
    """Responses input items -> chat messages, in order.

    Consecutive tool calls join one assistant message (parallel calls), and
    calls right after an assistant text message join that message, as chat
    clients send them.
    """
    messages: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        where = f"{path}[{index}]"
        kind = item.get("type")
        if kind is None and "role" in item:
            kind = "message"
        if kind == "message":
            role = item.get("role")
            if role not in MESSAGE_ROLES:
                raise _bad(f"{where}.role", f"must be one of {', '.join(MESSAGE_ROLES)}.")
            messages.append(
                {"role": role, "content": _content(item.get("content"), f"{where}.content")}
            )
        elif kind in ("function_call", "custom_tool_call"):
            call = _tool_call(item, where)
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind in ("function_call_output", "custom_tool_call_output"):
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": _call_id(item, where),
                    "content": _output_text(item.get("output"), f"{where}.output"),
                }
            )
        elif kind in DROPPED_ITEMS or kind == ADDITIONAL_TOOLS:
            continue  # earlier reasoning is not sent back; tools go in the tool section
        elif kind == "item_reference":
            raise _bad(where, "`item_reference` is not supported; send the item itself.")
        elif isinstance(kind, str) and kind:
            note_ignored("input_item", kind, where)  # an item type newer than this server
        else:
            raise _bad(f"{where}.type", "an input item needs a `type`.")
    return messages


def _response_format(fmt: dict[str, Any] | None) -> dict[str, Any] | None:
    if not fmt or fmt.get("type") == "text":
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    schema: dict[str, Any] = {"name": fmt.get("name") or "response", "schema": fmt["schema"]}
    if fmt.get("description"):
        schema["description"] = fmt["description"]
    if fmt.get("strict") is not None:
        schema["strict"] = bool(fmt["strict"])
    return {"type": "json_schema", "json_schema": schema}


def to_chat_body(
    body: dict[str, Any],
    *,
    history: list[dict[str, Any]] | None = None,
    conversation_id: str | None = None,
) -> ResponsesRequest:
    """The validated Responses request as the chat-completions body ``plan_chat`` takes.

    ``history`` holds the items of earlier turns (``previous_response_id``
    answered from the stored history); with ``conversation_id`` the upstream
    conversation already holds them, and only this turn's input is sent.
    """
    items = input_items(body["input"])
    messages: list[dict[str, Any]] = []
    if body.get("instructions"):
        messages.append({"role": "system", "content": body["instructions"]})
    if history and conversation_id is None:
        messages.extend(to_messages(history, "previous_response_id"))
    messages.extend(to_messages(items))
    if not any(m.get("content") or m.get("tool_calls") for m in messages):
        raise _bad("input", "at least one input item must have content.")
    offer: ToolOffer = map_tools(body.get("tools") or [], items)
    tool_choice, chat_tools = map_tool_choice(body.get("tool_choice"), offer.chat)
    chat: dict[str, Any] = {
        "model": body["model"],
        "messages": messages,
        "stream": bool(body.get("stream")),
        "conversation_id": conversation_id,
        "keep_conversation": bool(body.get("store", True)),
    }
    if chat_tools:
        chat["tools"] = chat_tools
    if tool_choice is not None:
        chat["tool_choice"] = tool_choice
    if body.get("parallel_tool_calls") is not None:
        chat["parallel_tool_calls"] = bool(body["parallel_tool_calls"])
    if offer.web_search:
        chat["web_search"] = True
    effort = (body.get("reasoning") or {}).get("effort")
    if effort:
        chat["reasoning_effort"] = effort
    response_format = _response_format((body.get("text") or {}).get("format"))
    if response_format is not None:
        chat["response_format"] = response_format
    if body.get("max_output_tokens"):
        # OpenAI counts reasoning tokens in max_output_tokens, as chat's max_completion_tokens.
        chat["max_completion_tokens"] = body["max_output_tokens"]
    if body.get("top_logprobs") or LOGPROBS_INCLUDE in (body.get("include") or ()):
        chat["logprobs"] = True  # the chat controls honour it or refuse it loudly
        if body.get("top_logprobs"):
            chat["top_logprobs"] = body["top_logprobs"]
    if body.get("user"):
        chat["user"] = body["user"]
    return ResponsesRequest(chat, items, offer.custom, list(history or []), offer.namespaced)


ITEM_ID_PREFIX = {
    "message": "msg_",
    "function_call": "fc_",
    "function_call_output": "fco_",
    "custom_tool_call": "ctc_",
    "custom_tool_call_output": "ctco_",
}


def input_item(item: dict[str, Any], response_id: str, number: int) -> dict[str, Any]:
    """An input item as stored and listed: typed, with an ``id``, message content as parts."""
    kind = item.get("type") or ("message" if "role" in item else "item")
    stored = {**item, "type": kind}
    if kind == "message" and isinstance(item.get("content"), str):
        part = "output_text" if item.get("role") == "assistant" else "input_text"
        stored["content"] = [{"type": part, "text": item["content"]}]
    if not stored.get("id"):
        prefix = ITEM_ID_PREFIX.get(kind, "item_")
        stored["id"] = f"{prefix}{response_id.removeprefix('resp_')}{number:03d}"
    return stored


def output_items(output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A response's output as input items for the next turn's history (reasoning dropped)."""
    return [item for item in output if item.get("type") not in DROPPED_ITEMS]
