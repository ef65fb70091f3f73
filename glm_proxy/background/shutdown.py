"""Graceful shutdown on SIGTERM: keep the promises while the worker goes away.

Platforms send SIGTERM on every deploy; gunicorn then stops accepting and
gives in-flight requests ``GRACEFUL_TIMEOUT`` seconds before it kills them.
``begin()`` (called from the worker's SIGTERM handler, see
``gunicorn.conf.py``) makes that window safe:

* requests still waiting for an account are answered at once with 503
  ``server_restarting`` and ``Retry-After`` (another instance can serve them);
* running answers may finish until ``SHUTDOWN_MARGIN`` seconds before the
  grace period ends; then each is ended with a final error event that tells
  the client to retry (and ``data: [DONE]`` on Chat Completions), its
  upstream answer stopped and its conversation deleted;
* answers started after that point are refused the same way.
"""

from __future__ import annotations

import logging

import gevent

from glm_proxy.services.aborts import ServerRestarting
from glm_proxy.services.answer import active_jobs

log = logging.getLogger(__name__)

__all__ = ["begin", "end_all"]

_state = {"began": False}


def begin(graceful_timeout: float, margin: float) -> gevent.Greenlet | None:
    """Start the drain; returns the greenlet that ends the remaining answers."""
    if _state["began"]:
        return None
    _state["began"] = True
    queued = [job for job in active_jobs() if not job.leased]
    for job in queued:
        job.abort(ServerRestarting())
    delay = max(0.0, graceful_timeout - margin)
    if margin >= graceful_timeout:
        delay = graceful_timeout / 2
    log.info(
        "shutting down: %d queued request(s) refused; open answers end in %.1fs",
        len(queued),
        delay,
    )
    return gevent.spawn_later(delay, end_all)


def end_all() -> int:
    """End every running answer with ``ServerRestarting``; returns how many."""
    jobs = active_jobs()
    for job in jobs:
        job.abort(ServerRestarting())
    if jobs:
        log.info("shutting down: ended %d open answer(s)", len(jobs))
    return len(jobs)
