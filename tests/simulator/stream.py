"""The assistant stream (spec §6) and conversation delete (spec §10).

Order of checks for a stream request: signature -> access token -> body -> queued fault ->
single-stream slot (status 10040) -> conversation (unknown id = empty body) -> SSE answer.
The slot is released just before the final event is written, so a client that starts its
next request the moment it reads `finish` never races the simulator's own bookkeeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, request

from . import care, e3, scripted
from .common import (
    annotate,
    bad_request,
    base_url,
    bearer,
    fail,
    json_response,
    ok,
    sim_state,
    unauthorized,
    upstream_view,
)
from .e3_scripts import adapt, sc_tools
from .events import Envelope, encode_event, iter_events, split_chunks
from .scripts import DRAWING_ASSISTANT_ID, SCENARIOS, SHAPES, Context, Script, build_script
from .state import STREAM_FAULTS, Account, Conversation, Fault, SimState, hex24

bp = Blueprint("stream", __name__, url_prefix="/chatglm/backend-api/assistant")
SCENARIOS.setdefault("tools", sc_tools)  # the 2026 server-side tool loop, in both eras
QUEUE_ERROR = {"error_code": 10062, "err_msg": "当前使用人数较多，请稍后再试 (simulated queue)"}
STOPPED_ERROR = {"error_code": 10024, "err_msg": "generator exit"}

FLUSH_HEADERS_KEY = "glm_sim.flush_headers"
DROP_AFTER_EVENTS = 3
CUTTING_FAULTS = ("drop_mid_stream", "truncate_stream")
HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


class DropConnection(Exception):
    """Raised inside the body iterator to cut the TCP connection mid-stream.

    The gevent handler in `__main__` closes the socket for it without logging a traceback.
    """


class StreamLease:
    """The account's single output slot; released exactly once, however the stream ends."""

    def __init__(self, state: SimState, acc: Account) -> None:
        self.state, self.acc, self.released = state, acc, False

    def release(self, completed: bool) -> None:
        if not self.released:
            self.released = True
            self.state.close_stream(self.acc, completed)


def user_text(body: dict[str, Any]) -> str:
    """All user text items joined by newlines: where directives are looked up."""
    texts = []
    for message in body.get("messages") or []:
        if not isinstance(message, dict) or message.get("role", "user") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
            continue
        for item in content or []:
            if isinstance(item, dict) and item.get("type") == "text":
                texts.append(str(item.get("text", "")))
    return "\n".join(texts)


def _immediate_fault(fault: Fault, access_token: str) -> Response | None:
    """Faults that replace the whole response; None for those that alter the stream."""
    state = sim_state()
    if fault.kind == "http_500":
        return fail(500, "internal server error", 500)
    if fault.kind == "http_502":
        return Response(HTML_502, status=502, content_type="text/html")
    if fault.kind == "non_sse":
        return fail(10000, "non-SSE answer (simulated)")
    if fault.kind == "empty_body":
        return Response(b"", content_type="text/event-stream; charset=utf-8")
    if fault.kind == "access_expired":
        state.revoke_access(access_token)
        return unauthorized()
    if fault.kind == "busy_10061":
        return e3.busy()
    if fault.kind == "waf_40012":
        return fail(40012, "request blocked (simulated WAF)", 400)
    return None


