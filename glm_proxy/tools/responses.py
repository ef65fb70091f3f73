"""Responses API tools -> the chat tools the model is offered. Pure.

* ``function`` -> a chat function;
* ``custom`` (free text, Codex's ``apply_patch``) -> a function with one string
  parameter, ``input``; the call goes back as a ``custom_tool_call``;
* ``namespace`` (Codex's ``multi_agent_v1``, MCP servers) -> its member tools,
  each offered under the flat name ``<namespace>__<name>`` (Codex's own
  canonical flat form); the call goes back as a ``function_call`` (or
  ``custom_tool_call``) whose ``name`` is the member's and whose ``namespace``
  names the group, as the Responses API returns it and Codex reads it;
* ``web_search`` -> the upstream's own search, unless the client asked for no
  live web access (``external_web_access: false``): then it is left out;
* any other type is left out of the offer and counted
  (``observability.additions``): the model calling fewer tools is still a
  valid answer. A ``tool_choice`` naming a tool that is not offered stays a 400.

Tools may also arrive as an ``additional_tools`` input item (Codex's "lite"
requests); its tools are offered the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from glm_proxy.errors import InvalidRequest
from glm_proxy.observability.additions import note_ignored
from glm_proxy.protocol.formats.responses import CUSTOM_INPUT
from glm_proxy.tools.definitions import ToolDefinitionError, check_tools

__all__ = [
    "ADDITIONAL_TOOLS",
    "PLAIN_NAMESPACE",
    "WEB_SEARCH_TOOLS",
    "ToolOffer",
    "flat_name",
    "map_tool_choice",
    "map_tools",
]

WEB_SEARCH_TOOLS = ("web_search", "web_search_preview", "web_search_2025_08_26")
NAMESPACE_DELIMITER = "__"
# Codex's "lite" requests group its plain tools in a namespace of this name: its
# members keep their plain names, and their calls come back without a namespace.
PLAIN_NAMESPACE = "functions"
ADDITIONAL_TOOLS = "additional_tools"  # an input item that carries tools


@dataclass(frozen=True)
class ToolOffer:
    """What a Responses request offers the model, and how its calls go back."""

    chat: list[dict[str, Any]] = field(default_factory=list)  # chat-completions tools
    custom: frozenset[str] = frozenset()  # flat names of free-text tools
    namespaced: dict[str, tuple[str, str]] = field(default_factory=dict)  # flat -> (ns, name)
    web_search: bool = False


def flat_name(namespace: str, name: str) -> str:
    """``namespace`` + ``name`` as one tool name: ``multi_agent_v1__spawn_agent``.

    Codex's canonical flat form: stray underscores around the delimiter are
    trimmed, so ``mcp__docs__`` + ``search`` is ``mcp__docs__search``.
    """
    return f"{namespace.rstrip('_')}{NAMESPACE_DELIMITER}{name.lstrip('_')}"


def _bad(path: str, text: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid value for '{path}': {text}", param=path)


def _custom_function(tool: dict[str, Any], name: str) -> dict[str, Any]:
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
            "name": name,
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


def _function(tool: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    function: dict[str, Any] = {
        "name": name,
        "parameters": tool.get("parameters") or {"type": "object", "properties": {}},
    }
    if tool.get("description"):
        function["description"] = tool["description"]
    if tool.get("strict") is not None:
        function["strict"] = bool(tool["strict"])
    chat = {"type": "function", "function": function}
    try:
        check_tools([chat])
    except ToolDefinitionError as exc:
        inner = exc.path[2:] if tuple(exc.path[1:2]) == ("function",) else ()
        raise _bad(".".join([where, *map(str, inner)]), str(exc)) from None
    return chat


class _Offer:
    """Builds a ``ToolOffer`` tool by tool (one pass over the request's tools)."""

    def __init__(self) -> None:
        self.chat: list[dict[str, Any]] = []
        self.custom: set[str] = set()
        self.namespaced: dict[str, tuple[str, str]] = {}
        self.web_search = False

    def member(self, tool: dict[str, Any], where: str, namespace: str | None) -> None:
        kind = tool.get("type")
        name = tool.get("name")
        if kind not in ("function", "custom"):
            note_ignored("tool_type", kind, f"{where}.type")
            return
        if not isinstance(name, str) or not name:
            raise _bad(f"{where}.name", "a tool needs a non-empty `name`.")
        flat = flat_name(namespace, name) if namespace else name
        if namespace:
            self.namespaced[flat] = (namespace, name)
        if kind == "custom":
            self.custom.add(flat)
            self.chat.append(_custom_function(tool, flat))
        else:
            self.chat.append(_function(tool, flat, where))

    def add(self, tool: dict[str, Any], where: str) -> None:
        kind = tool["type"]
        if kind in WEB_SEARCH_TOOLS:
            # Codex's cached-only search (``external_web_access: false``) must not go live.
            self.web_search = self.web_search or tool.get("external_web_access") is not False
        elif kind == "namespace":
            namespace = tool.get("name")
            members = tool.get("tools")
            if not isinstance(namespace, str) or not namespace:
                raise _bad(f"{where}.name", "a namespace needs a non-empty `name`.")
            if not isinstance(members, list):
                raise _bad(f"{where}.tools", "must be an array of tools.")
            plain = namespace == PLAIN_NAMESPACE
            for index, member in enumerate(members):
                if not isinstance(member, dict):
                    raise _bad(f"{where}.tools[{index}]", "each tool must be an object.")
                self.member(member, f"{where}.tools[{index}]", None if plain else namespace)
        else:
            self.member(tool, where, None)

    def offer(self) -> ToolOffer:
        seen: set[str] = set()
        for tool in self.chat:
            name = tool["function"]["name"]
            if name in seen:
                raise _bad("tools", f"two tools are offered as {name!r}.")
            seen.add(name)
        return ToolOffer(self.chat, frozenset(self.custom), self.namespaced, self.web_search)


def map_tools(tools: list[dict[str, Any]], items: list[dict[str, Any]] | tuple = ()) -> ToolOffer:
    """Responses ``tools`` -> the chat tools offered, and how their calls go back.

    ``items`` are the input items: an ``additional_tools`` item (Codex's "lite"
    requests send their tools that way, as a developer item) adds its tools.
    """
    offer = _Offer()
    for index, tool in enumerate(tools):
        offer.add(tool, f"tools[{index}]")
    for i_index, item in enumerate(items):
        if item.get("type") != ADDITIONAL_TOOLS or not isinstance(item.get("tools"), list):
            continue
        for index, tool in enumerate(item["tools"]):
            where = f"input[{i_index}].tools[{index}]"
            if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
                raise _bad(where, "each tool must be an object with a `type`.")
            offer.add(tool, where)
    return offer.offer()


def _choice_name(choice: dict[str, Any]) -> Any:
    name = choice.get("name")
    namespace = choice.get("namespace")
    if isinstance(name, str) and isinstance(namespace, str) and namespace:
        return flat_name(namespace, name)
    return name


def map_tool_choice(choice: Any, chat_tools: list[dict[str, Any]]) -> tuple[Any, list[dict]]:
    """Responses ``tool_choice`` -> (chat ``tool_choice``, the tools still offered)."""
    if choice is None or choice in ("auto", "none", "required"):
        return choice, chat_tools
    if not isinstance(choice, dict):
        raise _bad("tool_choice", "must be auto, none, required or an object.")
    kind = choice.get("type")
    if kind in ("function", "custom"):
        name = _choice_name(choice)
        if not any(t["function"]["name"] == name for t in chat_tools):
            raise _bad("tool_choice.name", f"no tool named {name!r} in `tools`.")
        return {"type": "function", "function": {"name": name}}, chat_tools
    if kind == "allowed_tools":
        allowed = {_choice_name(t) for t in choice.get("tools") or [] if isinstance(t, dict)}
        kept = [t for t in chat_tools if t["function"]["name"] in allowed]
        mode = choice.get("mode") or "auto"
        return ("required" if mode == "required" else "auto"), kept
    if kind in WEB_SEARCH_TOOLS:
        return "auto", chat_tools
    raise _bad("tool_choice.type", f"unsupported tool_choice type {kind!r}.")
