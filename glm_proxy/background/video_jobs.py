"""Asynchronous video jobs: create now, poll later, from any worker or replica.

Hosting routers (Heroku, Render) cut requests that stay silent for 30-100 s,
and a video takes minutes. ``POST /v1/videos`` therefore starts the
generation in a greenlet of the worker that took the request and answers at
once with a job object shaped like OpenAI's video jobs (``id``, ``object:
"video"``, ``status`` queued/in_progress/completed/failed, ``progress``, ...).
The runner writes every status change to the store (``vjob:<id>``, kept
``JOB_TTL`` seconds), so ``GET /v1/videos/{id}`` works on any worker or
replica sharing the store.

Liveness: while the runner lives it refreshes ``vjob:<id>:alive`` (a short
TTL). A job that is not finished and has no live runner (its worker crashed
or was redeployed) is reported as failed instead of hanging forever.
Deleting a job sets ``vjob:<id>:stop``; the runner sees it at its next poll
and stops (the upstream task is deleted either way).

Only the caller that created a job (same API key, or same refresh tokens in
pass-through mode) can see it; anyone else gets 404.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

import gevent
import orjson

from glm_proxy.access.auth import Caller
from glm_proxy.errors import GLMProxyError, NotFound
from glm_proxy.ids import uuid4_hex
from glm_proxy.services.videos import Stopped, VideoPlan, generate_video
from glm_proxy.store import keys

log = logging.getLogger(__name__)

PREFIX = keys.VIDEO_JOB_PREFIX
ALIVE_TTL = 60.0
ALIVE_EVERY = 15.0
UNFINISHED = ("queued", "in_progress")
STATUS_MAP = {"init": ("queued", 0), "queued": ("queued", 0), "processing": ("in_progress", 50)}
PUBLIC_FIELDS = (
    "id",
    "object",
    "model",
    "status",
    "progress",
    "created_at",
    "completed_at",
    "expires_at",
    "prompt",
    "seconds",
    "size",
    "error",
    "remixed_from_video_id",
    "conversation_id",
    "cover_url",
    "video_url",
    "video_duration",
    "resolution",
)


def owner_of(caller: Caller) -> str:
    """Who may read a job: the API key name, or a hash of the pass-through accounts."""
    if caller.key_name:
        return "key:" + caller.key_name
    fps = ",".join(sorted(a.fingerprint for a in caller.accounts))
    return "pt:" + hashlib.sha256(fps.encode()).hexdigest()[:16]


def _seconds(duration: str) -> str | None:
    digits = "".join(ch for ch in duration if ch.isdigit() or ch == ".")
    return digits or None


def _size(resolution: str) -> str | None:
    parts = [p.strip() for p in resolution.replace("×", "x").split("x")]
    return "x".join(parts) if len(parts) == 2 and all(p.isdigit() for p in parts) else None


class VideoJobs:
    """Job records in the store, and the runner that fills them in."""

    def __init__(self, svc) -> None:
        self.svc = svc
        self.store = svc.store
        self.ttl = svc.settings.job_ttl

    # -- records -----------------------------------------------------------------

    def _load(self, job_id: str) -> dict[str, Any] | None:
        raw = self.store.get(keys.video_job(job_id))
        return orjson.loads(raw) if raw else None

    def _save(self, job: dict[str, Any]) -> None:
        self.store.set(keys.video_job(job["id"]), orjson.dumps(job).decode(), ttl=self.ttl)

    def _update(self, job: dict[str, Any], **fields: Any) -> None:
        if self.store.get(keys.video_job_stop(job["id"])):
            return  # deleted meanwhile: do not resurrect it
        job.update(fields, updated_at=time.time())
        self._save(job)

    @staticmethod
    def public(job: dict[str, Any]) -> dict[str, Any]:
        return {k: job.get(k) for k in PUBLIC_FIELDS}

    # -- API -----------------------------------------------------------------------

    def create(self, caller: Caller, plan: VideoPlan) -> dict[str, Any]:
        """Record a queued job and start its runner; returns the public job object."""
        now = int(time.time())
        job: dict[str, Any] = {
            "id": "video_" + uuid4_hex(),
            "object": "video",
            "model": plan.model,
            "status": "queued",
            "progress": 0,
            "created_at": now,
            "completed_at": None,
            "expires_at": now + int(self.ttl),
            "prompt": plan.prompt,
            "seconds": None,
            "size": None,
            "error": None,
            "remixed_from_video_id": None,
            "owner": owner_of(caller),
            "updated_at": time.time(),
        }
        self._save(job)
        self.store.set(keys.video_job_alive(job["id"]), "1", ttl=ALIVE_TTL)
        gevent.spawn(self._run, job, caller, plan)
        return self.public(job)

    def get(self, caller: Caller, job_id: str) -> dict[str, Any]:
        job = self._load(job_id)
        if job is None or job.get("owner") != owner_of(caller):
            raise NotFound(f"No video job with id {job_id!r}.", param="video_id")
        if job["status"] in UNFINISHED and not self.store.get(keys.video_job_alive(job_id)):
            # The runner saves the final state, then drops its alive key: it may have
            # finished between our two reads. Only a job still unfinished now is lost.
            job = self._load(job_id)
            if job is None:
                raise NotFound(f"No video job with id {job_id!r}.", param="video_id")
            if job["status"] in UNFINISHED:
                job.update(
                    status="failed",
                    error={
                        "code": "worker_lost",
                        "message": "The worker running this job stopped before it finished; "
                        "create the job again.",
                    },
                )
        return self.public(job)

    def delete(self, caller: Caller, job_id: str) -> dict[str, Any]:
        job = self._load(job_id)
        if job is None or job.get("owner") != owner_of(caller):
            raise NotFound(f"No video job with id {job_id!r}.", param="video_id")
        self.store.set(keys.video_job_stop(job_id), "1", ttl=self.ttl)
        self.store.delete(keys.video_job(job_id))
        return {"id": job_id, "object": "video.deleted", "deleted": True}

    # -- runner --------------------------------------------------------------------

    def _keep_alive(self, job_id: str) -> None:
        """Refresh the alive key until killed; a store hiccup must not end the beat (the job
        would read as ``worker_lost`` a minute later while it is still running)."""
        while True:
            try:
                self.store.set(keys.video_job_alive(job_id), "1", ttl=ALIVE_TTL)
            except Exception as exc:  # noqa: BLE001 - the next beat tries again
                log.warning("video job %s: could not refresh its liveness: %s", job_id, exc)
            gevent.sleep(ALIVE_EVERY)

    def _run(self, job: dict[str, Any], caller: Caller, plan: VideoPlan) -> None:
        job_id = job["id"]
        beat = gevent.spawn(self._keep_alive, job_id)

        def on_status(state: str, _status: dict[str, Any]) -> None:
            mapped = STATUS_MAP.get(state)
            if mapped and (job["status"], job["progress"]) != mapped:
                self._update(job, status=mapped[0], progress=mapped[1])

        def should_stop() -> bool:
            return bool(self.store.get(keys.video_job_stop(job_id)))

        try:
            result = generate_video(
                self.svc, caller, plan, on_status=on_status, should_stop=should_stop
            )
            self._update(
                job,
                status="completed",
                progress=100,
                completed_at=int(time.time()),
                seconds=_seconds(result["video_duration"]),
                size=_size(result["resolution"]),
                **result,
            )
        except Stopped:
            log.info("video job %s stopped (deleted)", job_id)
        except GLMProxyError as exc:
            self._update(job, status="failed", error={"code": exc.code, "message": exc.message})
        except Exception:  # noqa: BLE001 - a bug must not leave the job "running"
            log.exception("video job %s crashed", job_id)
            self._update(
                job,
                status="failed",
                error={"code": "internal_error", "message": "internal error while generating"},
            )
        finally:
            beat.kill(block=False)
            self.store.delete(keys.video_job_alive(job_id))
