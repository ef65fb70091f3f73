"""The answer-filter hook of ``AnswerJob``, against the upstream simulator.

A toy filter holds the whole answer back; on its first try it asks for a
re-ask, on the final try it releases what it held. The job must prompt again
in the same upstream conversation on the same account, hand the client only
the second answer, and delete that conversation afterwards. Runs the real
services in-process (no HTTP server), talking HTTP to the simulator.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import gevent
import pytest

from glm_proxy.accounts import Account
from glm_proxy.errors import UpstreamError
from glm_proxy.inputs.prompt import Prompt
from glm_proxy.protocol.events import Delta, Finished, TextDelta
from glm_proxy.protocol.parsers import Reask
from glm_proxy.services.answer import AnswerJob, AnswerRequest
from glm_proxy.services.chat import build_upstream_payload, plan_chat

REASK_TEXT = "Please answer again, shorter."


class HoldThenReask:
    """Holds every delta; ``finish()`` re-asks on the first try, releases on the final one."""

    tries: list[bool] = []

    def __init__(self, final: bool) -> None:
        self.final = final
        self.held: list[Delta] = []
        HoldThenReask.tries.append(final)

    def feed(self, delta: Delta) -> list[Delta]:
        self.held.append(delta)
        return []

    def finish(self) -> list[Delta | Reask]:
        if not self.final:
            return [Reask(REASK_TEXT, reason="toy")]
        return self.held


class PassThenReask:
    """Lets text through, then asks for a re-ask: too late, the client has seen it."""

    def __init__(self, final: bool) -> None:
        self.final = final

    def feed(self, delta: Delta) -> list[Delta]:
        return [delta]

    def finish(self) -> list[Delta | Reask]:
        return [] if self.final else [Reask("again")]


@pytest.fixture
def svc(simulator):
    from glm_proxy import create_app

    app = create_app(
        {
            "GLM_BASE_URL": simulator.glm_base_url,
            "REDIS_URL": "",
            "GLM_RETRY_BACKOFF": "0.05",
            "TESTING": True,
        }
    )
    return app.extensions["glm_services"]


def chat_request(svc, filter_factory, *, buffered: bool) -> AnswerRequest:
    plan = plan_chat(
        {"model": "glm-4", "messages": [{"role": "user", "content": "hi"}]},
        svc.settings,
        svc.models,
    )

    def followup(account: Account, conversation_id: str, text: str) -> dict[str, Any]:
        again = dataclasses.replace(plan, prompt=Prompt(text), conversation_id=conversation_id)
        return build_upstream_payload(again)

    return AnswerRequest(
        assistant_id=plan.assistant_id,
        build_payload=lambda account: build_upstream_payload(plan),
        translate_options=plan.translate_options,
        buffered=buffered,
        make_filter=filter_factory,
        build_followup=followup,
    )


def run(svc, token: str, request: AnswerRequest) -> tuple[AnswerJob, list[Delta]]:
    job = AnswerJob(svc, (Account.from_token(token),), request).start()
    try:
        return job, list(job.deltas())
    finally:
        job.cancel()


def wait_deleted(simulator, token: str) -> dict:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        account = simulator.account(token)
        if account and not account.get("conversations_alive"):
            return account
        gevent.sleep(0.1)  # the janitor's greenlet does the deleting
    return simulator.account(token)


@pytest.mark.parametrize("buffered", [True, False])
def test_reask_prompts_again_in_the_same_conversation(svc, simulator, token, buffered) -> None:
    HoldThenReask.tries = []
    job, deltas = run(svc, token, chat_request(svc, HoldThenReask, buffered=buffered))
    text = "".join(d.text for d in deltas if isinstance(d, TextDelta))
    assert "turn 2" in text and "turn 1" not in text  # only the second answer
    assert isinstance(deltas[-1], Finished)
    assert HoldThenReask.tries == [False, True]
    streams = [
        r["stream"]
        for r in simulator.requests_log("/assistant/stream")
        if r.get("account") == token and r.get("stream")
    ]
    assert len(streams) == 2
    assert streams[0]["conversation_id"] == ""
    assert streams[1]["conversation_id"] == job.conversation_id != ""
    assert REASK_TEXT in str(streams[1]["content"])
    account = wait_deleted(simulator, token)
    assert not account.get("conversations_alive")


def test_reask_after_output_reached_the_client_is_an_error(svc, simulator, token) -> None:
    with pytest.raises(UpstreamError, match="already partly sent"):
        run(svc, token, chat_request(svc, PassThenReask, buffered=False))
    assert not wait_deleted(simulator, token).get("conversations_alive")


def test_without_followup_the_filter_is_final(svc, simulator, token) -> None:
    HoldThenReask.tries = []
    request = dataclasses.replace(
        chat_request(svc, HoldThenReask, buffered=True), build_followup=None
    )
    _, deltas = run(svc, token, request)
    assert HoldThenReask.tries == [True]
    assert "turn 1" in "".join(d.text for d in deltas if isinstance(d, TextDelta))
