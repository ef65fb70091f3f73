"""The Chat Completions request (``POST /v1/chat/completions``): marshmallow schema.

Lenient where OpenAI clients are: every standard field is accepted (the
sampling knobs the upstream lacks are ignored, see README; the answer controls
are honoured by ``glm_proxy.services.controls``), unknown fields are dropped.
Strict where a wrong value would silently change the answer: roles, types,
ranges. A failure becomes one 400 naming the first offending ``param``.
"""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from glm_proxy.api.schemas.base import Lenient, nest_error
from glm_proxy.http.request_guard import tick
from glm_proxy.observability.additions import note_ignored
from glm_proxy.tools.definitions import (
    ToolDefinitionError,
    check_tool_choice,
    check_tools,
    offered,
)

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")


class ContentField(fields.Field):
    """Message content: a string, a list of parts (objects or strings), or null."""

    def _deserialize(self, value: Any, attr, data, **kwargs) -> Any:
        tick()  # once per message: long histories let other requests run
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, list):
            for index, part in enumerate(value):
                if isinstance(part, str):
                    continue
                if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                    raise ValidationError(
                        {index: ["Each content part must be an object with a `type`."]}
                    )
            return value
        raise ValidationError("Must be a string, an array of content parts, or null.")


class StopField(fields.Field):
    """A stop string or a list of at most ``most`` of them (OpenAI: 4)."""

    def __init__(self, *args: Any, most: int = 4, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.most = most

    def _deserialize(self, value: Any, attr, data, **kwargs) -> Any:
        if value is None or isinstance(value, str):
            return value
        if (
            isinstance(value, list)
            and all(isinstance(v, str) for v in value)
            and len(value) <= self.most
        ):
            return value
        raise ValidationError(f"Must be a string or an array of up to {self.most} strings.")


class ResponseFormatField(fields.Field):
    """``response_format``: ``text``, ``json_object``, or ``json_schema`` with a schema object.

    The schema itself is checked later (``glm_proxy.services.controls``), where an
    invalid one becomes a 400 naming it.
    """

    def _deserialize(self, value: Any, attr, data, **kwargs) -> Any:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ValidationError("Must be an object with a `type`.")
        kind = value.get("type")
        if kind not in ("text", "json_object", "json_schema"):
            raise ValidationError("`type` must be one of text, json_object, json_schema.")
        if kind == "json_schema":
            spec = value.get("json_schema")
            if not isinstance(spec, dict):
                raise ValidationError("`json_schema` must be an object with `name` and `schema`.")
            if not isinstance(spec.get("name"), str) or not spec["name"]:
                raise ValidationError("`json_schema.name` is required.")
            if not isinstance(spec.get("schema", {}), dict):
                raise ValidationError("`json_schema.schema` must be an object.")
            if spec.get("strict") not in (None, True, False):
                raise ValidationError("`json_schema.strict` must be a boolean.")
        return value


class ToolsField(fields.Field):
    """``tools``: function tools with a name and a valid JSON Schema (checked, not trusted).

    Loads as the ``ToolSpec``s ``tool_config`` takes, so the tools are checked once.

    A tool of a type the server does not emulate (``custom``, built-in tools of
    newer API versions) is left out of the offer and counted (docs/clients.md):
    the model calling fewer tools is still a valid answer.
    """

    def _deserialize(self, value: Any, attr, data, **kwargs) -> Any:
        kept, kept_at, left_out = offered(value, ("function",))
        for index, kind in left_out:
            note_ignored("tool_type", kind, f"tools[{index}]")
        try:
            return check_tools(kept)  # the specs: validated here, once
        except ToolDefinitionError as exc:
            path = exc.path
            if path and isinstance(path[0], int) and path[0] < len(kept_at):
                path = (kept_at[path[0]], *path[1:])  # the index the client sent
            raise ValidationError(nest_error(path, str(exc))) from None


class ToolCallsField(fields.Field):
    """An assistant turn's ``tool_calls``: each needs a function name (it goes into the prompt)."""

    def _deserialize(self, value: Any, attr, data, **kwargs) -> Any:
        if value is None:
            return value
        if not isinstance(value, list):
            raise ValidationError("Must be an array of tool calls.")
        for index, call in enumerate(value):
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise ValidationError(nest_error((index, "function", "name"), "Must be a string."))
            arguments = function.get("arguments")
            if arguments is not None and not isinstance(arguments, str | dict):
                raise ValidationError(
                    nest_error((index, "function", "arguments"), "Must be a JSON string.")
                )
        return value


class MessageSchema(Lenient):
    role = fields.Str(required=True, validate=validate.OneOf(ROLES))
    content = ContentField(load_default=None, allow_none=True)
    name = fields.Str(allow_none=True)
    reasoning_content = fields.Str(allow_none=True)
    tool_calls = ToolCallsField(allow_none=True)
    tool_call_id = fields.Str(allow_none=True)
    function_call = fields.Dict(allow_none=True)  # legacy assistant turn


class StreamOptionsSchema(Lenient):
    include_usage = fields.Bool(load_default=False, allow_none=True)
    include_obfuscation = fields.Bool(allow_none=True)


class ChatCompletionSchema(Lenient):
    model = fields.Str(required=True, validate=validate.Length(min=1, max=256))
    messages = fields.List(
        fields.Nested(MessageSchema), required=True, validate=validate.Length(min=1)
    )
    stream = fields.Bool(load_default=False, allow_none=True)
    stream_options = fields.Nested(StreamOptionsSchema, allow_none=True)
    # Accepted for compatibility; the web upstream has no such knobs (see README).
    # n, max_tokens, max_completion_tokens, stop, logprobs and response_format are
    # honoured by the proxy itself (glm_proxy.services.controls).
    temperature = fields.Float(allow_none=True, validate=validate.Range(0, 2))
    top_p = fields.Float(allow_none=True, validate=validate.Range(0, 1))
    n = fields.Int(allow_none=True, validate=validate.Range(1, 128))
    max_tokens = fields.Int(allow_none=True, validate=validate.Range(min=1))
    max_completion_tokens = fields.Int(allow_none=True, validate=validate.Range(min=1))
    stop = StopField(allow_none=True)
    presence_penalty = fields.Float(allow_none=True, validate=validate.Range(-2, 2))
    frequency_penalty = fields.Float(allow_none=True, validate=validate.Range(-2, 2))
    logit_bias = fields.Dict(allow_none=True)
    logprobs = fields.Bool(allow_none=True)
    top_logprobs = fields.Int(allow_none=True, validate=validate.Range(0, 20))
    user = fields.Str(allow_none=True)
    seed = fields.Int(allow_none=True)
    response_format = ResponseFormatField(allow_none=True)
    tools = ToolsField(allow_none=True)
    tool_choice = fields.Raw(allow_none=True)
    parallel_tool_calls = fields.Bool(allow_none=True)
    functions = fields.Raw(allow_none=True)  # legacy: refused, see _tool_choice_matches
    function_call = fields.Raw(allow_none=True)
    reasoning_effort = fields.Str(allow_none=True, validate=validate.OneOf(REASONING_EFFORTS))
    metadata = fields.Dict(allow_none=True)
    store = fields.Bool(allow_none=True)
    service_tier = fields.Str(allow_none=True)
    web_search_options = fields.Dict(allow_none=True)
    # Extensions.
    conversation_id = fields.Str(allow_none=True, validate=validate.Regexp(r"^[A-Za-z0-9]{6,64}$"))
    keep_conversation = fields.Bool(load_default=False, allow_none=True)
    web_search = fields.Bool(allow_none=True)

    @validates_schema
    def _last_message_has_content(self, data: dict, **kwargs) -> None:
        messages = data.get("messages") or []
        if messages and all(m.get("content") in (None, "", []) for m in messages):
            raise ValidationError("At least one message must have content.", "messages")

    @validates_schema
    def _tool_choice_matches(self, data: dict, **kwargs) -> None:
        """``tool_choice`` must fit ``tools``; the legacy ``functions`` API is refused loudly."""
        for legacy in ("functions", "function_call"):
            if data.get(legacy) is not None:
                raise ValidationError(
                    f"The legacy '{legacy}' parameter is not supported; send 'tools' "
                    "and 'tool_choice' instead.",
                    legacy,
                )
        names = {t.name for t in data.get("tools") or ()}
        try:
            check_tool_choice(data.get("tool_choice"), names)
        except ToolDefinitionError as exc:
            raise ValidationError(nest_error(exc.path, str(exc)), "tool_choice") from None
