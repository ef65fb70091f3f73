"""What every request schema shares: the lenient base class and the one 400.

Lenient where OpenAI and Anthropic clients are: unknown fields are dropped
(SDKs add fields faster than servers learn them). Strict where a wrong value
would silently change the answer: each family's schema says which. A
validation failure becomes one ``InvalidRequest`` naming the first offending
``param`` (``messages[2].content``), the way the OpenAI API reports it.
"""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError

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


def load(schema: Schema, data: Any) -> dict[str, Any]:
    """Validate ``data``; raise one OpenAI-style 400 naming the offending parameter."""
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    try:
        return schema.load(data)
    except ValidationError as exc:
        param, text = _first_error(exc.messages)
        if text == "Unknown field.":
            text = "Unknown parameter."
        if text == "Missing data for required field.":
            raise InvalidRequest(f"Missing required parameter: '{param}'.", param=param) from None
        raise InvalidRequest(f"Invalid value for '{param}': {text}", param=param) from None
