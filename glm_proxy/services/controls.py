"""The client's answer controls: stop strings, length limits, ``n``, structured outputs, logprobs.

The upstream has none of these knobs, so the proxy honours them itself:
``plan_controls`` reads them from a validated chat-completions body (the
Anthropic and Responses front doors map theirs onto the same fields) and
refuses loudly what cannot be honoured; ``build_filters`` turns them into the
answer filters (``glm_proxy.protocol.parsers``) the answer job runs on each try; and
``with_instruction`` adds the structured-output instruction to the prompt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from glm_proxy.errors import InvalidRequest
from glm_proxy.inputs.prompt import Prompt
from glm_proxy.protocol.formats.openai import ReasoningStyle
from glm_proxy.protocol.parsers import DeltaFilter, FilterChain, FilterFactory
from glm_proxy.protocol.parsers.length import LengthFilter
from glm_proxy.protocol.parsers.stop import StopFilter
from glm_proxy.protocol.parsers.structured import JsonSpec, StructuredFilter, instruction

__all__ = [
    "Controls",
    "build_filters",
    "chain_factories",
    "plan_controls",
    "reasoning_style",
    "with_instruction",
]

ASSISTANT_MARKER = "<|assistant|>\n"


@dataclass(frozen=True)
class Controls:
    """What the client asked of the answer beyond the messages."""

    stop: tuple[str, ...] = ()
    max_tokens: int | None = None
    count_reasoning: bool = False  # the limit's field counts reasoning tokens too
    json: JsonSpec | None = None
    n: int = 1

    @property
    def filtered(self) -> bool:
        return bool(self.stop or self.max_tokens or self.json)


def _json_spec(response_format: dict[str, Any] | None) -> JsonSpec | None:
    if not response_format or response_format.get("type") == "text":
        return None
    if response_format["type"] == "json_object":
        return JsonSpec(None, "json_object")
    spec = response_format["json_schema"]
    return JsonSpec.checked(
        spec.get("schema") or {},
        name=spec.get("name") or "response",
        strict=bool(spec.get("strict")),
        param="response_format.json_schema.schema",
    )


def plan_controls(body: dict[str, Any], settings: Any) -> Controls:
    """The controls in a validated chat body; a 400 for what the proxy cannot honour.

    Raises:
        InvalidRequest: ``logprobs`` asked for (unless ``LENIENT_LOGPROBS``), ``n``
            above ``MAX_CHOICES``, or an invalid JSON schema.
    """
    if (body.get("logprobs") or body.get("top_logprobs")) and not settings.lenient_logprobs:
        raise InvalidRequest(
            "logprobs are not available: the upstream web model does not expose token "
            "probabilities. Leave `logprobs` unset (or false).",
            param="logprobs",
            code="unsupported_parameter",
        )
    n = body.get("n") or 1
    if n > settings.max_choices:
        raise InvalidRequest(
            f"Invalid value for 'n': at most {settings.max_choices} choices per request "
            f"on this server (MAX_CHOICES); got {n}.",
            param="n",
        )
    if n > 1 and (body.get("conversation_id") or body.get("keep_conversation")):
        raise InvalidRequest(
            "n > 1 cannot be combined with conversation_id or keep_conversation: each "
            "choice is its own upstream conversation.",
            param="n",
        )
    stop = body.get("stop")
    stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
    limit, count_reasoning = body.get("max_tokens"), False
    if body.get("max_completion_tokens"):
        limit, count_reasoning = body["max_completion_tokens"], True
    return Controls(
        stop=tuple(s for s in stops if s),
        max_tokens=limit or None,
        count_reasoning=count_reasoning,
        json=_json_spec(body.get("response_format")),
        n=n,
    )


def reasoning_style(configured: str, controls: Controls) -> ReasoningStyle:
    """How reasoning is shown for this answer: never inside a structured answer's content.

    ``think_tags`` puts reasoning into the message content, which would break
    the JSON a structured-output client parses; such answers carry it in
    ``reasoning_content`` instead.
    """
    if controls.json is not None and configured == "think_tags":
        return "reasoning_content"
    return cast("ReasoningStyle", configured)  # REASONING_OUTPUT only takes the three values


def build_filters(controls: Controls) -> FilterFactory | None:
    """The filter factory for one answer: structured JSON -> stop strings -> length.

    None when the client asked for nothing the filters do.
    """
    if not controls.filtered:
        return None

    def factory(final: bool) -> DeltaFilter:
        filters: list[DeltaFilter] = []
        if controls.json is not None:
            filters.append(StructuredFilter(controls.json, final=final))
        if controls.stop:
            filters.append(StopFilter(controls.stop))
        if controls.max_tokens:
            filters.append(
                LengthFilter(controls.max_tokens, count_reasoning=controls.count_reasoning)
            )
        return FilterChain(filters)

    return factory


def chain_factories(*factories: FilterFactory | None) -> FilterFactory | None:
    """Several filter factories as one (applied in the order given); None when there are none."""
    present = [f for f in factories if f is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    build: Callable[[bool], DeltaFilter] = lambda final: FilterChain(  # noqa: E731
        [f(final) for f in present]
    )
    return build


TOOL_TURNS = (
    "You may still call a tool with the tool-call block described above. Only your "
    "final answer, when you call no tool, must follow this rule: "
)


def with_instruction(prompt: Prompt, controls: Controls, *, tools: bool = False) -> Prompt:
    """The prompt with the structured-output instruction, placed where the model reads it last.

    A flattened multi-turn prompt ends with the assistant marker: the
    instruction goes in a system turn just before it; a single message gets it
    appended after a blank line. With ``tools`` offered, the instruction says
    it binds the final answer only: a turn may still be a tool call.
    """
    if controls.json is None:
        return prompt
    text = instruction(controls.json)
    if tools:
        text = TOOL_TURNS + text
    if prompt.text.endswith(ASSISTANT_MARKER):
        head = prompt.text[: -len(ASSISTANT_MARKER)]
        return Prompt(f"{head}<|system|>\n{text}\n{ASSISTANT_MARKER}", prompt.attachments)
    return Prompt(f"{prompt.text}\n\n{text}", prompt.attachments)
