"""The OpenAI Responses request (``POST /v1/responses``): marshmallow schema.

Lenient like the chat schema: every documented field is accepted and unknown
ones are dropped. Fields the service cannot honour are refused loudly (400)
where honouring them matters to the caller (``background``, ``conversation``,
``prompt``); the sampling knobs the web upstream lacks are accepted and
ignored, as in chat. Input items and tools are checked item by item in
``services.responses`` (which names the offending ``input[i]``).
"""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from glm_proxy.api.schemas.base import Lenient
from glm_proxy.api.schemas.chat import REASONING_EFFORTS

RESPONSE_ID = r"^resp_[A-Za-z0-9]{6,64}$"
TEXT_FORMATS = ("text", "json_object", "json_schema")


class InputField(fields.Field):
    """``input``: a string, or a list of input items (objects)."""

    def _deserialize(self, value: Any, attr, data, **kwargs) -> Any:
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            for index, item in enumerate(value):
                if not isinstance(item, dict):
                    raise ValidationError({index: ["Each input item must be an object."]})
            return value
        raise ValidationError("Must be a string or an array of input items.")


class ToolField(fields.Field):
    def _deserialize(self, value: Any, attr, data, **kwargs) -> Any:
        if not isinstance(value, dict) or not isinstance(value.get("type"), str):
            raise ValidationError("Each tool must be an object with a `type`.")
        return value


class ReasoningSchema(Lenient):
    effort = fields.Str(allow_none=True, validate=validate.OneOf(REASONING_EFFORTS))
    summary = fields.Str(allow_none=True)
    generate_summary = fields.Str(allow_none=True)


class TextFormatSchema(Lenient):
    type = fields.Str(required=True, validate=validate.OneOf(TEXT_FORMATS))
    name = fields.Str(allow_none=True)
    schema = fields.Dict(allow_none=True)
    description = fields.Str(allow_none=True)
    strict = fields.Bool(allow_none=True)

    @validates_schema
    def _schema_needs_a_schema(self, data: dict, **kwargs) -> None:
        if data.get("type") == "json_schema" and not isinstance(data.get("schema"), dict):
            raise ValidationError("A `json_schema` format needs a `schema` object.", "schema")


class TextSchema(Lenient):
    format = fields.Nested(TextFormatSchema, allow_none=True)
    verbosity = fields.Str(allow_none=True, validate=validate.OneOf(("low", "medium", "high")))


class ResponsesSchema(Lenient):
    model = fields.Str(required=True, validate=validate.Length(min=1, max=256))
    input = InputField(required=True)
    instructions = fields.Str(allow_none=True)
    tools = fields.List(ToolField(), allow_none=True)
    tool_choice = fields.Raw(allow_none=True)
    parallel_tool_calls = fields.Bool(allow_none=True)
    reasoning = fields.Nested(ReasoningSchema, allow_none=True)
    text = fields.Nested(TextSchema, allow_none=True)
    max_output_tokens = fields.Int(allow_none=True, validate=validate.Range(min=1))
    stream = fields.Bool(load_default=False, allow_none=True)
    store = fields.Bool(load_default=True, allow_none=True)
    previous_response_id = fields.Str(allow_none=True, validate=validate.Regexp(RESPONSE_ID))
    metadata = fields.Dict(keys=fields.Str(), values=fields.Str(), allow_none=True)
    user = fields.Str(allow_none=True)
    include = fields.List(fields.Str(), allow_none=True)
    # Refused: the service cannot do these (see the README).
    background = fields.Bool(allow_none=True)
    conversation = fields.Raw(allow_none=True)
    prompt = fields.Raw(allow_none=True)
    # Accepted for compatibility; the web upstream has no such knobs.
    temperature = fields.Float(allow_none=True, validate=validate.Range(0, 2))
    top_p = fields.Float(allow_none=True, validate=validate.Range(0, 1))
    top_logprobs = fields.Int(allow_none=True, validate=validate.Range(0, 20))
    max_tool_calls = fields.Int(allow_none=True, validate=validate.Range(min=1))
    truncation = fields.Str(allow_none=True, validate=validate.OneOf(("auto", "disabled")))
    service_tier = fields.Str(allow_none=True)
    prompt_cache_key = fields.Str(allow_none=True)
    prompt_cache_retention = fields.Str(allow_none=True)
    safety_identifier = fields.Str(allow_none=True)
    stream_options = fields.Dict(allow_none=True)

    @validates_schema
    def _refused(self, data: dict, **kwargs) -> None:
        if data.get("background"):
            raise ValidationError(
                "Background responses are not supported; use `stream` for long answers.",
                "background",
            )
        if data.get("conversation") is not None:
            raise ValidationError(
                "The Conversations API is not supported; use `previous_response_id`.",
                "conversation",
            )
        if data.get("prompt") is not None:
            raise ValidationError("Stored prompt templates are not supported.", "prompt")
