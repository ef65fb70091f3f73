"""The client's tool definitions: checked at the door, reduced to a ``ToolConfig``.

``check_tools`` (OpenAI) and ``anthropic_specs`` (Anthropic) reject malformed
definitions with a ``ToolDefinitionError`` whose ``path`` names the bad field
(the schemas turn it into a 400 naming the parameter); ``check_tool_choice``
checks ``tool_choice`` against the tools; ``tool_config`` reduces a valid
request to what the prompt and the answer filter need (``None`` when no tool
section is to be sent). Each tool's parameters must be a valid JSON Schema
that is safe to run (``caller_schema``: RE2 regexes, no reference loops); the
check is cached by the schema's content hash, since clients resend their
tools with every request. A check that was not cached costs milliseconds of
CPU, so the loop lets other greenlets run after each one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from glm_proxy.errors import InvalidRequest
from glm_proxy.protocol.parsers import caller_schema

__all__ = [
    "ToolConfig",
    "ToolDefinitionError",
    "ToolSpec",
    "anthropic_specs",
    "check_tool_choice",
    "check_tools",
    "offered",
    "tool_config",
]

NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


class ToolDefinitionError(ValueError):
    """A tool definition or ``tool_choice`` is malformed; ``path`` is relative to the field."""

    def __init__(self, message: str, path: tuple[Any, ...] = ()) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolConfig:
    """What the model may call on this request.

    ``choice`` is ``auto``, ``required`` (at least one call) or ``named``
    (``forced`` must be called). ``tool_choice: none`` and no tools give no
    config at all: nothing about tools is sent and the answer is not parsed.
    """

    tools: tuple[ToolSpec, ...]
    choice: str = "auto"
    forced: str | None = None
    parallel: bool = True


def _check_schema(schema: dict[str, Any], path: tuple[Any, ...]) -> None:
    """Raise ``ToolDefinitionError`` for an unusable schema; yield the CPU after a fresh check."""
    fresh = False
    try:
        key = caller_schema.schema_key(schema)
        fresh = not caller_schema.is_cached(key)
        caller_schema.check(schema, key)
    except caller_schema.SchemaProblem as exc:
        where = exc.where()
        message = f"{exc}{' (at ' + where + ')' if where else ''}"[:300]
        raise ToolDefinitionError(message, path) from None
    finally:
        if fresh:
            caller_schema.pause()


def offered(
    tools: Any, known: tuple[str | None, ...]
) -> tuple[Any, list[int], list[tuple[int, str]]]:
    """The tools whose ``type`` is one of ``known``, their indexes, and (index, type) of the others.

    Only a tool with a ``type`` string the server does not know is left out; a
    malformed entry (not an object, no ``type``) stays, for the check to refuse.
    Anything but a list is returned as is.
    """
    if not isinstance(tools, list):
        return tools, [], []
    kept: list[Any] = []
    kept_at: list[int] = []
    left_out: list[tuple[int, str]] = []
    for index, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if isinstance(kind, str) and kind and kind not in known:
            left_out.append((index, kind))
        else:
            kept.append(tool)
            kept_at.append(index)
    return kept, kept_at, left_out


def check_tools(tools: Any) -> tuple[ToolSpec, ...]:
    """OpenAI ``tools`` -> specs. Raises ``ToolDefinitionError`` naming the bad field."""
    if not isinstance(tools, list):
        raise ToolDefinitionError("Must be an array of tools.")
    specs: list[ToolSpec] = []
    seen: set[str] = set()
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise ToolDefinitionError("Each tool must be an object.", (index,))
        if tool.get("type") != "function":
            raise ToolDefinitionError(
                f"Unsupported tool type {tool.get('type')!r}: only 'function' tools can be "
                "emulated on this upstream.",
                (index, "type"),
            )
        function = tool.get("function")
        if not isinstance(function, dict):
            raise ToolDefinitionError("Must be an object with a 'name'.", (index, "function"))
        specs.append(_spec(function, (index, "function"), "parameters"))
        if specs[-1].name in seen:
            raise ToolDefinitionError(
                f"Duplicate tool name {specs[-1].name!r}.", (index, "function", "name")
            )
        seen.add(specs[-1].name)
    return tuple(specs)


def _spec(function: dict[str, Any], path: tuple[Any, ...], schema_key: str) -> ToolSpec:
    name = function.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ToolDefinitionError(
            "Must be a non-empty string of letters, digits, '_', '-', '.' or ':' "
            "(at most 128 characters).",
            (*path, "name"),
        )
    description = function.get("description")
    if description is not None and not isinstance(description, str):
        raise ToolDefinitionError("Must be a string.", (*path, "description"))
    parameters = function.get(schema_key)
    if parameters is None:
        parameters = {"type": "object", "properties": {}}
    if not isinstance(parameters, dict):
        raise ToolDefinitionError("Must be a JSON Schema object.", (*path, schema_key))
    if parameters.get("type", "object") != "object":
        raise ToolDefinitionError(
            "The schema of a tool's arguments must have type 'object'.", (*path, schema_key)
        )
    _check_schema(parameters, (*path, schema_key))
    return ToolSpec(name, description or "", parameters)


def anthropic_specs(tools: Any) -> tuple[ToolSpec, ...]:
    """Anthropic ``tools`` (``name``, ``description``, ``input_schema``) -> specs."""
    if not isinstance(tools, list):
        raise ToolDefinitionError("Must be an array of tools.")
    specs: list[ToolSpec] = []
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise ToolDefinitionError("Each tool must be an object.", (index,))
        kind = tool.get("type")
        if kind not in (None, "custom"):
            raise ToolDefinitionError(
                f"Unsupported tool type {kind!r}: only client tools (with an input_schema) "
                "can be emulated on this upstream.",
                (index, "type"),
            )
        if "input_schema" not in tool:
            raise ToolDefinitionError("Missing required field.", (index, "input_schema"))
        spec = _spec(tool, (index,), "input_schema")
        if any(s.name == spec.name for s in specs):
            raise ToolDefinitionError(f"Duplicate tool name {spec.name!r}.", (index, "name"))
        specs.append(spec)
    return tuple(specs)


def check_tool_choice(choice: Any, names: set[str]) -> tuple[str, str | None]:
    """OpenAI ``tool_choice`` -> (mode, forced name); mode is none/auto/required/named."""
    if choice is None:
        return ("auto" if names else "none"), None
    if choice in ("none", "auto", "required"):
        if choice == "required" and not names:
            raise ToolDefinitionError("'required' needs at least one tool in 'tools'.")
        return choice, None
    if isinstance(choice, dict) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not name:
            raise ToolDefinitionError("Must name a function.", ("function", "name"))
        if name not in names:
            raise ToolDefinitionError(
                f"Names {name!r}, which is not among 'tools'.", ("function", "name")
            )
        return "named", name
    raise ToolDefinitionError(
        "Must be 'none', 'auto', 'required' or {\"type\": \"function\", \"function\": "
        '{"name": ...}}.'
    )


def tool_config(body: dict[str, Any]) -> ToolConfig | None:
    """The validated chat body's tool settings; None when no tool section is sent.

    Raises:
        InvalidRequest: tools that reached here unchecked (mapped from the
            Responses API) and are malformed.
    """
    specs = body.get("tools") or ()
    if not specs:
        return None
    if not isinstance(specs[0], ToolSpec):
        try:
            specs = check_tools(specs)
        except ToolDefinitionError as exc:  # tools mapped from another API (Responses)
            param = "tools" + "".join(
                f"[{p}]" if isinstance(p, int) else f".{p}" for p in exc.path if p != "function"
            )
            raise InvalidRequest(f"Invalid value for '{param}': {exc}", param=param) from None
    mode, forced = check_tool_choice(body.get("tool_choice"), {s.name for s in specs})
    if mode == "none":
        return None
    parallel = body.get("parallel_tool_calls")
    return ToolConfig(tuple(specs), mode, forced, parallel is not False)