@bp.post("/stream")
@upstream_view(signed=True)
def stream(acc: Account) -> Response:
    state = sim_state()
    body = request.get_json(silent=True, force=True)
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return bad_request()
    assistant_id = str(body.get("assistant_id") or "")
    meta = body.get("meta_data") if isinstance(body.get("meta_data"), dict) else {}
    prompt = user_text(body)
    summary: dict[str, Any] = {
        "assistant_id": assistant_id,
        "conversation_id": body.get("conversation_id"),
        "chat_mode": meta.get("chat_mode"),
        "is_networking": meta.get("is_networking"),
        "selected_model": meta.get("selected_model"),
        "reasoning_effort": meta.get("reasoning_effort"),
        "content": [
            {"role": m.get("role"), "item": item}
            for m in body["messages"]
            if isinstance(m, dict)
            for item in (m.get("content") if isinstance(m.get("content"), list) else [])
        ],
    }
    annotate(stream=summary)
    if e3.is_e3():
        refused = e3.check_stream_body(meta)
        if refused is not None:
            summary["refused"] = True
            return refused
    fault = state.pop_fault(acc.refresh_token, STREAM_FAULTS)
    summary["fault"] = fault.kind if fault else None
    if fault is not None:
        early = _immediate_fault(fault, bearer() or "")
        if early is not None:
            return early
    refused = care.gate(state, acc, fault.kind if fault else None)
    if refused is not None:
        summary["refused"] = True
        return refused
    if not state.try_open_stream(acc):
        summary["rejected"] = True
        if e3.is_e3():
            return e3.busy()
        return fail(10040, "a conversation stream is already outputting")
    lease = StreamLease(state, acc)
    conv = state.start_turn(acc, str(body.get("conversation_id") or ""), assistant_id)
    if conv is None:
        state.cancel_stream(acc)
        summary["unknown_conversation"] = True
        return Response(b"", content_type="text/event-stream; charset=utf-8")
    try:
        delivery = _plan(state, lease, conv, assistant_id, meta, prompt, fault)
    except BaseException:
        lease.release(False)
        raise
    summary.update(
        scenario=delivery.script.name, shape=delivery.shape, conversation=conv.id, turn=conv.turns
    )
    response = Response(
        delivery.write(),
        content_type="text/event-stream; charset=utf-8",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    # Runs even if the body is never iterated (client gone before the first byte).
    response.call_on_close(lambda: lease.release(False))
    return response


@dataclass
class Delivery:
    """Everything needed to write one answer: what (script, envelope, shape) and how."""

    state: SimState
    lease: StreamLease
    conv: Conversation
    prompt: str
    script: Script
    env: Envelope
    shape: str
    fault: str | None
    flush_headers: Callable[[], None] | None

    def write(self) -> Iterator[bytes]:
        """Events in small chunks, paced, faults applied; frees the slot however it ends."""
        script, cfg, env = self.script, self.state.cfg, self.env
        chunk = script.chunk if script.chunk is not None else int(cfg("chunk_size"))
        delay = script.delay if script.delay is not None else float(cfg("delay"))
        history = env.message_id
        with self.state.lock:
            self.state.running[history] = self.lease.acc.refresh_token
        try:
            if self.flush_headers is not None:
                self.flush_headers()
            if script.wait:
                time.sleep(script.wait)
            for index, event in enumerate(self._events()):
                if index:
                    time.sleep(delay)
                if self.state.stop_wanted(history):
                    # stop_stream: the answer ends with "generator exit" (§15.7.6)
                    stopped = {**event, "parts": [], "status": "error"}
                    stopped.update(error=dict(STOPPED_ERROR), last_error=dict(STOPPED_ERROR))
                    yield from split_chunks(encode_event(stopped, env.e3), chunk)
                    return
                frame = encode_event(event, env.e3)
                final = event["status"] not in ("init", "processing")
                if self.fault in CUTTING_FAULTS and (final or index >= DROP_AFTER_EVENTS):
                    if self.fault == "drop_mid_stream":
                        yield frame[: len(frame) // 2]
                        raise DropConnection()
                    return
                if final:
                    self.state.record_answer(self.conv, self.prompt, script.answer_text())
                    self.lease.release(True)
                    if env.e3 and event["status"] == "finish" and not cfg("e3_final_finish"):
                        return  # the July 2026 recording just ends after the text part
                yield from split_chunks(frame, chunk)
        finally:
            with self.state.lock:
                self.state.running.pop(history, None)
            self.lease.release(False)

    def _events(self) -> Iterator[dict[str, Any]]:
        """The script's events, plus the 2026 lifecycle extras and the queue fault."""
        events = iter_events(self.script, self.env, self.shape)
        first = next(events)
        yield first
        if self.fault == "queue_10062":
            yield {**first, "status": "error", "last_error": dict(QUEUE_ERROR)}
            return
        for index, event in enumerate(events):
            if self.env.e3 and index == 2 and self.state.cfg("e3_processing_frame"):
                yield {**first, "status": "processing"}
            yield event


def _plan(
    state: SimState,
    lease: StreamLease,
    conv: Conversation,
    assistant_id: str,
    meta: dict[str, Any],
    prompt: str,
    fault: Fault | None,
) -> Delivery:
    """Choose the scenario and shape; sleeps here (before headers) for `slow_first_byte`."""
    if assistant_id == DRAWING_ASSISTANT_ID:
        default = "draw"
    elif meta.get("chat_mode") in ("zero", "thinking", "deep_thinking") and state.cfg(
        "zero_mode_thinks"
    ):
        default = "think"
    else:
        default = "text"
    message_id = hex24()
    script = scripted.take(lease.acc.refresh_token, prompt) or build_script(
        prompt, conv.turns, message_id, base_url(), default
    )
    is_e3 = e3.is_e3()
    if is_e3:
        script = adapt(script, _context(prompt, conv, message_id, script))
    configured = state.cfg("shape")
    shape = script.shape or ("current" if is_e3 and configured == "all" else configured)
    env = Envelope(message_id, conv.id, assistant_id, time.strftime("%Y-%m-%d %H:%M:%S"), e3=is_e3)
    if fault is not None and fault.kind == "slow_first_byte":
        time.sleep(fault.seconds)
    return Delivery(
        state,
        lease,
        conv,
        prompt,
        script,
        env,
        shape if shape in SHAPES else "all",
        fault.kind if fault else None,
        request.environ.get(FLUSH_HEADERS_KEY),
    )


def _context(prompt: str, conv: Conversation, message_id: str, script: Script) -> Context:
    return Context(prompt, conv.turns, message_id, base_url(), {})


@bp.post("/conversation/delete")
@upstream_view(signed=True)
def delete_conversation(acc: Account) -> Response:
    body = request.get_json(silent=True, force=True)
    if not isinstance(body, dict) or not body.get("conversation_id"):
        return bad_request()
    legacy = sim_state().cfg("legacy_delete") if e3.is_e3() else "works"
    if legacy == "404":
        return json_response({"status": 404, "message": "not found"}, 404)
    if legacy == "noop":
        return ok(None)  # answers success, deletes nothing (§15.8 q2)
    if sim_state().delete_conversation(acc, str(body["conversation_id"])):
        return ok(None)
    return json_response({"status": 404, "message": "conversation not found"})
