"""``n`` > 1: several independent answers to one chat request, as one job for the pump.

The upstream answers one question with one answer, so ``n`` choices are
``n`` answer jobs, each its own upstream conversation (deleted like any
other). ``ChoiceJobs`` runs them (as many at once as the caller has accounts,
so a team pool answers in parallel and a single account one answer after
another; the pool's lease still decides which account is free) and presents
them to the pump as one job whose deltas are tagged with their choice
(``Choice``). Their wire format is ``streaming.choices_wire.ChoicesWire``.

A failure of any choice fails the request (the other jobs are cancelled):
a client that asked for ``n`` answers gets ``n`` or an error, never fewer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gevent
from gevent.queue import Queue

from glm_proxy.accounts import Account
from glm_proxy.errors import GLMProxyError
from glm_proxy.protocol.events import Delta
from glm_proxy.streaming.queue import Failure, JobDone, QueuedItems

if TYPE_CHECKING:
    from glm_proxy.services.answer import AnswerJob

log = logging.getLogger(__name__)

__all__ = ["Choice", "ChoiceJobs"]


@dataclass(frozen=True, slots=True)
class Choice:
    """One delta of choice ``index``."""

    index: int
    delta: Delta


class ChoiceJobs(QueuedItems):
    """``n`` answer jobs as the one job the pump drives (``next_item``, ``cancel``, ...)."""

    def __init__(
        self,
        start_job: Callable[[], AnswerJob],
        n: int,
        parallel: int,
        queue_items: int | None = None,
    ) -> None:
        self._start_job = start_job
        self.n = n
        self.parallel = max(1, min(parallel, n))
        # Bounded like each job's own queue: a client that stops reading stops the
        # forwarders, hence the jobs, hence the upstream reads (backpressure).
        self.queue: Queue = Queue(maxsize=queue_items)
        self.jobs: list[AnswerJob] = []
        self._forwarders: list[gevent.Greenlet] = []
        self._launched = 0
        self._ended = 0
        self._stopped = False
        self._peeked: Any = None

    # -- producer side -----------------------------------------------------------------

    def start(self) -> ChoiceJobs:
        for _ in range(self.parallel):
            self._launch()
        return self

    def _launch(self) -> None:
        index = self._launched
        self._launched += 1
        job = self._start_job()
        self.jobs.append(job)
        self._forwarders.append(gevent.spawn(self._forward, index, job))

    def _launch_next(self) -> None:
        """Start a waiting choice; a failure to start fails the request, never hangs it."""
        try:
            self._launch()
        except GLMProxyError as exc:
            self._stopped = True
            self.queue.put(Failure(exc))
        except Exception:  # noqa: BLE001 - a bug must not leave the client waiting
            log.exception("starting a choice failed")
            self._stopped = True
            self.queue.put(Failure(GLMProxyError("internal error while starting a choice")))

    def _forward(self, index: int, job: AnswerJob) -> None:
        """Tag one job's deltas; when it ends, the next waiting choice starts."""
        for item in job.items():
            if isinstance(item, Failure):
                self._stopped = True
                self.queue.put(item)
                return
            if isinstance(item, JobDone):
                self._ended += 1
                if self._ended == self.n:
                    self.queue.put(JobDone(item.account))
                elif self._launched < self.n and not self._stopped:
                    self._launch_next()
                return
            self.queue.put(Choice(index, item))

    # -- consumer side (what the pump uses) --------------------------------------------

    @property
    def account(self) -> Account | None:
        return self.jobs[0].account if self.jobs else None

    @property
    def conversation_id(self) -> str | None:
        return None  # n conversations, none kept: the response gets its own id

    def wait_leased(self, timeout: float | None = None) -> bool:
        """The first choice's account wait decides the status (a 429 keeps its status)."""
        return self.jobs[0].wait_leased(timeout)

    def abort(self, error: GLMProxyError) -> None:
        """JobDone every choice now with ``error`` (a stalled client, a restart)."""
        self._stopped = True
        for job in self.jobs:
            job.abort(error)

    def cancel(self) -> None:
        """Stop every choice; each job's own cleanup releases its lease and conversation."""
        self._stopped = True
        gevent.killall(self._forwarders, block=False)
        for job in self.jobs:
            job.cancel()
