"""One Responses turn: previous response -> chat plan -> answer job -> stored response.

``prepare`` resolves ``previous_response_id`` (a 404 when unknown, expired or
someone else's), decides whether the turn continues the upstream
conversation the previous answer lives in (it does while the conversation is
still kept: same account, only the new input is sent) or replays the stored
history, and plans the chat answer. ``start`` runs it on the chat machinery;
``from_history`` re-plans a turn whose kept conversation turned out to be
gone upstream. ``save`` stores the finished response (``store: true``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from glm_proxy.access.auth import Caller
from glm_proxy.errors import GLMProxyError, InvalidRequest
from glm_proxy.ids import uuid4_hex
from glm_proxy.inputs.responses import (
    ResponsesRequest,
    input_item,
    output_items,
    to_chat_body,
)
from glm_proxy.protocol.formats.responses import ResponseBuilder
from glm_proxy.services.answer import AnswerJob
from glm_proxy.services.chat import ChatPlan, plan_chat, start_chat
from glm_proxy.store.responses import (
    ResponseStore,
    StoredResponse,
    owner_label,
    owner_of,
)

__all__ = ["Turn", "new_response_id", "prepare"]


def new_response_id() -> str:
    return "resp_" + uuid4_hex()


def _item_id(prefix: str) -> str:
    return prefix + uuid4_hex()


def skeleton(body: dict[str, Any], response_id: str, created_at: int) -> dict[str, Any]:
    """The ``response`` object's fields that echo the request (OpenAI's defaults otherwise)."""
    reasoning = body.get("reasoning") or {}
    text = body.get("text") or {}
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "model": body["model"],
        "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {
            "effort": reasoning.get("effort"),
            "summary": reasoning.get("summary") or reasoning.get("generate_summary"),
        },
        "service_tier": "default",
        "store": bool(body.get("store", True)),
        "temperature": body.get("temperature") if body.get("temperature") is not None else 1.0,
        "text": {
            "format": text.get("format") or {"type": "text"},
            "verbosity": text.get("verbosity") or "medium",
        },
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p") if body.get("top_p") is not None else 1.0,
        "truncation": body.get("truncation") or "disabled",
        "usage": None,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


@dataclass
class Turn:
    body: dict[str, Any]
    response_id: str
    created_at: int
    request: ResponsesRequest
    plan: ChatPlan
    owner: dict[str, Any]
    previous: StoredResponse | None = None

    @property
    def native(self) -> bool:
        """The turn continues a kept upstream conversation (only the new input is sent)."""
        return self.plan.conversation_id is not None

    @property
    def store(self) -> bool:
        return bool(self.body.get("store", True))

    def builder(self, settings, new_id: Callable[[str], str] = _item_id) -> ResponseBuilder:
        include = self.plan.translate_options.include_reasoning
        return ResponseBuilder(
            skeleton(self.body, self.response_id, self.created_at),
            prompt_text=self.plan.prompt.text,
            custom_tools=self.request.custom_tools,
            namespaced=self.request.namespaced,
            new_id=new_id,
            include_reasoning=include and settings.reasoning_output != "hidden",
        )


def _plan(svc, body: dict[str, Any], previous: StoredResponse | None, conversation_id):
    request = to_chat_body(
        body, history=previous.items if previous else None, conversation_id=conversation_id
    )
    return request, plan_chat(request.chat_body, svc.settings, svc.models)


def prepare(svc, caller: Caller, body: dict[str, Any], clock=time.time) -> Turn:
    """Plan one turn; raises the 404 for an unknown ``previous_response_id``."""
    responses = ResponseStore(svc.store, svc.settings)
    previous = None
    conversation_id = None
    if body.get("previous_response_id"):
        previous = responses.load(
            body["previous_response_id"], caller, param="previous_response_id"
        )
        if previous.depth >= svc.settings.responses_max_chain:
            raise InvalidRequest(
                f"This conversation already holds {previous.depth} stored turns, the most one "
                f"chain of previous_response_id may hold (RESPONSES_MAX_CHAIN="
                f"{svc.settings.responses_max_chain}). Start a new one with the history as input.",
                param="previous_response_id",
                code="conversation_too_long",
            )
        previous = responses.with_history(previous, caller, param="previous_response_id")
        kept = previous.conversation_id
        if kept and svc.pool.conversations.owner(kept) == previous.account:
            conversation_id = kept
    if body.get("store", True):
        incoming = len(orjson.dumps(body.get("input"))) + len(str(body.get("instructions") or ""))
        responses.quota.admit(owner_label(owner_of(caller)), incoming)
    request, plan = _plan(svc, body, previous, conversation_id)
    return Turn(
        body=body,
        response_id=new_response_id(),
        created_at=int(clock()),
        request=request,
        plan=plan,
        owner=owner_of(caller),
        previous=previous,
    )


def from_history(svc, turn: Turn) -> Turn:
    """The same turn answered from the stored history (its kept conversation is gone)."""
    request, plan = _plan(svc, turn.body, turn.previous, None)
    return replace(turn, request=request, plan=plan)


def conversation_gone(error: GLMProxyError, turn: Turn) -> bool:
    """The upstream no longer has the conversation this turn meant to continue."""
    return turn.native and error.code == "conversation_not_found"


def start(svc, caller: Caller, turn: Turn) -> AnswerJob:
    return start_chat(svc, caller, turn.plan)


def save(svc, turn: Turn, builder: ResponseBuilder, job: AnswerJob | None) -> None:
    """Store the finished response and the conversation's items so far (``store: true``)."""
    if not turn.store:
        return
    request = turn.request
    inputs = [input_item(item, turn.response_id, n) for n, item in enumerate(request.items)]
    previous = turn.previous
    # By reference: this turn's items only, after its parent's (rebuilt on read).
    items = [*inputs, *output_items(builder.output())]
    history = [] if previous is not None else list(request.history)
    items = [*history, *items]
    account = job.account.fingerprint if job is not None and job.account is not None else None
    conversation_id = (job.conversation_id if job is not None else None) or builder.conversation_id
    record = StoredResponse(
        response=builder.response(),
        items=items,
        owner=turn.owner,
        conversation_id=conversation_id or turn.plan.conversation_id,
        account=account,
        assistant_id=turn.plan.assistant_id,
        turn=(len(history), len(history) + len(inputs)),
        parent=previous.response["id"] if previous is not None else None,
        depth=previous.depth + 1 if previous is not None else 1,
    )
    ancestors = [previous.response["id"], *previous.chain] if previous is not None else []
    ResponseStore(svc.store, svc.settings).save(record, ancestors)


def delete(svc, caller: Caller, response_id: str) -> dict[str, Any]:
    """Forget a stored response and delete the upstream conversation it kept."""
    responses = ResponseStore(svc.store, svc.settings)
    record = responses.load(response_id, caller)
    responses.delete(response_id)
    conversation_id = record.conversation_id
    book = svc.pool.conversations
    if conversation_id and record.account and book.owner(conversation_id) == record.account:
        account = next((a for a in caller.accounts if a.fingerprint == record.account), None)
        if account is None:
            account = svc.pool.account_by_fingerprint(record.account)
        if account is not None:
            book.forget(conversation_id)
            svc.janitor.delete_kept(
                account,
                record.assistant_id or svc.settings.glm_assistant_id,
                conversation_id,
                pooled=svc.pool.is_pooled(account.fingerprint),
            )
    return {"id": response_id, "object": "response.deleted", "deleted": True}
