"""Video generation with CogVideoX (notes §9): first frame, create, poll, music, delete.

Flow: optional first frame (the client's ``image_url`` or uploaded file, or
for ``cogvideox-pro`` an image drawn from the prompt) resized to 1440 wide
and cropped to at most 960 high; the frame upload and task creation run under
an account lease from the pool (same health, failover and cooldown as chat);
then the task is polled every ``VIDEO_POLL_INTERVAL`` seconds until it
finishes, fails or ``VIDEO_DEADLINE`` passes, on the account that owns it
(a status poll is not an answer stream, so no lease is held while waiting).
The upstream task record is deleted afterwards on every path, including a
client that hangs up (the greenlet is killed; its ``finally`` still runs).
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gevent

from glm_proxy.access.auth import Caller
from glm_proxy.accounts import Account
from glm_proxy.attachments.blob import from_bytes
from glm_proxy.attachments.frames import prepare_frame
from glm_proxy.errors import (
    GLMProxyError,
    InvalidRequest,
    RefreshTokenExpired,
    UpstreamBusy,
    UpstreamError,
    UpstreamRetryable,
    UpstreamTimeout,
)
from glm_proxy.services.images import draw
from glm_proxy.upstream import media

log = logging.getLogger(__name__)

RUNNING = ("init", "processing", "queued", "")
PRO_FRAME_ASPECT = "4:3"  # closest drawing ratio to the 3:2 video frame
MAX_POLL_ERRORS = 5  # consecutive transient poll failures tolerated


class Stopped(Exception):
    """The job was cancelled (deleted) while running."""


@dataclass(frozen=True)
class VideoPlan:
    model: str
    prompt: str
    image_url: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    audio_id: str = ""
    conversation_id: str = ""
    frame: bytes | None = field(default=None, repr=False)  # an uploaded first frame


def plan_video(body: dict[str, Any], frame: bytes | None = None) -> VideoPlan:
    """From a validated ``VideoGenerationSchema`` body and an optional uploaded frame (pure)."""
    if body["model"] == "cogvideox-pro" and not body["prompt"]:
        raise InvalidRequest(
            "cogvideox-pro draws the first frame from the prompt: a prompt is required.",
            param="prompt",
        )
    if not body["prompt"] and not body.get("image_url") and frame is None:
        raise InvalidRequest("A prompt or a first frame (image_url) is required.", param="prompt")
    return VideoPlan(
        model=body["model"],
        prompt=body["prompt"],
        image_url=None if frame is not None else body.get("image_url"),
        options={
            "video_style": body["video_style"],
            "emotional_atmosphere": body["emotional_atmosphere"],
            "mirror_mode": body["mirror_mode"],
        },
        audio_id=body.get("audio_id") or "",
        conversation_id=body.get("conversation_id") or "",
        frame=frame,
    )


StatusCallback = Callable[[str, dict[str, Any]], None]


def first_frame(svc, caller: Caller, plan: VideoPlan) -> bytes | None:
    """The first frame as a 1440-wide JPEG, or None for text-to-video."""
    if plan.frame is not None:
        blob = from_bytes(plan.frame, source="input_reference")
    elif plan.image_url:
        try:
            blob = svc.attachments.materialize(plan.image_url)
        except GLMProxyError as exc:
            if exc.param is None and exc.status < 500:
                exc.param = "image_url"
            raise
    elif plan.model == "cogvideox-pro":
        drawing = draw(
            svc, caller, plan.prompt, svc.settings.glm_drawing_assistant_id, PRO_FRAME_ASPECT
        )
        if not drawing.urls:
            raise UpstreamError("cogvideox-pro: the drawing assistant produced no first frame.")
        blob = svc.attachments.fetch_generated(drawing.urls[0])
    else:
        return None
    with blob:
        return prepare_frame(blob)


def _create_task(svc, caller: Caller, plan: VideoPlan, frame: bytes | None):
    """(account, task) after uploading the frame and creating the task on a leased account.

    Transient failures move to another candidate (up to ``GLM_RETRIES`` more
    attempts), like the answer job does.
    """
    s = svc.settings
    tried: set[str] = set()
    last: GLMProxyError | None = None
    for attempt in range(s.glm_retries + 1):
        exclude = tried if len(tried) < len(caller.accounts) else ()
        try:
            lease = svc.pool.lease(caller.accounts, exclude=exclude, share=caller.share)
        except GLMProxyError:
            if last is not None:
                raise last from None
            raise
        account = lease.account
        try:
            source_id = None
            if frame is not None:
                source_id = media.upload_video_frame(
                    svc.upstream,
                    account,
                    io.BytesIO(frame),
                    len(frame),
                    "frame.jpg",
                    "image/jpeg",
                )
            task = media.create_video(
                svc.upstream,
                account,
                plan.prompt,
                source_id=source_id,
                options=plan.options,
                conversation_id=plan.conversation_id,
            )
            svc.pool.report_success(account)
            return account, task
        except RefreshTokenExpired as exc:
            svc.pool.report_dead(account, exc)
            svc.upstream.invalidate(account)
            tried.add(account.fingerprint)
            if len(tried) >= len(caller.accounts):
                raise svc.pool.all_dead(caller.accounts, exc) from None
            last = exc
        except UpstreamRetryable as exc:
            if not isinstance(exc, UpstreamBusy):
                svc.pool.report_failure(account, exc)
            tried.add(account.fingerprint)
            last = exc
            if attempt < s.glm_retries:
                gevent.sleep(s.glm_retry_backoff * (2**attempt))
        finally:
            lease.release()
    raise last or UpstreamRetryable("the upstream video API kept failing")


def _poll(
    svc,
    account: Account,
    chat_id: str,
    on_status: StatusCallback | None,
    should_stop: Callable[[], bool] | None,
) -> dict[str, Any]:
    s = svc.settings
    deadline = time.monotonic() + s.video_deadline
    errors = 0
    while True:
        if should_stop is not None and should_stop():
            raise Stopped()
        try:
            status = media.video_status(svc.upstream, account, chat_id)
            errors = 0
        except UpstreamRetryable as exc:
            errors += 1
            if errors > MAX_POLL_ERRORS:
                raise
            log.info("video status poll failed (%s); polling on", exc.code)
            status = None
        if status is not None:
            state = str(status.get("status") or "")
            if on_status is not None:
                on_status(state, status)
            if state == "finished":
                return status
            if state not in RUNNING:
                msg = status.get("msg") or status.get("message") or state
                raise UpstreamError(f"The video generation failed upstream: {msg}")
        if time.monotonic() + s.video_poll_interval > deadline:
            raise UpstreamTimeout(
                f"The video was not ready within {s.video_deadline:g}s (VIDEO_DEADLINE)."
            )
        gevent.sleep(s.video_poll_interval)


def _delete_quietly(svc, account: Account, chat_id: str) -> None:
    try:
        media.delete_video(svc.upstream, account, chat_id)
    except Exception as exc:  # noqa: BLE001 - cleanup never fails the request
        log.warning(
            "could not delete video task %s of %s: %s",
            chat_id,
            account,
            getattr(exc, "message", type(exc).__name__),
        )


def generate_video(
    svc,
    caller: Caller,
    plan: VideoPlan,
    *,
    on_status: StatusCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Run one generation to the end; returns the response ``data`` item.

    Raises:
        InvalidRequest / PayloadTooLarge: a bad first frame.
        ContentFiltered: cogvideox-pro's drawing was blocked.
        UpstreamError (502): the task failed (with the upstream's message).
        UpstreamTimeout (504): not finished within ``VIDEO_DEADLINE``.
    """
    frame = first_frame(svc, caller, plan)
    if on_status is not None:
        on_status("creating", {})
    account, task = _create_task(svc, caller, plan, frame)
    chat_id = str(task["chat_id"])
    try:
        status = _poll(svc, account, chat_id, on_status, should_stop)
        video_url = status.get("video_url") or ""
        if plan.audio_id:
            key, _, audio = plan.audio_id.partition("-")
            video_url = media.composite_video(svc.upstream, account, chat_id, key, audio)
        return {
            "conversation_id": task.get("conversation_id") or status.get("conversation_id") or "",
            "cover_url": status.get("cover_url") or "",
            "video_url": video_url,
            "video_duration": status.get("video_duration") or "",
            "resolution": status.get("resolution") or "",
        }
    finally:
        gevent.spawn(_delete_quietly, svc, account, chat_id)
