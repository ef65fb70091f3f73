"""Running one upstream answer: lease, stream, translate, retry, clean up.

An ``AnswerJob`` runs in its own greenlet (the producer) and hands typed
deltas to the view through a queue. The view may be a streaming generator
that sends keep-alives while the queue is quiet, or a plain request that
collects everything; both see the same deltas, so stream and non-stream
answers always agree.

Guarantees, on every path (finish, upstream error, client disconnect, which
arrives here as ``cancel()`` stopping the producer):
- the upstream response is closed and the account lease released;
- the conversation the upstream created is deleted in the background, unless
  the client continues or asked to keep it. The upstream names a new
  conversation only in its first event, so a client that hangs up while an
  upstream request is in flight but before that event (slow first byte, a
  silent search) does not kill the producer at once: it reads on, in the
  background and bounded by the upstream timeouts, until it learns the id,
  then stops and the conversation is deleted like any other;
- transient failures are retried (on another account when there is one) only
  while nothing has been handed to the client (the rules: ``services.retry``).

One attempt (lease, request, translate, filter, hand over, clean up) is an
``Attempt`` (``services.producer``); the job drives attempts and the queue.

The producer only produces: it puts each delta in the job's bounded queue
(``put``) and waits while it is full; the streaming pump
(``glm_proxy.streaming``) is the queue's one reader and the only code that
writes to the client.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gevent
from gevent.event import Event
from gevent.queue import Full, Queue

from glm_proxy.accounts import Account
from glm_proxy.errors import GLMProxyError, RefreshTokenExpired, UpstreamBusy, UpstreamRetryable
from glm_proxy.protocol.parsers import FilterFactory
from glm_proxy.protocol.translate import TranslateOptions
from glm_proxy.services.aborts import ClientStalled
from glm_proxy.services.memory_trim import trim_when_idle
from glm_proxy.services.producer import Attempt
from glm_proxy.services.retry import Raise, Retry, on_failure
from glm_proxy.store.fairness import FairShare
from glm_proxy.streaming.queue import Failure, JobDone, QueuedItems, item_bytes

if TYPE_CHECKING:
    from glm_proxy.services import Services

log = logging.getLogger(__name__)

_ACTIVE: set[AnswerJob] = set()  # this worker's running jobs (shutdown ends them)


def active_jobs() -> list[AnswerJob]:
    """The answers this worker is producing now."""
    return list(_ACTIVE)


@dataclass
class AnswerRequest:
    """What to ask the upstream, independent of which account answers."""

    assistant_id: str
    build_payload: Callable[[Account], dict[str, Any]]
    translate_options: TranslateOptions = field(default_factory=TranslateOptions)
    referer: str | None = None
    continue_conversation: str | None = None  # client continues this upstream conversation
    keep_conversation: bool = False
    pinned_account: Account | None = None  # conversation affinity
    # Who a conversation kept by this answer belongs to (``pool.conversations.owner_id``):
    # only that caller may continue it.
    owner: str = ""
    # The caller reads the whole answer before replying (non-stream): deltas are
    # held until the attempt succeeded, so nothing has reached the client when an
    # upstream stream breaks mid-answer, and that failure is retried too.
    buffered: bool = False
    # Work that needs no account (fetching attachments): run once, before the first
    # lease, so it neither holds an account nor repeats when another account is tried.
    before_lease: Callable[[], None] | None = None
    # Runs when the job ends, on every path (e.g. closes fetched attachments).
    on_end: Callable[[], None] | None = None
    # Answer filters (glm_proxy.protocol.parsers) between the translator and the client:
    # ``make_filter(final)`` builds a fresh chain per try. A ``Reask`` from the
    # first try's ``finish()`` re-prompts once, in the same upstream conversation,
    # with ``build_followup(account, conversation_id, text)`` as the payload and a
    # ``final=True`` filter - only while nothing of the answer reached the client.
    make_filter: FilterFactory | None = None
    build_followup: Callable[[Account, str, str], dict[str, Any]] | None = None
    # Who asks: their turn when callers wait for accounts (``Caller.share``).
    share: FairShare = field(default_factory=FairShare)


class AnswerJob(QueuedItems):
    def __init__(
        self, services: Services, candidates: tuple[Account, ...], request: AnswerRequest
    ) -> None:
        self.services = services
        self.candidates = candidates
        self.request = request
        settings = getattr(services, "settings", None)
        # Bounded: a client that stops reading stops the producer, which stops
        # reading the upstream (backpressure); STREAM_STALL_TIMEOUT ends the wait.
        self.queue: Queue = Queue(maxsize=settings.stream_queue_items if settings else None)
        self.byte_limit = getattr(settings, "stream_queue_bytes", 0) if settings else 0
        self.queued_bytes = 0
        self._room = Event()
        # The pump's watch ends a stalled stream after STREAM_STALL_TIMEOUT; this
        # longer wait only frees a producer whose consumer vanished without a pump.
        self.stall_timeout: float | None = 2 * settings.stream_stall_timeout if settings else None
        self.stop_upstream = False  # abort(): ask the upstream to stop generating
        self.aborted: GLMProxyError | None = None  # why abort() ended the answer
        self.account: Account | None = None
        self.conversation_id: str | None = None
        self.attempts = 0
        self._greenlet: gevent.Greenlet | None = None
        self._peeked: Any = None
        self._leased = Event()  # set once an account is leased (or the job ended)
        self._attempt: Attempt | None = None  # the attempt in progress, if any
        # The client went away (``cancel()``): the producer stops at the next step. A plain
        # attribute: the producer looks at it after every upstream event.
        self.cancelled = False
        self._running = False  # _run began (a greenlet killed before that never runs)
        self._ending = False  # _run is handing over its last item; abort() no longer applies

    # -- consumer side -------------------------------------------------------

    def start(self) -> AnswerJob:
        # In the request's context: its log lines name the request (a new greenlet
        # would otherwise start with an empty one).
        self._greenlet = gevent.spawn(contextvars.copy_context().run, self._run)
        _ACTIVE.add(self)
        # The producer runs first, up to its first wait (the account queue, the
        # upstream): what the caller builds next (wire, response) then overlaps
        # the upstream's work instead of delaying the request to it.
        gevent.sleep(0)
        return self

    @property
    def leased(self) -> bool:
        """An account was leased (False while the job waits in the account queue)."""
        return self.account is not None

    def abort(self, error: GLMProxyError) -> None:
        """JobDone the answer now with ``error`` (a stalled client, a restart).

        The error is raised inside the producer wherever it waits (account
        queue, upstream read, full queue), so cleanup runs as for any failure,
        and it asks the upstream to stop generating first. The consumer gets
        ``Failure(error)``.
        """
        greenlet = self._greenlet
        if greenlet is None or greenlet.dead or self._ending:
            return
        self.stop_upstream = True
        self.aborted = error
        greenlet.kill(error, block=False)
        if not self._running:  # killed before it ran: _run never will
            _ACTIVE.discard(self)
            self._leased.set()
            self._put_final(Failure(error))

    def wait_leased(self, timeout: float | None = None) -> bool:
        """Block while the job waits in the account queue (so a 429 keeps its status)."""
        return self._leased.wait(timeout)

    def cancel(self) -> None:
        """Stop the producer (client went away); its ``finally`` blocks clean up.

        Never waits for the upstream: when the upstream may have created a
        conversation whose id has not arrived yet, the producer is left to read
        on in the background until the first event names it (it stops itself
        there, and cleanup deletes it); a timer kills it if even the upstream
        timeouts do not end that wait.
        """
        greenlet = self._greenlet
        if greenlet is None or greenlet.dead:
            return
        self.cancelled = True
        if self._awaiting_conversation_id():
            s = self.services.settings
            gevent.spawn_later(
                s.glm_connect_timeout + 2 * s.glm_read_timeout, greenlet.kill, block=False
            )
            return
        greenlet.kill(block=True, timeout=10)

    def _awaiting_conversation_id(self) -> bool:
        """An upstream request is in flight whose new conversation is still unnamed."""
        state = self._attempt
        return (
            state is not None
            and state.requested
            and state.conversation_id is None
            and not self.request.continue_conversation
            and state.upstream_conversation_id() is None
        )

    # -- producer side -------------------------------------------------------

    def put(self, item: Any) -> None:
        """Queue an item for the client; waits while the queue is full in items or in bytes.

        That wait is the backpressure: a client that stops reading stops the
        producer, which stops reading the upstream. One item always fits in
        an empty queue, however large. Raises ``ClientStalled`` when nothing
        was taken for twice ``STREAM_STALL_TIMEOUT`` (the pump's watch acts
        first, after one).
        """
        if self.byte_limit:
            size = item_bytes(item)
            # One item always fits in an empty queue, however large.
            while self.queued_bytes and self.queued_bytes + size > self.byte_limit:
                self._room.clear()
                if not self._room.wait(timeout=self.stall_timeout):
                    raise ClientStalled("the client stopped reading the answer")
            self.queued_bytes += size
        try:
            self.queue.put(item, timeout=self.stall_timeout)
        except Full:
            raise ClientStalled("the client stopped reading the answer") from None

    def _put_final(self, item: Any) -> None:
        """The last item (``JobDone``/``Failure``); dropped if a stalled client never takes it."""
        try:
            if self.byte_limit:
                self.queued_bytes += item_bytes(item)
            self.queue.put(item, timeout=self.stall_timeout)
        except Full:
            log.info("client gone or stalled: final %s dropped", type(item).__name__)

    def _run(self) -> None:
        self._running = True
        final: Any = None
        try:
            if self.request.before_lease is not None:
                self.request.before_lease()
            self._attempt_until_done()
        except GLMProxyError as exc:
            final = Failure(_detached(self.aborted or exc))
        except gevent.GreenletExit:
            raise
        except Exception:  # noqa: BLE001 - a bug must not hang the client
            log.exception("answer job crashed")
            final = Failure(GLMProxyError("internal error while producing the answer"))
        finally:
            self._ending = True
            _ACTIVE.discard(self)
            if not _ACTIVE:  # the last answer of a burst: give its memory back soon
                trim_when_idle(lambda: not _ACTIVE)
            if self.aborted is not None:
                _detached(self.aborted)
            self._leased.set()
            if final is not None:
                self._put_final(final)
            if self.request.on_end is not None:
                try:
                    self.request.on_end()
                except Exception:  # noqa: BLE001 - cleanup must not mask the answer
                    log.exception("answer job cleanup failed")

    def _attempt_until_done(self) -> None:
        s = self.services.settings
        pool = self.services.pool
        tried: set[str] = set()
        last_error: GLMProxyError | None = None
        exclude_tried = False
        while True:
            if self.cancelled:
                raise gevent.GreenletExit  # the client is gone: no further attempt
            try:
                lease = pool.lease(
                    self.candidates,
                    exclude=tried if exclude_tried else (),
                    require=self.request.pinned_account,
                    share=self.request.share,
                )
            except GLMProxyError:
                if last_error is not None:
                    raise last_error from None
                raise
            account = lease.account
            self.account = account
            self._leased.set()
            self.attempts += 1
            attempt = self._attempt = Attempt(self, account, lease)
            try:
                self.services.operations.credits.before_answer(account)  # daily claim
                attempt.run()
                pool.report_success(account)
                self.services.operations.credits.after_answer(account)  # balance, when due
            except GLMProxyError as exc:
                # An abort may surface wrapped (a read interrupted mid-stream): say why.
                failure = self.aborted or exc
                self._report(account, failure)
                tried.add(account.fingerprint)
                decision: Retry | Raise | None = on_failure(
                    failure,
                    committed=attempt.committed,
                    attempts=self.attempts,
                    retries=s.glm_retries,
                    backoff=s.glm_retry_backoff,
                    untried=sum(a.fingerprint not in tried for a in self.candidates),
                    pinned=self.request.pinned_account is not None,
                )
            else:
                decision = None
            finally:
                self._attempt = None
                # In its own greenlet: cancel() (client gone, or the view done with
                # the answer) must not cut the store I/O of cleanup and release short.
                gevent.spawn(attempt.finish, lease).join()
            if decision is None:
                # Only now: the lease is free before the client reads [DONE], so a
                # client that asks again right away finds its account available.
                self._ending = True
                self._put_final(JobDone(account))
                return
            if isinstance(decision, Raise):
                if decision.dead_pool:
                    dead = [account] if self.request.pinned_account else self.candidates
                    raise pool.all_dead(dead, decision.error) from None
                raise decision.error
            last_error = failure
            if not decision.counts:
                if all(pool.is_pooled(a.fingerprint) for a in self.candidates):
                    self.attempts -= 1  # a dead pool account is not an attempt at this answer
                elif self.attempts > s.glm_retries:
                    # The caller's own dead tokens count: a header of many tokens
                    # must not fan one request out into a login per token.
                    raise failure
            exclude_tried = decision.other_account
            if decision.delay:
                log.info("retrying after %s on %s in %.2fs", failure.code, account, decision.delay)
            # The backoff runs after the failed attempt's lease went back, so it
            # never holds an account another request could use meanwhile.
            gevent.sleep(decision.delay)

    def _report(self, account: Account, exc: GLMProxyError) -> None:
        """Tell the pool (and token cache) what the failure says about the account."""
        if isinstance(exc, RefreshTokenExpired):
            self.services.pool.report_dead(account, exc)
            self.services.upstream.invalidate(account)
        elif isinstance(exc, UpstreamRetryable) and (
            not isinstance(exc, UpstreamBusy) or bool(getattr(exc, "reason", ""))
        ):
            self.services.pool.report_failure(account, exc)


def _detached(error: GLMProxyError) -> GLMProxyError:
    """``error`` without its traceback and chained exceptions.

    The traceback holds the producer's frames, which hold the job, which holds
    the error: a cycle only the cyclic collector frees, keeping a finished
    answer's buffers alive meanwhile. The client never sees a traceback.
    """
    error.__traceback__ = None
    error.__context__ = None
    error.__cause__ = None
    return error
