"""A written call -> a JSON object validated against its tool's schema.

``Toolbox.arguments`` takes one ``RawCall`` the model wrote (parameter texts)
and returns a JSON object validated against the tool's schema, or the reason
it is not acceptable. Obvious slips are coerced, never guessed at: ``"3"`` for
an integer, ``"true"`` for a boolean, a JSON text for an object or array;
trailing commas and single quotes in JSON values are tolerated.

Validators are compiled lazily, per tool actually called, and cached by the
schema's content hash, so a request with fifty tools pays for the one it uses.
They run the caller's regexes on RE2 (``caller_schema``). The model's
arguments are refused, not crashed on, when nested deeper than
``MAX_ARGUMENT_DEPTH`` or too deep for a self-referring schema.
"""

from __future__ import annotations

import re
from typing import Any

import json5
import orjson
from jsonschema import exceptions as schema_errors

from glm_proxy.protocol.parsers import caller_schema
from glm_proxy.protocol.parsers.schema_walk import json_depth
from glm_proxy.tools.calls import RawCall
from glm_proxy.tools.definitions import ToolSpec

__all__ = ["Toolbox", "loads_lenient"]

_INT_RE = re.compile(r"^[+-]?\d+$")
_NUM_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
# The JSON5 parser is pure Python (tens of microseconds per character, recursive):
# it only gets to forgive slips in texts up to this size.
LENIENT_MAX_CHARS = 4096
MAX_ARGUMENT_DEPTH = 64


def loads_lenient(text: str) -> Any:
    """JSON, or JSON5 (trailing commas, single quotes, comments) when strict JSON fails.

    Raises:
        ValueError: neither parses (a long or deeply nested text is only read as JSON).
    """
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        if len(text) > LENIENT_MAX_CHARS:
            raise
    try:
        return json5.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _resolve(schema: Any, root: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``$ref`` (``#/$defs/X``, ``#/definitions/X``); anything else as is."""
    for _ in range(8):
        if not isinstance(schema, dict):
            return {}
        ref = schema.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#/"):
            return schema
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        schema = target
    return {}


def _types(schema: dict[str, Any], root: dict[str, Any]) -> set[str]:
    """The JSON types a (sub)schema admits; empty when it does not say."""
    kind = schema.get("type")
    if isinstance(kind, str):
        return {kind}
    if isinstance(kind, list):
        return {k for k in kind if isinstance(k, str)}
    found: set[str] = set()
    for key in ("anyOf", "oneOf"):
        for branch in schema.get(key) or ():
            found |= _types(_resolve(branch, root), root)
    if "enum" in schema and not found:
        found = {_json_type(v) for v in schema["enum"]}
    if "const" in schema and not found:
        found = {_json_type(schema["const"])}
    if not found and "properties" in schema:
        found = {"object"}
    return found


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _coerce(value: Any, schema: Any, root: dict[str, Any]) -> Any:
    """``value`` nudged toward the schema's type where that is unambiguous."""
    schema = _resolve(schema, root)
    types = _types(schema, root)
    if (
        types
        and _json_type(value) not in types
        and not (_json_type(value) == "integer" and "number" in types)
    ):
        value = _convert(value, types)
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        return {
            k: _coerce(v, props.get(k, {}), root) if k in props else v for k, v in value.items()
        }
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_coerce(v, schema["items"], root) for v in value]
    return value


def _convert(value: Any, types: set[str]) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if "integer" in types and _INT_RE.match(text):
            return int(text)
        if "number" in types and _NUM_RE.match(text):
            number = float(text)
            return int(number) if number.is_integer() and "e" not in text.lower() else number
        if "boolean" in types and text.lower() in ("true", "false"):
            return text.lower() == "true"
        if "null" in types and text in ("", "null", "None"):
            return None
        if types & {"object", "array"} and text[:1] in ("{", "["):
            try:
                parsed = loads_lenient(text)
            except ValueError:
                return value
            return parsed if _json_type(parsed) in types else value
        return value
    if isinstance(value, float) and "integer" in types and value.is_integer():
        return int(value)
    if isinstance(value, int | float) and not isinstance(value, bool) and types == {"string"}:
        return str(value)
    return value


def _param_value(text: str, schema: Any, root: dict[str, Any]) -> Any:
    """A parameter element's text as a JSON value, read the way its schema expects."""
    types = _types(_resolve(schema, root), root)
    if types == {"string"}:
        return text
    stripped = text.strip()
    if not types:  # untyped: JSON only when it plainly is an object or an array
        if stripped[:1] in ("{", "["):
            try:
                return loads_lenient(stripped)
            except ValueError:
                return text
        return text
    try:
        value = loads_lenient(stripped)
    except ValueError:
        return text
    if "string" in types and _json_type(value) not in types:
        return text
    return value


def _describe(error: schema_errors.ValidationError, tool: str) -> str:
    """A schema error in a few words, naming paths and expectations but never the values."""
    where = "/".join(str(p) for p in error.absolute_path)
    subject = f"parameter {where!r} of {tool!r}" if where else f"the arguments of {tool!r}"
    kind = error.validator
    if kind == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return f"{subject} misses the required parameter {missing!r}"
    if kind == "additionalProperties":
        return f"{subject}: {error.message}"[:200]
    if kind == "type":
        return f"{subject} must be of type {error.validator_value}"
    if kind == "enum":
        options = ", ".join(repr(v) for v in list(error.validator_value)[:10])
        return f"{subject} must be one of {options}"
    return f"{subject} fails the schema's {kind!r} rule ({str(error.validator_value)[:60]})"


class Toolbox:
    """The request's tools by name; turns raw calls into validated argument objects."""

    def __init__(self, tools: tuple[ToolSpec, ...]) -> None:
        self._tools = tools
        self._by_name: dict[str, ToolSpec] | None = None

    def get(self, name: str) -> ToolSpec | None:
        if self._by_name is None:
            self._by_name = {t.name: t for t in self._tools}
        return self._by_name.get(name)

    def names(self, limit: int = 20) -> str:
        names = [t.name for t in self._tools[:limit]]
        return ", ".join(names) + (", ..." if len(self._tools) > limit else "")

    def arguments(self, call: RawCall) -> tuple[dict[str, Any] | None, str]:
        """(arguments, "") for a valid call, or (None, reason) for one to refuse."""
        if call.problem:
            return None, call.problem
        if not call.name:
            return None, "an <invoke> has an empty name"
        tool = self.get(call.name)
        if tool is None:
            return None, f"there is no tool named {call.name!r} (tools: {self.names()})"
        root = tool.parameters
        props = root.get("properties") or {}
        if call.body:
            try:
                value = loads_lenient(call.body)
            except ValueError:
                return None, f"the arguments of {call.name!r} are neither parameters nor JSON"
            if not isinstance(value, dict):
                return None, f"the arguments of {call.name!r} are not an object"
        else:
            value = {k: _param_value(v, props.get(k, {}), root) for k, v in call.params.items()}
        if json_depth(value, MAX_ARGUMENT_DEPTH) > MAX_ARGUMENT_DEPTH:
            return None, (
                f"the arguments of {call.name!r} nest more than {MAX_ARGUMENT_DEPTH} levels deep"
            )
        try:
            value = _coerce(value, root, root)
            error = caller_schema.safe_errors(caller_schema.validator(root), value)
        except (caller_schema.UnusableSchema, RecursionError) as exc:
            return None, f"the arguments of {call.name!r} cannot be checked: {exc}"
        if error is not None:
            return None, _describe(error, call.name)
        return value, ""
