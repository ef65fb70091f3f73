"""The Anthropic Messages request (``POST /v1/messages`` and ``count_tokens``): schema.

Validation only; turning the request into the chat request ``plan_chat`` takes
is ``glm_proxy.inputs.anthropic``.
"""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from glm_proxy.api.schemas.base import Lenient, nest_error
from glm_proxy.api.schemas.chat import ContentField, StopField
from glm_proxy.observability.additions import note_ignored
from glm_proxy.tools.definitions import ToolDefinitionError, anthropic_specs, offered


class AnthropicMessageSchema(Lenient):
    # ``system`` inside ``messages``: Claude Code sends its agent and skill lists that way
    # (beta ``mid-conversation-system``); kept in the prompt at its place, as system text.
    role = fields.Str(required=True, validate=validate.OneOf(("user", "assistant", "system")))
    content = ContentField(required=True)


class SystemField(fields.Field):
    def _deserialize(self, value: Any, attr, data, **kwargs) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, list) and all(
            isinstance(b, dict) and b.get("type") == "text" for b in value
        ):
            return value
        raise ValidationError("Must be a string or an array of text blocks.")


THINKING_TYPES = ("enabled", "adaptive", "between_tools", "disabled")
EFFORTS = ("low", "medium", "high", "xhigh", "max")


class ThinkingSchema(Lenient):
    """Every ``thinking`` config the current SDKs send (``ThinkingConfigParam``)."""

    type = fields.Str(required=True, validate=validate.OneOf(THINKING_TYPES))
    budget_tokens = fields.Int(allow_none=True, validate=validate.Range(min=0))
    display = fields.Str(allow_none=True, validate=validate.OneOf(("summarized", "omitted")))


class OutputFormatSchema(Lenient):
    type = fields.Str(required=True, validate=validate.OneOf(("json_schema",)))
    schema = fields.Dict(required=True)


class OutputConfigSchema(Lenient):
    effort = fields.Str(allow_none=True, validate=validate.OneOf(EFFORTS))
    format = fields.Nested(OutputFormatSchema, allow_none=True)


class AnthropicToolsField(fields.Field):
    """Client tools (``name``, ``description``, ``input_schema``), loaded as ``ToolSpec``s.

    Server tools (``web_search_20250305``, ``bash_20250124`` ...) and any other
    type the server does not emulate are left out of the offer and counted
    (docs/clients.md): the model calling fewer tools is still a valid answer.
    """

    def _deserialize(self, value: Any, attr, data, **kwargs) -> Any:
        kept, kept_at, left_out = offered(value, (None, "custom"))
        for index, kind in left_out:
            note_ignored("tool_type", kind, f"tools[{index}]")
        try:
            return anthropic_specs(kept)  # the specs: validated here, once
        except ToolDefinitionError as exc:
            path = exc.path
            if path and isinstance(path[0], int) and path[0] < len(kept_at):
                path = (kept_at[path[0]], *path[1:])  # the index the client sent
            raise ValidationError(nest_error(path, str(exc))) from None


class ToolChoiceSchema(Lenient):
    type = fields.Str(required=True, validate=validate.OneOf(("auto", "any", "tool", "none")))
    name = fields.Str(allow_none=True)
    disable_parallel_tool_use = fields.Bool(allow_none=True)


class AnthropicMessagesSchema(Lenient):
    model = fields.Str(required=True, validate=validate.Length(min=1, max=256))
    max_tokens = fields.Int(required=True, validate=validate.Range(min=1))
    messages = fields.List(
        fields.Nested(AnthropicMessageSchema), required=True, validate=validate.Length(min=1)
    )
    system = SystemField(allow_none=True)
    stream = fields.Bool(load_default=False, allow_none=True)
    # Accepted for compatibility; the web upstream has no such knobs.
    temperature = fields.Float(allow_none=True, validate=validate.Range(0, 1))
    top_p = fields.Float(allow_none=True, validate=validate.Range(0, 1))
    top_k = fields.Int(allow_none=True, validate=validate.Range(min=0))
    stop_sequences = StopField(allow_none=True, most=64)
    metadata = fields.Dict(allow_none=True)
    tools = AnthropicToolsField(allow_none=True)
    tool_choice = fields.Nested(ToolChoiceSchema, allow_none=True)
    thinking = fields.Nested(ThinkingSchema, allow_none=True)
    output_config = fields.Nested(OutputConfigSchema, allow_none=True)
    service_tier = fields.Str(allow_none=True)
    # Extensions shared with /v1/chat/completions. A message id (``msg_<conversation id>``)
    # is accepted as the conversation id, since that is the id this endpoint hands out.
    conversation_id = fields.Str(
        allow_none=True, validate=validate.Regexp(r"^(?:msg_)?[A-Za-z0-9]{6,64}$")
    )
    keep_conversation = fields.Bool(load_default=False, allow_none=True)

    @validates_schema
    def _tool_choice_matches(self, data: dict, **kwargs) -> None:
        choice = data.get("tool_choice") or {}
        names = {t.name for t in data.get("tools") or ()}
        if choice.get("type") == "tool":
            if not choice.get("name"):
                raise ValidationError(
                    nest_error(("name",), "Missing required field."), "tool_choice"
                )
            if choice["name"] not in names:
                raise ValidationError(
                    nest_error(("name",), f"Names {choice['name']!r}, which is not among 'tools'."),
                    "tool_choice",
                )
        if choice.get("type") == "any" and not names:
            raise ValidationError("'any' needs at least one tool in 'tools'.", "tool_choice")


class CountTokensSchema(AnthropicMessagesSchema):
    """``/v1/messages/count_tokens``: the Messages request without ``max_tokens``."""

    max_tokens = fields.Int(allow_none=True, validate=validate.Range(min=1))
