"""Controls settings: what a client may ask of an answer.

Choices, log probabilities, emulated tools, stored responses.
"""

from __future__ import annotations

from dataclasses import dataclass

from glm_proxy.config.parsing import parse_bool, parse_tool_prompt_file, setting


@dataclass(frozen=True)
class ControlSettings:
    """Client controls: stop, length, n, structured outputs, logprobs."""

    max_choices: int = setting(
        "MAX_CHOICES", 4, int, "Largest `n` for chat completions (each choice is one answer)."
    )
    lenient_logprobs: bool = setting(
        "LENIENT_LOGPROBS",
        False,
        parse_bool,
        "Accept `logprobs: true` and return no log probabilities (default: a 400).",
    )


@dataclass(frozen=True)
class ToolSettings:
    """Emulated tool calling (docs/tools.md)."""

    tool_prompt_file: str = setting(
        "TOOL_PROMPT_FILE",
        "",
        parse_tool_prompt_file,
        "File with the tool-section template sent when a request has tools (empty = built-in).",
    )


@dataclass(frozen=True)
class ResponsesSettings:
    """The Responses API (``/v1/responses``)."""

    responses_ttl: int = setting(
        "RESPONSES_TTL",
        86400,
        int,
        "Seconds a stored response (`store: true`) can be retrieved or continued with "
        "`previous_response_id`.",
    )
