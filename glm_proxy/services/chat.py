"""Chat completions: from a validated request to an ``AnswerJob``.

``plan_chat`` is pure (request + settings + model table -> ``ChatPlan``) and
``build_upstream_payload`` is pure (plan + uploaded attachments -> the
upstream JSON body), so both are unit-testable; ``start_chat`` adds I/O.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from glm_proxy.access.auth import Caller, check_model
from glm_proxy.accounts import Account
from glm_proxy.errors import InvalidRequest, NotFound
from glm_proxy.ids import uuid4_hex
from glm_proxy.inputs.prompt import Prompt, build_prompt
from glm_proxy.pool.conversations import owner_id
from glm_proxy.protocol.model_table import ModelSpec, resolve_reasoning
from glm_proxy.protocol.parsers import DeltaFilter, FilterChain
from glm_proxy.protocol.profiles import mode_table
from glm_proxy.protocol.translate import TranslateOptions
from glm_proxy.services.answer import AnswerJob, AnswerRequest
from glm_proxy.services.controls import (
    Controls,
    build_filters,
    chain_factories,
    plan_controls,
    with_instruction,
)
from glm_proxy.tools.definitions import ToolConfig, tool_config
from glm_proxy.tools.filter import ToolCallFilter
from glm_proxy.tools.prompt import load_template
from glm_proxy.tools.schema import Toolbox

if TYPE_CHECKING:
    from glm_proxy.services import Services

log = logging.getLogger(__name__)


@dataclass
class ChatPlan:
    model: str
    spec: ModelSpec
    assistant_id: str
    chat_mode: str | None  # the wire value ("" is sent on 2026; None/"" omitted on 2025)
    networking: bool
    prompt: Prompt
    conversation_id: str | None = None
    keep_conversation: bool = False
    translate_options: TranslateOptions = field(default_factory=TranslateOptions)
    include_usage: bool = False
    stream: bool = False
    controls: Controls = field(default_factory=Controls)
    mode: str = "fast"  # fast | thinking | deep | research (see glm_proxy.protocol.model_table)
    selected_model: str = ""
    reasoning_effort: str = ""  # the wire value of meta_data.reasoning_effort
    send_selected_model: bool = True  # 2026 body fields (GLM_SEND_SELECTED_MODEL)
    if_plus_model: bool = False
    attachment_items: str = "2026"
    tools: ToolConfig | None = None  # the client's tools (None: no tool section, no parsing)


def plan_chat(body: dict[str, Any], settings, models) -> ChatPlan:
    """Everything the request means, decided before any I/O.

    Raises:
        InvalidRequest: an unknown model while ``STRICT_MODELS`` is on.
    """
    spec: ModelSpec = models.resolve(body["model"])
    if not spec.known:
        if settings.strict_models:
            raise InvalidRequest(
                f"The model {body['model']!r} is not known to this service (STRICT_MODELS is "
                "on); GET /v1/models lists the models.",
                param="model",
                code="model_not_found",
            )
        log.info("unknown model %r: answering with %s", body["model"], settings.glm_default_model)
    mode = resolve_reasoning(spec.mode, body.get("reasoning_effort"), settings.glm_effort_map)
    chat_mode, effort = mode_table(settings.glm_mode_map).get(mode, ("", ""))
    networking = spec.networking and settings.glm_networking
    if body.get("web_search") is not None:
        networking = bool(body["web_search"]) and settings.glm_networking
    conversation_id = body.get("conversation_id") or None
    controls = plan_controls(body, settings)
    tools = tool_config(body)
    prompt = build_prompt(
        body["messages"],
        native_multi_turn=conversation_id is not None,
        tools=tools,
        tool_prompt=load_template(settings.tool_prompt_file),
    )
    prompt = with_instruction(prompt, controls, tools=tools is not None)
    options = TranslateOptions(
        include_reasoning=not spec.silent,
        include_sources=not spec.silent,
        include_uncited=settings.list_uncited_sources,
    )
    stream_options = body.get("stream_options") or {}
    return ChatPlan(
        model=body["model"],
        spec=spec,
        assistant_id=spec.assistant_id or settings.glm_assistant_id,
        chat_mode=chat_mode,
        networking=networking,
        prompt=prompt,
        conversation_id=conversation_id,
        keep_conversation=bool(body.get("keep_conversation")),
        translate_options=options,
        include_usage=bool(stream_options.get("include_usage")),
        stream=bool(body.get("stream")),
        controls=controls,
        mode=mode,
        selected_model=spec.selected_model or settings.glm_default_model,
        reasoning_effort=effort,
        send_selected_model=settings.glm_send_selected_model,
        if_plus_model=settings.glm_if_plus_model,
        attachment_items=settings.glm_attachment_items,
        tools=tools,
    )


IMAGE_FIELDS = ("file_name", "file_id", "image_url", "file_size", "order", "width", "height")
FILE_FIELDS = ("file_name", "file_id", "file_url", "file_size", "order")


def attachment_item(kind: str, record: dict[str, Any], order: int, shape: str) -> dict[str, Any]:
    """One uploaded file as the stream request references it.

    ``2025``: the whole upload record (plus ``image_url`` for images). ``2026``:
    the slim shape the web app sends (§15.3); fields the upload did not return
    are filled from the ones it did (``image_url`` = ``file_url``, ``file_name``
    = ``filename``).
    """
    if shape == "2025":
        return record
    filled = {
        "file_name": record.get("file_name") or record.get("filename") or "",
        "file_id": record.get("file_id") or record.get("source_id") or "",
        "file_url": record.get("file_url") or record.get("image_url") or "",
        "image_url": record.get("image_url") or record.get("file_url") or "",
        "file_size": record.get("file_size") or record.get("size") or 0,
        "order": order,
        "width": record.get("width") or 0,
        "height": record.get("height") or 0,
    }
    return {k: filled[k] for k in (IMAGE_FIELDS if kind == "image" else FILE_FIELDS)}


def build_upstream_payload(
    plan: ChatPlan, *, files: list[dict] | None = None, images: list[dict] | None = None
) -> dict[str, Any]:
    """The upstream stream request body (protocol notes §6.1; 2026: §15.3)."""
    content: list[dict[str, Any]] = [{"type": "text", "text": plan.prompt.text}]
    shape = plan.attachment_items
    if files:
        content.append(
            {
                "type": "file",
                "file": [attachment_item("file", r, i, shape) for i, r in enumerate(files)],
            }
        )
    if images:
        content.append(
            {
                "type": "image",
                "image": [attachment_item("image", r, i, shape) for i, r in enumerate(images)],
            }
        )
    meta: dict[str, Any] = {
        "channel": "",
        "draft_id": "",
        "input_question_type": "xxxx",
        "is_networking": plan.networking,
        "is_test": False,
        "platform": "pc",
        "quote_log_id": "",
        "cogview": {"rm_label_watermark": False},
    }
    if plan.if_plus_model:
        meta["if_plus_model"] = True
    if plan.send_selected_model:
        meta["selected_model"] = plan.selected_model
        meta["chat_mode"] = plan.chat_mode or ""
        if plan.reasoning_effort:
            meta["reasoning_effort"] = plan.reasoning_effort
    elif plan.chat_mode:
        meta["chat_mode"] = plan.chat_mode
    return {
        "assistant_id": plan.assistant_id,
        "conversation_id": plan.conversation_id or "",
        "project_id": "",
        "chat_type": "user_chat",
        "messages": [{"role": "user", "content": content}],
        "meta_data": meta,
    }


def _may_continue(record: dict, caller: Caller) -> bool:
    """Whether ``caller`` is the one that kept the conversation ``record`` describes.

    A team key by its name; a pass-through caller by holding the owning
    account's refresh token. A record written before owners were recorded
    falls back to the account rule alone.
    """
    owner = record.get("caller") or ""
    if owner.startswith("key:"):
        return caller.key_name == owner[4:]
    holds = any(a.fingerprint == record.get("account") for a in caller.accounts)
    if owner.startswith("pt:"):
        return not caller.key_name and holds
    return holds or caller.pooled


def conversation_owner(services: Services, caller: Caller, conversation_id: str) -> Account | None:
    """The account that owns a kept conversation the caller may continue.

    A kept conversation belongs to the caller that kept it: anyone else gets
    the same 404 as for an unknown id, so ids reveal nothing. Unknown ids with
    one pass-through candidate go to that account (the upstream decides); a
    team caller or several candidates get a 404, never a silent new
    conversation on another account.
    """
    book = services.pool.conversations
    record = book.record(conversation_id)
    if record and _may_continue(record, caller):
        owner = record.get("account")
        for account in caller.accounts:
            if account.fingerprint == owner:
                book.prolong(conversation_id)
                return account
        if caller.pooled and owner:
            found = services.pool.account_by_fingerprint(owner)
            if found is not None:
                return found
    elif not record and len(caller.accounts) == 1 and not caller.pooled:
        return caller.accounts[0]
    raise NotFound(
        f"conversation_id {conversation_id!r} is unknown to this service for these "
        "credentials (it may have been deleted; pass keep_conversation=true to keep one).",
        param="conversation_id",
        code="conversation_not_found",
    )


def start_chat(services: Services, caller: Caller, plan: ChatPlan) -> AnswerJob:
    check_model(caller, plan.model)
    pinned = None
    if plan.conversation_id:
        pinned = conversation_owner(services, caller, plan.conversation_id)
    attachments = services.attachments
    refs = plan.prompt.attachments if attachments is not None else []
    blobs: list = []

    def fetch_attachments() -> None:
        if attachments is not None:
            blobs.extend(attachments.fetch_all(refs))

    def close_attachments() -> None:
        for blob in blobs:
            blob.close()

    def build_payload(account: Account) -> dict[str, Any]:
        files, images = (
            attachments.upload_all(account, blobs) if blobs and attachments else ([], [])
        )
        return build_upstream_payload(plan, files=files, images=images)

    request = AnswerRequest(
        assistant_id=plan.assistant_id,
        build_payload=build_payload,
        translate_options=plan.translate_options,
        referer=services.upstream.referer(plan.assistant_id),
        continue_conversation=plan.conversation_id,
        keep_conversation=plan.keep_conversation,
        pinned_account=pinned,
        owner=owner_id(caller.key_name, caller.accounts),
        buffered=not plan.stream,
        before_lease=fetch_attachments if refs else None,
        on_end=close_attachments if refs else None,
        share=caller.share,
    )
    if plan.tools is not None:
        _wire_tools(request, plan)
    _wire_controls(request, plan)
    return AnswerJob(services, caller.accounts, request).start()


def _new_call_id() -> str:
    return "call_" + uuid4_hex()[:24]


def _wire_tools(request: AnswerRequest, plan: ChatPlan) -> None:
    """Parse the answer for tool calls; a correction goes to the same upstream conversation.

    The tool filter runs first, ahead of any other answer filter already set
    (stop strings and length limits then apply to the text around the calls).
    One ``Toolbox`` per request: the tool table and compiled validators are
    shared by the first try and the retry.
    """
    config = plan.tools
    assert config is not None
    toolbox = Toolbox(config.tools)
    others = request.make_filter

    def make_filter(final: bool) -> DeltaFilter:
        tools = ToolCallFilter(
            config, final=final, new_id=_new_call_id, streamed=plan.stream, toolbox=toolbox
        )
        return tools if others is None else FilterChain([tools, others(final)])

    def build_followup(account: Account, conversation_id: str, text: str) -> dict[str, Any]:
        followup = dataclasses.replace(plan, prompt=Prompt(text), conversation_id=conversation_id)
        return build_upstream_payload(followup)

    request.make_filter = make_filter
    if request.build_followup is None:
        request.build_followup = build_followup


def _wire_controls(request: AnswerRequest, plan: ChatPlan) -> None:
    """Stop strings, length limit and structured JSON (``services.controls``) as answer filters.

    They run after any filter already wired (the tool-call parser): parser ->
    stop -> length. A re-ask (JSON that did not validate) goes to the answer's
    own conversation with only the correction as the new message.
    """
    controls = build_filters(plan.controls)
    if controls is None:
        return
    request.make_filter = chain_factories(request.make_filter, controls)
    if request.build_followup is None:

        def build_followup(_account: Account, conversation_id: str, text: str) -> dict[str, Any]:
            followup = dataclasses.replace(
                plan, prompt=Prompt(text), conversation_id=conversation_id
            )
            return build_upstream_payload(followup)

        request.build_followup = build_followup
