"""Responses API requests -> the chat request the answer machinery already serves.

A Responses request is a third front door to the same answer: its input items
become the chat messages ``plan_chat`` takes (``function_call`` -> an
assistant message with ``tool_calls``, ``function_call_output`` -> a ``tool``
message, ``reasoning`` items dropped), its tools become chat tools (a
``custom`` tool is offered as a function with one free-text parameter,
``input``; the built-in ``web_search`` turns the upstream's own search on),
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
from glm_proxy.protocol.formats.responses import CUSTOM_INPUT

WEB_SEARCH_TOOLS = ("web_search", "web_search_preview", "web_search_2025_08_26")
MESSAGE_ROLES = ("user", "system", "developer", "assistant")
DROPPED_ITEMS = ("reasoning", "web_search_call", "compaction")
LOGPROBS_INCLUDE = "message.output_text.logprobs"


@dataclass
class ResponsesRequest:
    """A Responses request mapped for the chat planner, plus what the formatter needs."""

    chat_body: dict[str, Any]
    items: list[dict[str, Any]]  # this request's input items (for the stored history)
    custom_tools: frozenset[str] = frozenset()
    history: list[dict[str, Any]] = field(default_factory=list)  # earlier turns' items


# -- input items -> chat messages ---------------------------------------------------------


def input_items(value: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``input`` as a list of items (a string is one user message)."""
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    return list(value)


def _bad(path: str, text: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid value for '{path}': {text}", param=path)


def _content_part(part: Any, path: str) -> dict[str, Any]:
    """One Responses content part -> a chat content part."""
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
    raise _bad(path, f"unsupported content part type {kind!r}.")


def _content(content: Any, path: str) -> str | list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise _bad(path, "must be a string or an array of content parts.")
    return [_content_part(part, f"{path}[{i}]") for i, part in enumerate(content)]


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
    if item.get("type") == "custom_tool_call":
        arguments = orjson.dumps({CUSTOM_INPUT: str(item.get("input") or "")}).decode()
    else:
        arguments = item.get("arguments")
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments or {}).decode()
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
        elif kind in DROPPED_ITEMS:
            continue  # the model's earlier reasoning is not sent back upstream
        elif kind == "item_reference":
            raise _bad(where, "`item_reference` is not supported; send the item itself.")
        else:
            raise _bad(f"{where}.type", f"unsupported input item type {kind!r}.")
    return messages


# -- tools ---------------------------------------------------------------------------------


def _custom_function(tool: dict[str, Any]) -> dict[str, Any]:
    """A custom (free-text) tool as a function with one string parameter."""
    description = str(tool.get("description") or "")
    fmt = tool.get("format") or {}
    if isinstance(fmt, dict) and fmt.get("type") == "grammar" and fmt.get("definition"):
        description += (
            f"\n\nThe `{CUSTOM_INPUT}` text must follow this {fmt.get('syntax') or ''} grammar:\n"
            f"{fmt['definition']}"
        )
    return {
        "type": "function",
        "function": {
            "name": tool["name"],
            "description": description.strip(),
            "parameters": {
                "type": "object",
                "properties": {
                    CUSTOM_INPUT: {
                        "type": "string",
                        "description": "The raw free-text input of the tool.",
                    }
                },
                "required": [CUSTOM_INPUT],
                "additionalProperties": False,
            },
        },
    }


def map_tools(tools: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], frozenset[str], bool]:
    """Responses tools -> (chat tools, names of the custom tools, web search asked for)."""
    chat: list[dict[str, Any]] = []
    custom: set[str] = set()
    web_search = False
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        kind = tool["type"]
        if kind in WEB_SEARCH_TOOLS:
            web_search = True
            continue
        if kind not in ("function", "custom"):
            raise _bad(
                f"{where}.type",
                f"tool type {kind!r} is not supported (supported: function, custom, web_search).",
            )
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise _bad(f"{where}.name", "a tool needs a non-empty `name`.")
        if kind == "custom":
            custom.add(name)
            chat.append(_custom_function(tool))
            continue
        function: dict[str, Any] = {
            "name": name,
            "parameters": tool.get("parameters") or {"type": "object", "properties": {}},
        }
        if tool.get("description"):
            function["description"] = tool["description"]
        if tool.get("strict") is not None:
            function["strict"] = bool(tool["strict"])
        chat.append({"type": "function", "function": function})
    return chat, frozenset(custom), web_search


def map_tool_choice(choice: Any, chat_tools: list[dict[str, Any]]) -> tuple[Any, list[dict]]:
    """Responses ``tool_choice`` -> (chat ``tool_choice``, the tools still offered)."""
    if choice is None or choice in ("auto", "none", "required"):
        return choice, chat_tools
    if not isinstance(choice, dict):
        raise _bad("tool_choice", "must be auto, none, required or an object.")
    kind = choice.get("type")
    if kind in ("function", "custom"):
        name = choice.get("name")
        if not any(t["function"]["name"] == name for t in chat_tools):
            raise _bad("tool_choice.name", f"no tool named {name!r} in `tools`.")
        return {"type": "function", "function": {"name": name}}, chat_tools
    if kind == "allowed_tools":
        allowed = {t.get("name") for t in choice.get("tools") or [] if isinstance(t, dict)}
        kept = [t for t in chat_tools if t["function"]["name"] in allowed]
        mode = choice.get("mode") or "auto"
        return ("required" if mode == "required" else "auto"), kept
    if kind in WEB_SEARCH_TOOLS:
        return "auto", chat_tools
    raise _bad("tool_choice.type", f"unsupported tool_choice type {kind!r}.")


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
    chat_tools, custom, web_search = map_tools(body.get("tools") or [])
    tool_choice, chat_tools = map_tool_choice(body.get("tool_choice"), chat_tools)
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
    if web_search:
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
    return ResponsesRequest(chat, items, custom, list(history or []))


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
