"""What every request schema shares: the lenient base class and the one 400.

Lenient where OpenAI and Anthropic clients are: unknown fields are dropped
(SDKs add fields faster than servers learn them). Strict where a wrong value
would silently change the answer: each family's schema says which. A
validation failure becomes one ``InvalidRequest`` naming the first offending
``param`` (``messages[2].content``), the way the OpenAI API reports it.
"""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, missing

from glm_proxy.errors import InvalidRequest

__all__ = ["Lenient", "load", "nest_error"]


class Lenient(Schema):
    """A schema that drops unknown fields instead of refusing them."""

    class Meta:
        unknown = EXCLUDE


def nest_error(path: tuple[Any, ...], message: str) -> Any:
    """``path`` as the nested error dict ``load`` turns into the param ``a[0].b``."""
    error: Any = [message]
    for key in reversed(path):
        error = {key: error}
    return error


def _first_error(messages: Any, path: str = "") -> tuple[str, str]:
    """The dotted ``param`` and text of the first validation error."""
    if isinstance(messages, dict):
        key, value = next(iter(messages.items()))
        if key == "_schema":
            return _first_error(value, path)
        if isinstance(key, int):
            return _first_error(value, f"{path}[{key}]")
        return _first_error(value, f"{path}.{key}" if path else str(key))
    if isinstance(messages, list) and messages:
        first = messages[0]
        if isinstance(first, dict | list):
            return _first_error(first, path)
        return path, str(first)
    return path, str(messages)


class _Narrowing:
    """A schema's narrowed copies, one per set of fields a request body has.

    marshmallow walks every declared field on each load, present or not: the
    chat schema declares 33, a typical request sends 3 to 6, and the walk over
    the absent ones was half of the validation's cost. A copy built with
    ``only=`` (the body's fields plus the required and defaulted ones, in
    declared order) loads the same result and reports the same first error.
    Copies are built on first use and kept, up to ``MOST`` field sets (then the
    full schema loads: a caller varying its fields cannot grow memory further).
    """

    MOST = 64  # about 1 MB of copies for the largest schema

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        always, optional = [], []
        for name, field in schema.load_fields.items():
            key = field.data_key if field.data_key is not None else name
            if field.required or field.load_default is not missing:
                always.append(name)
            else:
                optional.append((name, key))
        self.always = frozenset(always)
        self.optional = tuple(optional)
        self.order = tuple(schema.load_fields)
        self.copies: dict[frozenset[str], Schema] = {}

    def for_data(self, data: dict[str, Any]) -> Schema:
        present = frozenset(name for name, key in self.optional if key in data)
        copy = self.copies.get(present)
        if copy is None:
            if len(self.copies) >= self.MOST:
                return self.schema
            wanted = present | self.always
            copy = type(self.schema)(only=tuple(n for n in self.order if n in wanted))
            self.copies[present] = copy
        return copy


def _narrowed(schema: Schema, data: dict[str, Any]) -> Schema:
    """``schema`` narrowed to ``data``'s fields, when it is a plain instance (no options)."""
    if schema.only is not None or schema.exclude or schema.many or schema.partial:
        return schema
    if schema._hooks.get("pre_load"):  # a hook may add fields the body did not have
        return schema
    narrowing = schema.__dict__.get("_narrowing")
    if narrowing is None:
        narrowing = schema.__dict__["_narrowing"] = _Narrowing(schema)
    return narrowing.for_data(data)


def load(schema: Schema, data: Any) -> dict[str, Any]:
    """Validate ``data``; raise one OpenAI-style 400 naming the offending parameter."""
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    try:
        return _narrowed(schema, data).load(data)
    except ValidationError as exc:
        param, text = _first_error(exc.messages)
        if text == "Unknown field.":
            text = "Unknown parameter."
        if text == "Missing data for required field.":
            raise InvalidRequest(f"Missing required parameter: '{param}'.", param=param) from None
        raise InvalidRequest(f"Invalid value for '{param}': {text}", param=param) from None
