"""Per-request bounds on the JSON Schemas a caller sends, checked before any schema work.

Checking a schema against its metaschema costs about a millisecond per
property, all of it CPU in the worker's event loop; a thousand tools of 150
properties each held a worker for a minute. ``check_budget`` finds the
request's schemas (tool parameters on all three APIs, the structured-output
schema of each) and refuses, naming the limit, a request whose schemas
together hold more bytes or properties than allowed, or any schema nested
deeper than allowed or with a regex longer than allowed. It only walks and
serialises (C): cheap next to what it saves.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from glm_proxy.protocol.parsers.schema_walk import json_shape

__all__ = ["BudgetExceeded", "SchemaBudget", "check_budget", "request_schemas"]


@dataclass(frozen=True, slots=True)
class SchemaBudget:
    max_bytes: int
    max_properties: int
    max_depth: int
    max_pattern_length: int


class BudgetExceeded(ValueError):
    """Over one of the bounds; ``param`` names the field, ``setting`` the limit's variable."""

    def __init__(self, message: str, param: str, setting: str) -> None:
        super().__init__(message)
        self.param = param
        self.setting = setting


def _get(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def request_schemas(body: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(parameter name, schema) for every caller schema in a request body of any API."""
    tools = body.get("tools")
    if isinstance(tools, list):
        for index, tool in enumerate(tools):
            tool_keys: tuple[tuple[str, ...], ...] = (
                ("function", "parameters"),
                ("parameters",),
                ("input_schema",),
            )
            for keys in tool_keys:
                schema = _get(tool, *keys)
                if schema is not None:
                    yield f"tools[{index}].{'.'.join(keys)}", schema
                    break
    for keys in (
        ("response_format", "json_schema", "schema"),
        ("text", "format", "schema"),
        ("output_config", "format", "schema"),
        ("output_format", "schema"),
    ):
        schema = _get(body, *keys)
        if schema is not None:
            yield ".".join(keys), schema


def check_budget(body: Any, budget: SchemaBudget) -> None:
    """Refuse a request whose schemas are over the budget (see the module docstring).

    Raises:
        BudgetExceeded: the first bound passed, with the field and the setting to name.
    """
    if not isinstance(body, dict):
        return
    total_bytes = total_properties = 0
    for param, schema in request_schemas(body):
        shape = json_shape(schema, budget.max_depth)
        if shape.depth > budget.max_depth:
            raise BudgetExceeded(
                f"`{param}` nests more than {budget.max_depth} levels deep (MAX_SCHEMA_DEPTH).",
                param,
                "MAX_SCHEMA_DEPTH",
            )
        for path, pattern in shape.patterns:
            if len(pattern) > budget.max_pattern_length:
                where = ".".join([param, *(str(p) for p in path)])
                raise BudgetExceeded(
                    f"The regex at `{where}` is {len(pattern)} characters long; the limit is "
                    f"{budget.max_pattern_length} (MAX_SCHEMA_PATTERN_LENGTH).",
                    where,
                    "MAX_SCHEMA_PATTERN_LENGTH",
                )
        total_properties += shape.properties
        if total_properties > budget.max_properties:
            raise BudgetExceeded(
                f"The request's JSON schemas define more than {budget.max_properties} "
                f"properties in all (MAX_SCHEMA_PROPERTIES); over the limit at `{param}`.",
                param,
                "MAX_SCHEMA_PROPERTIES",
            )
        total_bytes += len(orjson.dumps(schema))
        if total_bytes > budget.max_bytes:
            raise BudgetExceeded(
                f"The request's JSON schemas hold more than {budget.max_bytes} bytes in all "
                f"(MAX_SCHEMA_BYTES); over the limit at `{param}`.",
                param,
                "MAX_SCHEMA_BYTES",
            )
