"""``n`` > 1: several independent answers to one chat request, through the one pump.

The upstream answers one question with one answer, so ``n`` choices are
``n`` answer jobs, each its own upstream conversation (deleted like any
other). ``ChoiceJobs`` runs them (as many at once as the caller has accounts,
so a team pool answers in parallel and a single account one answer after
another; the pool's lease still decides which account is free) and presents
them to the pump as one job whose deltas are tagged with their choice
(``Choice``). ``ChoicesWire`` gives each choice its own ``ChatWire`` with its
``index``: streamed chunks of the choices interleave as they arrive, as
OpenAI's do, and a non-stream answer lists the choices in index order. The
usage adds up the completions and counts the prompt once.

A failure of any choice fails the request (the other jobs are cancelled):
a client that asked for ``n`` answers gets ``n`` or an error, never fewer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gevent
import orjson
from flask import Response
from gevent.queue import Queue

from glm_proxy.accounts import Account
from glm_proxy.api._streaming import respond
from glm_proxy.errors import GLMProxyError
from glm_proxy.ids import uuid4_hex
from glm_proxy.protocol.events import Delta
from glm_proxy.protocol.formats.openai import ChatWire, chat_usage
from glm_proxy.protocol.sse import DONE
from glm_proxy.services.answer import AnswerJob
from glm_proxy.services.controls import reasoning_style
from glm_proxy.services.job_queue import Failure, JobDone, QueuedItems

if TYPE_CHECKING:
    from glm_proxy.access.auth import Caller
    from glm_proxy.observability.record import RequestRecord
    from glm_proxy.services import Services
    from glm_proxy.services.chat import ChatPlan

log = logging.getLogger(__name__)

__all__ = ["Choice", "ChoiceJobs", "ChoicesWire", "respond_choices"]


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
        services: Services | None = None,
    ) -> None:
        self.services = services  # the pump reads its settings (stall timeout) from here
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

    def deltas(self) -> Iterator[Choice]:
        for item in self.items():
            if isinstance(item, Failure):
                raise item.error
            if isinstance(item, JobDone):
                return
            yield item

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


def _total_usage(usages: list[dict[str, Any]]) -> dict[str, Any]:
    """The prompt once, the completions added up."""
    prompt = usages[0]["prompt_tokens"]
    completion = sum(u["completion_tokens"] for u in usages)
    reasoning = sum(u["completion_tokens_details"]["reasoning_tokens"] for u in usages)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


class ChoicesWire:
    """The pump's ``Wire`` for ``n`` choices: one ``ChatWire`` per choice, one ``[DONE]``."""

    def __init__(self, make_wire: Callable[[int], ChatWire], n: int, *, include_usage: bool):
        self.wires = [make_wire(index) for index in range(n)]
        self.include_usage = include_usage
        self.usage: dict[str, Any] | None = None
        self._opened = [False] * n

    def open(self) -> bytes:
        return b""  # each choice opens (role chunk) with its first delta

    def _open(self, index: int) -> bytes:
        if self._opened[index]:
            return b""
        self._opened[index] = True
        return self.wires[index].open()

    def feed(self, item: Choice) -> bytes:
        return self._open(item.index) + self.wires[item.index].feed(item.delta)

    def finish(self, end: object = None) -> bytes:
        out = [self._open(index) for index in range(len(self.wires))]
        self.usage = _total_usage([chat_usage(w.prompt_text, w.acc) for w in self.wires])
        if self.include_usage:
            first = self.wires[0]
            chunk = {
                "id": first.response_id(),
                "object": "chat.completion.chunk",
                "created": first.created,
                "model": first.model,
                "system_fingerprint": None,
                "choices": [],
                "usage": self.usage,
            }
            out.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
        out.append(DONE)
        return b"".join(out)

    def error(self, err: GLMProxyError) -> bytes:
        return self.wires[0].error(err)

    def keepalive(self) -> bytes:
        return self.wires[0].keepalive()

    def collect(self, items: Iterable[Choice]) -> dict[str, Any]:
        grouped: list[list[Delta]] = [[] for _ in self.wires]
        for item in items:
            grouped[item.index].append(item.delta)
        bodies = [wire.collect(deltas) for wire, deltas in zip(self.wires, grouped, strict=True)]
        body = dict(bodies[0])
        body["choices"] = [{**b["choices"][0], "index": i} for i, b in enumerate(bodies)]
        self.usage = body["usage"] = _total_usage([b["usage"] for b in bodies])
        return body


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
        services=services,
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
        jobs,  # type: ignore[arg-type] - quacks like an AnswerJob for the pump
        wire,  # type: ignore[arg-type]
        stream=plan.stream,
        settings=services.settings,
        record=record,
        error_response=error_response,
    )
