"""Structured outputs: reduce the answer to JSON that validates against the client's schema.

``response_format`` ``json_schema`` / ``json_object`` (and Responses
``text.format``) promise the client a JSON document. The web model is only
asked for one in the prompt (``instruction``), so its answer may come wrapped
in a code fence or in prose. This filter holds the whole answer back, then at
the end extracts the JSON (``extract_json``), validates it with ``jsonschema``
and releases only the JSON text.

If it does not validate (or there is no JSON at all), the first try returns a
``Reask`` carrying the validation error, and the answer job asks once more in
the same upstream conversation; the filter for that final try raises
``StructuredOutputError`` (a 502: the model, not the caller, failed) with the
validation message, so pipelines fail loudly instead of getting ``None``.

Everything is held during the first try (reasoning too), so nothing has reached
the client when a re-ask is needed; on the final try reasoning, citations and
images stream live and only the answer text is held.

A turn that ends in a tool call (the tool-call filter runs before this one)
is a tool turn, not the final answer: the schema applies only to the final
text answer, so such a turn passes through as it is (text before the call,
the call, ``finish_reason`` ``tool_calls``), never re-asked nor refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from jsonschema import SchemaError
from jsonschema.exceptions import best_match
from jsonschema.validators import Draft202012Validator, validator_for

from glm_proxy.errors import InvalidRequest, UpstreamError
from glm_proxy.protocol.events import (
    ConversationStarted,
    Delta,
    Finished,
    TextDelta,
    ToolCallArguments,
    ToolCallStart,
)
from glm_proxy.protocol.parsers import Reask

__all__ = [
    "JsonSpec",
    "StructuredFilter",
    "StructuredOutputError",
    "extract_json",
    "instruction",
    "reask_text",
]

FENCE = re.compile(r"```[ \t]*(?:json|JSON|json5)?[ \t]*\r?\n(.*?)(?:\r?\n)?```", re.S)
_DECODER = json.JSONDecoder()


class StructuredOutputError(UpstreamError):
    """The model did not produce JSON that validates against the requested schema."""

    code = "invalid_structured_output"


@dataclass(frozen=True)
class JsonSpec:
    """What the client asked for: any JSON object (``schema`` None) or one schema."""

    schema: dict[str, Any] | None = None
    name: str = "response"
    strict: bool = False

    def validator(self) -> Any:
        schema = self.schema if self.schema is not None else {"type": "object"}
        cls = validator_for(schema, default=Draft202012Validator)
        return cls(schema)

    @classmethod
    def checked(
        cls,
        schema: dict[str, Any] | None,
        name: str = "response",
        strict: bool = False,
        param: str = "response_format",
    ) -> JsonSpec:
        """A spec whose schema is itself valid; an invalid schema is the caller's 400."""
        if schema is not None:
            try:
                validator_for(schema, default=Draft202012Validator).check_schema(schema)
            except SchemaError as exc:
                raise InvalidRequest(
                    f"Invalid value for '{param}': the JSON schema is invalid: {exc.message}",
                    param=param,
                ) from None
        return cls(schema, name or "response", bool(strict))


def _candidates(text: str) -> Iterator[str]:
    """Texts that may hold the JSON answer, most likely first."""
    stripped = text.strip()
    if stripped:
        yield stripped
    for match in FENCE.finditer(text):
        yield match.group(1).strip()


def extract_json(text: str, spec: JsonSpec) -> tuple[Any, str | None]:
    """The JSON value in ``text`` and ``None``, or the best value found and why it fails.

    Tries the whole text, then each fenced block, then every ``{`` / ``[`` where
    a JSON value starts (prose around it is ignored). The first value that
    validates wins; otherwise the first value found is reported with its
    validation error. No JSON at all gives ``(None, reason)``.
    """
    validator = spec.validator()
    first: tuple[Any, str] | None = None

    def check(value: Any) -> str | None:
        error = best_match(validator.iter_errors(value))
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path)
        return f"{error.message} (at '{where}')" if where else error.message

    seen: set[str] = set()
    for candidate in _candidates(text):
        if candidate in seen:
            continue
        seen.add(candidate)
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        problem = check(value)
        if problem is None:
            return value, None
        first = first or (value, problem)
    for match in re.finditer(r"[\[{]", text):
        try:
            value, _ = _DECODER.raw_decode(text, match.start())
        except ValueError:
            continue
        problem = check(value)
        if problem is None:
            return value, None
        first = first or (value, problem)
    if first is not None:
        return first
    return None, "the answer contains no JSON value"


