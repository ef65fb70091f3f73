"""The chat view's answer for ``n`` > 1: ``n`` answer jobs and their wire, through the pump."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from flask import Response

from glm_proxy.errors import GLMProxyError
from glm_proxy.ids import uuid4_hex
from glm_proxy.protocol.formats.openai import ChatWire
from glm_proxy.services.answer import AnswerJob
from glm_proxy.services.controls import reasoning_style
from glm_proxy.streaming.choice_jobs import ChoiceJobs
from glm_proxy.streaming.choices_wire import ChoicesWire
from glm_proxy.streaming.pump import respond

if TYPE_CHECKING:
    from glm_proxy.access.auth import Caller
    from glm_proxy.observability.record import RequestRecord
    from glm_proxy.services import Services
    from glm_proxy.services.chat import ChatPlan

__all__ = ["respond_choices"]


def respond_choices(
    services: Services,
    caller: Caller,
    plan: ChatPlan,
    *,
    start_job: Callable[[], AnswerJob],
    record: RequestRecord,
    error_response: Callable[[GLMProxyError], Response],
) -> Response:
    """The response for a chat request with ``n`` > 1 (see the module docstring)."""
    n = plan.controls.n
    jobs = ChoiceJobs(
        start_job,
        n,
        parallel=len(caller.accounts),
        queue_items=services.settings.stream_queue_items,
    ).start()
    response_id = "chatcmpl-" + uuid4_hex()
    created = int(time.time())

    def make_wire(index: int) -> ChatWire:
        return ChatWire(
            model=plan.model,
            created=created,
            prompt_text=plan.prompt.text,
            response_id=lambda: response_id,
            reasoning_style=reasoning_style(services.settings.reasoning_output, plan.controls),
            include_usage=False,
            index=index,
        )

    wire = ChoicesWire(make_wire, n, include_usage=plan.include_usage)
    return respond(
        jobs,
        wire,  # type: ignore[arg-type]  # its feed takes Choice items, not deltas
        stream=plan.stream,
        settings=services.settings,
        record=record,
        error_response=error_response,
    )
