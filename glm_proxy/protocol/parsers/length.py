"""Length limits: cut the answer at the client's token budget.

``max_tokens`` / ``max_completion_tokens`` (OpenAI), ``max_tokens``
(Anthropic) and ``max_output_tokens`` (Responses) bound the answer, and the
client learns it was cut from ``finish_reason: "length"`` (``stop_reason:
"max_tokens"``, ``status: "incomplete"``). The upstream takes no budget, so
the answer is cut here, counted by the same estimator as the ``usage``
figures (``glm_proxy.protocol.usage``), so ``completion_tokens`` never exceeds the
budget: an estimate, not the model's tokenizer.

Whether reasoning spends the budget depends on the field (``count_reasoning``):
OpenAI documents ``max_completion_tokens`` and ``max_output_tokens`` as
"including visible output tokens and reasoning tokens", and Anthropic counts
thinking against ``max_tokens``; the legacy OpenAI ``max_tokens`` bounds the
visible completion only. The text and reasoning totals are estimated apart and
added, exactly as ``usage_dict`` does.

When the budget runs out mid-delta the delta is cut at the last character that
still fits, then ``Finished(reason="length")`` follows and everything after it
(the upstream's own ``Finished`` included) is dropped. The answer job sees the
``Finished`` and may stop reading the upstream.
"""

from __future__ import annotations

from glm_proxy.protocol.events import Delta, Finished, ReasoningDelta, TextDelta
from glm_proxy.protocol.parsers import Reask
from glm_proxy.protocol.usage import TokenCounter

__all__ = ["LengthFilter", "TokenCounter"]


class LengthFilter:
    """Cuts the answer once the estimated tokens reach ``limit`` (see the module docstring)."""

    def __init__(self, limit: int, *, count_reasoning: bool = False) -> None:
        self.limit = limit
        self.count_reasoning = count_reasoning
        self.text = TokenCounter()
        self.reasoning = TokenCounter()
        self.done = False

    def feed(self, delta: Delta) -> list[Delta]:
        if self.done:
            return []
        if isinstance(delta, Finished):
            self.done = True
            return [delta]
        if isinstance(delta, TextDelta):
            return self._spend(delta.text, self.text, self.reasoning, TextDelta)
        if isinstance(delta, ReasoningDelta) and self.count_reasoning:
            return self._spend(delta.text, self.reasoning, self.text, ReasoningDelta)
        return [delta]

    def finish(self) -> list[Delta | Reask]:
        return []

    def _spend(self, text: str, own: TokenCounter, other: TokenCounter, kind: type) -> list[Delta]:
        # Reasoning reaches here only when it counts; then text and reasoning share the budget.
        spent_elsewhere = other.tokens if self.count_reasoning else 0
        fits = own.fit(text, max(0, self.limit - spent_elsewhere))
        if fits == len(text):
            return [kind(text)] if text else []
        self.done = True
        head = [kind(text[:fits])] if fits else []
        return [*head, Finished("length")]