def _schema_text(spec: JsonSpec) -> str:
    if spec.schema is None:
        return ""
    return json.dumps(spec.schema, ensure_ascii=False, separators=(",", ":"))


def instruction(spec: JsonSpec) -> str:
    """The prompt addition that asks the model for JSON only."""
    if spec.schema is None:
        return (
            "Answer with one valid JSON object only: no prose before or after it, "
            "no markdown code fence, no comments."
        )
    return (
        f"Answer with one JSON value only that conforms to this JSON Schema (named "
        f"{spec.name!r}): no prose before or after it, no markdown code fence, no comments. "
        f"Include every required property and no property the schema does not allow.\n"
        f"JSON Schema: {_schema_text(spec)}"
    )


def reask_text(spec: JsonSpec, problem: str) -> str:
    """The correction sent in the same conversation when the answer did not validate."""
    target = "the JSON Schema given before" if spec.schema is not None else "a JSON object"
    text = (
        f"Your answer is not valid: {problem}. Answer again with only the corrected JSON "
        f"that conforms to {target}: no prose, no code fence."
    )
    if spec.schema is not None:
        text += f"\nJSON Schema: {_schema_text(spec)}"
    return text


class StructuredFilter:
    """Holds the answer, releases only its validated JSON (see the module docstring)."""

    def __init__(self, spec: JsonSpec, *, final: bool) -> None:
        self.spec = spec
        self.final = final
        self._text: list[str] = []
        self._held: list[Delta] = []
        self._finished: Finished | None = None
        self.done = False
        self.tool_turn = False  # a tool call came: the schema does not apply to this turn

    def feed(self, delta: Delta) -> list[Delta]:
        if self.done:
            return []
        if isinstance(delta, ConversationStarted):
            return [delta]
        if isinstance(delta, ToolCallStart | ToolCallArguments) and not self.tool_turn:
            # The text so far is the words before the call, in order before it.
            self.tool_turn = True
            text, self._text = "".join(self._text), []
            before = [TextDelta(text), delta] if text else [delta]
            if self.final:
                return before
            self._held.extend(before)
            return []
        if isinstance(delta, TextDelta):
            if self.tool_turn:
                return self._pass(delta)
            self._text.append(delta.text)
            return []
        if isinstance(delta, Finished):
            self._finished = delta
            self.done = True
            return []
        return self._pass(delta)

    def _pass(self, delta: Delta) -> list[Delta]:
        """Live on the final try; held on the first (a re-ask must find nothing sent)."""
        if self.final:
            return [delta]
        self._held.append(delta)
        return []

    def finish(self) -> list[Delta | Reask]:
        text = "".join(self._text)
        finished = self._finished or Finished("stop")
        if self.tool_turn:
            return [*self._held, finished]
        if finished.reason == "content_filter":
            # The upstream refused; that is the answer, not a schema failure.
            return [*self._held, TextDelta(text), finished] if text else [*self._held, finished]
        value, problem = extract_json(text, self.spec)
        if problem is None:
            rendered = json.dumps(value, ensure_ascii=False)
            return [*self._held, TextDelta(rendered), finished]
        if not self.final:
            return [Reask(reask_text(self.spec, problem), reason="invalid_json")]
        raise StructuredOutputError(
            "The model did not produce valid JSON for the requested schema "
            f"({self.spec.name!r}) after one correction: {problem}.",
            code="invalid_structured_output",
        )
