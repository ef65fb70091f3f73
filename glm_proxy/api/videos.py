"""Video generation endpoints.

``POST /v1/videos/generations`` (blocking, the old project's shape) waits for
the video. If it is not done within ``KEEPALIVE_INTERVAL`` seconds the view
commits to ``200 application/json`` and sends a newline every interval while
it waits (JSON allows leading whitespace, so clients parse the final body as
usual) so routers that cut silent requests (Heroku, Render) keep the
connection. Errors before that point get their real status; an error after it
arrives as an ``{"error": ...}`` body with status 200 (documented).

``POST /v1/videos`` + ``GET /v1/videos/{id}`` (asynchronous, shaped like
OpenAI's video jobs) never hold a request open; see ``background.video_jobs``.
Both accept JSON or ``multipart/form-data`` (the OpenAI SDK's
``videos.create`` sends the first frame as the file ``input_reference``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import gevent
import orjson
from flask import Blueprint, Response, redirect, request
from werkzeug.wrappers import Response as BaseResponse

from glm_proxy.access.auth import Caller, check_model
from glm_proxy.api.schemas.base import load
from glm_proxy.api.schemas.media import VideoGenerationSchema
from glm_proxy.background.video_jobs import VideoJobs
from glm_proxy.errors import GLMProxyError, InvalidRequest, NotFound
from glm_proxy.http.plumbing import (
    admitted,
    error_response,
    json_response,
    read_json,
    request_record,
)
from glm_proxy.observability.record import RequestRecord
from glm_proxy.services import Services, services
from glm_proxy.services.videos import VideoPlan, generate_video, plan_video

bp = Blueprint("videos", __name__, url_prefix="/v1")
log = logging.getLogger(__name__)

WAIT_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
KEEPALIVE_BYTES = b"\n"


def _read_plan() -> VideoPlan:
    """The request as a plan, from JSON or multipart form (+ ``input_reference`` file)."""
    frame = None
    if request.mimetype == "multipart/form-data":
        data: Any = request.form.to_dict()
        upload = request.files.get("input_reference") or request.files.get("image")
        if upload is not None:
            frame = upload.read()
            if not frame:
                raise InvalidRequest("The input_reference file is empty.", param="input_reference")
    else:
        data = read_json()
    return plan_video(load(VideoGenerationSchema(), data), frame)


def _captured(svc: Services, caller: Caller, plan: VideoPlan) -> tuple[str, Any]:
    """Run the generation; return ("ok", data item) or ("error", GLMProxyError)."""
    try:
        return "ok", generate_video(svc, caller, plan)
    except GLMProxyError as exc:
        return "error", exc
    except Exception:  # noqa: BLE001 - reported to the client, logged here
        log.exception("video generation crashed")
        return "error", GLMProxyError("internal error while generating the video")


def _success(item: dict[str, Any]) -> dict[str, Any]:
    return {"created": int(time.time()), "data": [item]}


@bp.post("/videos/generations")
@admitted
def generate(caller: Caller) -> Response:
    svc = services()
    record = request_record()
    plan = _read_plan()
    record.describe(model=plan.model, stream=False, caller=caller.label)
    check_model(caller, plan.model)
    worker = gevent.spawn(_captured, svc, caller, plan)
    try:
        worker.join(timeout=svc.settings.keepalive_interval)
    except BaseException:
        worker.kill(block=False)
        raise
    if worker.ready():
        kind, value = worker.value
        return json_response(_success(value)) if kind == "ok" else error_response(value)
    return Response(
        _body_when_ready(worker, svc.settings.keepalive_interval, record),
        status=200,
        mimetype="application/json",
        headers=WAIT_HEADERS,
    )


def _body_when_ready(
    worker: gevent.Greenlet, interval: float, record: RequestRecord
) -> Iterator[bytes]:
    """Whitespace every ``interval`` until the video is ready, then the JSON body."""
    try:
        while not worker.ready():
            yield KEEPALIVE_BYTES
            worker.join(timeout=interval)
        kind, value = worker.value
        if kind == "ok":
            yield orjson.dumps(_success(value))
        else:
            record.error = value.code or "error"  # counted as an error (limits)
            yield orjson.dumps(value.to_dict())
    finally:
        if not worker.ready():
            worker.kill(block=False)  # client went away: the task is deleted in its finally


def _jobs() -> VideoJobs:
    return VideoJobs(services())


@bp.post("/videos")
@admitted
def create_job(caller: Caller) -> Response:
    record = request_record()
    plan = _read_plan()
    record.describe(model=plan.model, stream=False, caller=caller.label)
    check_model(caller, plan.model)
    return json_response(_jobs().create(caller, plan))


@bp.get("/videos/<video_id>")
@admitted
def get_job(caller: Caller, video_id: str) -> Response:
    return json_response(_jobs().get(caller, video_id))


@bp.delete("/videos/<video_id>")
@admitted
def delete_job(caller: Caller, video_id: str) -> Response:
    return json_response(_jobs().delete(caller, video_id))


@bp.get("/videos/<video_id>/content")
@admitted
def job_content(caller: Caller, video_id: str) -> BaseResponse:
    """A redirect to the video (or ``?variant=thumbnail``: the cover) once completed."""
    job = _jobs().get(caller, video_id)
    if job["status"] != "completed":
        raise NotFound(
            f"Video job {video_id!r} is {job['status']}, not completed.",
            param="video_id",
            code="video_not_ready",
        )
    variant = request.args.get("variant", "video")
    url = job.get("cover_url") if variant == "thumbnail" else job.get("video_url")
    if not url:
        return error_response(NotFound(f"No {variant} for video job {video_id!r}."))
    return redirect(url, code=302)
