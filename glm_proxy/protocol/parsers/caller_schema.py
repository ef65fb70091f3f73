"""A caller's JSON Schema (tool parameters, structured outputs), checked once and run safely.

Callers choose these schemas, and the model's text is validated against them
in the worker's event loop, so nothing in them may take unbounded time:

- Regexes (``pattern``, ``patternProperties``, the metaschema's
  ``format: regex``) run on RE2, which matches in linear time; Python's
  backtracking ``re`` never sees a caller's regex (``^(a+)+$`` against
  thirty ``a`` and a ``!`` took a worker down). A regex RE2 cannot compile
  (backreferences, lookaround) is refused with the path naming it.
  ``unevaluatedProperties`` is refused next to ``patternProperties``, since
  jsonschema matches those patterns with ``re`` there.
- References stay inside the schema and cannot loop (``schema_walk``); no
  remote ``$ref`` is ever fetched.
- Checking a schema against its metaschema costs milliseconds per kilobyte,
  so results are cached by content hash (``check``), as are compiled
  validators (``validator``): clients resend the same tools on every request.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import orjson
import re2
import referencing
import referencing.exceptions
from jsonschema import FormatChecker, ValidationError
from jsonschema import exceptions as schema_errors
from jsonschema.validators import Draft202012Validator, extend, validator_for

from glm_proxy.protocol.parsers.schema_walk import (
    SchemaWalkError,
    check_references,
    json_shape,
    subschemas,
)

__all__ = [
    "SchemaProblem",
    "UnusableSchema",
    "check",
    "is_cached",
    "pause",
    "safe_errors",
    "schema_key",
    "validator",
]

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False
# Depth past which a schema is not even walked here (the request guard refuses far less).
_WALK_LIMIT = 256
# Properties checked against the metaschema between two chances for other requests to run.
_PIECE = 32
_SPLIT_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SPLIT_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")


class SchemaProblem(ValueError):
    """The caller's schema cannot be used; ``path`` locates the problem from its root."""

    def __init__(self, message: str, path: tuple[Any, ...] = ()) -> None:
        super().__init__(message)
        self.path = path

    def where(self) -> str:
        return "/".join(str(p) for p in self.path)


class UnusableSchema(ValueError):
    """Validation could not run to the end (too deep a value for the schema)."""


@functools.lru_cache(maxsize=1024)
def _regex(pattern: str) -> Any:
    return re2.compile(pattern, _OPTIONS)


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    if validator.is_type(instance, "string") and not _regex(pattern).search(instance):
        yield ValidationError(f"{instance[:80]!r} does not match {pattern[:80]!r}")


def _pattern_properties(validator: Any, patterns: Any, instance: Any, schema: Any) -> Any:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        regex = _regex(pattern)
        for key, value in instance.items():
            if regex.search(key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(validator: Any, extra: Any, instance: Any, schema: Any) -> Any:
    """jsonschema's ``additionalProperties``, with ``patternProperties`` matched on RE2."""
    if not validator.is_type(instance, "object"):
        return
    known = schema.get("properties", {})
    regexes = [_regex(p) for p in schema.get("patternProperties", {})]
    extras = [k for k in instance if k not in known and not any(r.search(k) for r in regexes)]
    if validator.is_type(extra, "object"):
        for key in extras:
            yield from validator.descend(instance[key], extra, path=key)
    elif not extra and extras:
        names = ", ".join(repr(k) for k in sorted(extras)[:20])
        verb = "was" if len(extras) == 1 else "were"
        yield ValidationError(f"Additional properties are not allowed ({names} {verb} unexpected)")


_REPLACED = {
    "pattern": _pattern,
    "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties,
}
_FORMATS = FormatChecker(formats=())
_FORMATS.checks("regex", raises=re2.error)(lambda text: not isinstance(text, str) or _regex(text))


@functools.cache
def _safe_class(base: Any) -> Any:
    """``base`` (a jsonschema validator class) with its regex keywords on RE2."""
    replaced = {k: v for k, v in _REPLACED.items() if k in base.VALIDATORS}
    return extend(base, replaced)


def _class_for(schema: Any) -> Any:
    return _safe_class(validator_for(schema, default=Draft202012Validator))


def _refuse_regexes(schema: Any) -> None:
    shape = json_shape(schema, _WALK_LIMIT)
    for path, pattern in shape.patterns:
        try:
            _regex(pattern)
        except re2.error as exc:
            reason = exc.args[0] if exc.args else ""
            if isinstance(reason, bytes):
                reason = reason.decode(errors="replace")
            raise SchemaProblem(
                f"the regex {pattern[:100]!r} is not supported ({reason}); patterns run on a "
                "linear-time engine without backreferences or lookaround",
                path,
            ) from None
    pattern_properties = unevaluated = None
    for path, node in subschemas(schema):
        if "patternProperties" in node and pattern_properties is None:
            pattern_properties = path
        if "unevaluatedProperties" in node and unevaluated is None:
            unevaluated = (*path, "unevaluatedProperties")
    if pattern_properties is not None and unevaluated is not None:
        raise SchemaProblem(
            "'unevaluatedProperties' cannot be combined with 'patternProperties' here; "
            "use 'additionalProperties'",
            unevaluated,
        )


def schema_key(schema: Any) -> bytes:
    """A digest of the schema's canonical text: the cache key for checks and validators.

    Raises:
        SchemaProblem: the schema nests too deeply to serialise.
    """
    try:
        text = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        raise SchemaProblem("the schema nests too deeply") from None
    return hashlib.blake2b(text).digest()


class _Bounded(OrderedDict):
    """An LRU map holding at most ``size`` entries."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: bytes, value: Any) -> Any:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)
        return value


_CHECKED = _Bounded(2048)  # digest -> () or (message, path): small values, many entries
_VALIDATORS = _Bounded(128)  # digest -> validator: holds the schema itself


def check(schema: Any, key: bytes | None = None) -> None:
    """Refuse a schema that is invalid or unsafe to run (cached by content hash).

    Raises:
        SchemaProblem: naming the path of the first problem.
    """
    key = key or schema_key(schema)
    cached = _CHECKED.get(key)
    if cached is None:
        found = _problem(schema)
        cached = _CHECKED.put(key, (str(found), found.path) if found is not None else ())
    else:
        _CHECKED.move_to_end(key)
    if cached:
        raise SchemaProblem(*cached)  # a fresh one: a stored exception would keep its frames


def is_cached(key: bytes) -> bool:
    """Whether ``check`` already knows this schema (no CPU to spend on it)."""
    return key in _CHECKED


def _problem(schema: Any) -> SchemaProblem | None:
    try:
        _refuse_regexes(schema)
        check_references(schema)
        _meta_check(_class_for(schema), schema)
    except SchemaProblem as exc:
        return exc
    except SchemaWalkError as exc:
        return SchemaProblem(str(exc), exc.path)
    except RecursionError:
        return SchemaProblem("the schema is nested too deeply to check")
    return None


def _pieces(schema: Any) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """``schema`` cut at every keyword holding many subschemas: each piece is checked alone.

    Checking a subschema under ``properties`` (or ``anyOf``, ``$defs``...)
    against the metaschema is what checking the whole does for it, so the
    pieces give the same verdict, and the CPU can be handed back between them.
    """
    stack: list[tuple[tuple[Any, ...], Any]] = [((), schema)]
    while stack:
        path, node = stack.pop()
        if not isinstance(node, dict):
            yield path, node
            continue
        rest = dict(node)
        for key in _SPLIT_MAPS:
            if isinstance(node.get(key), dict) and len(node[key]) > _PIECE:
                rest[key] = {}
                stack.extend(((*path, key, k), v) for k, v in node[key].items())
        for key in _SPLIT_LISTS:
            if isinstance(node.get(key), list) and len(node[key]) > _PIECE:
                rest[key] = [{}]
                stack.extend(((*path, key, i), v) for i, v in enumerate(node[key]))
        yield path, rest


def pause() -> None:
    """Let the worker's other requests run: under gevent ``time.sleep`` is the hub's.

    A positive sleep waits for the next turn of the event loop, so timers and
    sockets of other requests are served; ``sleep(0)`` only runs callbacks
    already queued and left ``/healthz`` waiting behind a long check.
    """
    time.sleep(0.0001)


@functools.cache
def _meta_validator(cls: Any) -> Any:
    meta_cls = validator_for(cls.META_SCHEMA, default=cls)
    return meta_cls(cls.META_SCHEMA, format_checker=_FORMATS)


def _meta_check(cls: Any, schema: Any) -> None:
    """``cls.check_schema`` in pieces, yielding the CPU between them (RE2 for ``regex``)."""
    meta = _meta_validator(cls)
    for count, (path, piece) in enumerate(_pieces(schema), 1):
        error = schema_errors.best_match(meta.iter_errors(piece))
        if error is not None:
            raise SchemaProblem(
                f"not a valid JSON Schema: {error.message[:200]}", (*path, *error.absolute_path)
            )
        if count % _PIECE == 0:
            pause()


def validator(schema: Any, key: bytes | None = None) -> Any:
    """A validator for a ``check``-ed schema, with no remote reference retrieval (cached)."""
    key = key or schema_key(schema)
    found = _VALIDATORS.get(key)
    if found is not None:
        _VALIDATORS.move_to_end(key)
        return found
    return _VALIDATORS.put(key, _class_for(schema)(schema, registry=referencing.Registry()))


def safe_errors(compiled: Any, value: Any) -> Any:
    """``best_match`` of the validation errors; ``UnusableSchema`` when validation cannot finish.

    A schema that refers to itself through properties validates a value as
    deep as the value goes; past the interpreter's stack that is the value's
    fault (too deep), reported instead of crashing the request.
    """
    try:
        return schema_errors.best_match(compiled.iter_errors(value))
    except RecursionError:
        raise UnusableSchema("the value is nested too deeply to validate") from None
    except referencing.exceptions.Unresolvable as exc:
        raise UnusableSchema(f"the schema has a reference that does not resolve: {exc}") from None
