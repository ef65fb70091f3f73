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
  while nothing has been handed to the client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import gevent
from gevent.event import Event
from gevent.queue import Empty, Queue

from glm_proxy.accounts import Account
from glm_proxy.errors import (
    GLMProxyError,
    NotFound,
    RefreshTokenExpired,
    UpstreamBusy,
    UpstreamRetryable,
)
from glm_proxy.events import ConversationStarted, Delta
from glm_proxy.sse import ServerSentEvent, SSEDecoder, decode_json
from glm_proxy.translate import TranslateOptions, Translator

log = logging.getLogger(__name__)

KEEPALIVE = object()
"""Returned by ``next_item`` when nothing arrived within the timeout."""


@dataclass(frozen=True)
class Failure:
    error: GLMProxyError


@dataclass(frozen=True)
class End:
    account: Account | None = None


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
    # The caller reads the whole answer before replying (non-stream): deltas are
    # held until the attempt succeeded, so nothing has reached the client when an
    # upstream stream breaks mid-answer, and that failure is retried too.
    buffered: bool = False
    # Work that needs no account (fetching attachments): run once, before the first
    # lease, so it neither holds an account nor repeats when another account is tried.
    before_lease: Callable[[], None] | None = None
    # Runs when the job ends, on every path (e.g. closes fetched attachments).
    on_end: Callable[[], None] | None = None


class AnswerJob:
    def __init__(self, services, candidates: tuple[Account, ...], request: AnswerRequest) -> None:
        self.services = services
        self.candidates = candidates
        self.request = request
        self.queue: Queue = Queue()
        self.account: Account | None = None
        self.conversation_id: str | None = None
        self.attempts = 0
        self._greenlet: gevent.Greenlet | None = None
        self._peeked: Any = None
        self._leased = Event()  # set once an account is leased (or the job ended)
        self._attempt: _AttemptState | None = None  # the attempt in progress, if any
        self._cancelled = False

    # -- consumer side -------------------------------------------------------

    def start(self) -> AnswerJob:
        self._greenlet = gevent.spawn(self._run)
        return self

    def wait_leased(self, timeout: float | None = None) -> bool:
        """Block while the job waits in the account queue (so a 429 keeps its status)."""
        return self._leased.wait(timeout)

    def next_item(self, timeout: float | None = None) -> Any:
        """The next delta, ``Failure``, ``End``, or ``KEEPALIVE`` after ``timeout`` seconds."""
        if self._peeked is not None:
            item, self._peeked = self._peeked, None
            return item
        try:
            return self.queue.get(timeout=timeout)
        except Empty:
            return KEEPALIVE

    def next_ready(self) -> Any:
        """The next item if one is already waiting, else None (never blocks)."""
        if self._peeked is not None:
            item, self._peeked = self._peeked, None
            return item
        try:
            return self.queue.get_nowait()
        except Empty:
            return None

    def peek(self, timeout: float | None = None) -> Any:
        if self._peeked is None:
            item = self.next_item(timeout)
            if item is KEEPALIVE:
                return KEEPALIVE
            self._peeked = item
        return self._peeked

    def opening_failure(self, header_wait: float) -> GLMProxyError | None:
        """For a streaming view: the error to answer with a real HTTP status, if any.

        Waits while the job queues for an account (so a 429 at the deadline
        keeps its status), then up to ``header_wait`` seconds for the upstream;
        a failure by then is returned (and the job cancelled). None means:
        commit to ``200 text/event-stream``; later failures go in the stream.
        """
        self.wait_leased()
        first = self.peek(timeout=header_wait)
        if isinstance(first, Failure):
            self.cancel()
            return first.error
        return None

    def items(self) -> Iterator[Any]:
        """Every item until the end (no keep-alives): the non-stream path."""
        while True:
            item = self.next_item()
            yield item
            if isinstance(item, End | Failure):
                return

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
        self._cancelled = True
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
            and (state.translator is None or state.translator.conversation_id is None)
        )

    # -- producer side -------------------------------------------------------

    def _run(self) -> None:
        try:
            if self.request.before_lease is not None:
                self.request.before_lease()
            self._attempt_until_done()
        except GLMProxyError as exc:
            self.queue.put(Failure(exc))
        except gevent.GreenletExit:
            raise
        except Exception:  # noqa: BLE001 - a bug must not hang the client
            log.exception("answer job crashed")
            self.queue.put(Failure(GLMProxyError("internal error while producing the answer")))
        finally:
            self._leased.set()
            if self.request.on_end is not None:
                try:
                    self.request.on_end()
                except Exception:  # noqa: BLE001 - cleanup must not mask the answer
                    log.exception("answer job cleanup failed")

    def _attempt_until_done(self) -> None:
        s = self.services.settings
        tried: set[str] = set()
        last_error: GLMProxyError | None = None
        while True:
            if self._cancelled:
                raise gevent.GreenletExit  # the client is gone: no further attempt
            if self.attempts > s.glm_retries:
                raise last_error or UpstreamRetryable("the upstream kept failing")
            try:
                lease = self.services.pool.lease(
                    self.candidates,
                    exclude=tried if len(tried) < len(self.candidates) else (),
                    require=self.request.pinned_account,
                )
            except GLMProxyError:
                if last_error is not None:
                    raise last_error from None
                raise
            account = lease.account
            self.account = account
            self._leased.set()
            self.attempts += 1
            state = self._attempt = _AttemptState()
            succeeded = False
            delay = 0.0
            try:
                self._stream_once(account, state)
                self.services.pool.report_success(account)
                succeeded = True
            except RefreshTokenExpired as exc:
                self.services.pool.report_dead(account)
                self.services.upstream.invalidate(account)
                if state.committed:
                    raise
                pool = self.services.pool
                if self.request.pinned_account is not None:
                    raise pool.all_dead([account], exc) from None
                tried.add(account.fingerprint)
                if len(tried) >= len(self.candidates):
                    # A team caller's key is fine: a dead pool is a 503, not "log in again".
                    raise pool.all_dead(self.candidates, exc) from None
                last_error = exc
                self.attempts -= 1  # a dead account is not an attempt at this answer
            except UpstreamRetryable as exc:
                if not isinstance(exc, UpstreamBusy):
                    self.services.pool.report_failure(account, exc)
                if state.committed:
                    raise
                tried.add(account.fingerprint)
                last_error = exc
                if self.attempts > s.glm_retries:
                    raise
                delay = s.glm_retry_backoff * (2 ** (self.attempts - 1))
                log.info("retrying after %s on %s in %.2fs", exc.code, account, delay)
            finally:
                self._attempt = None
                # In its own greenlet: cancel() (client gone, or the view done with
                # the answer) must not cut the store I/O of cleanup and release short.
                gevent.spawn(self._finish_attempt, account, state, lease).join()
            if succeeded:
                # Only now: the lease is free before the client reads [DONE], so a
                # client that asks again right away finds its account available.
                self.queue.put(End(account))
                return
            # The backoff runs after the failed attempt's lease went back, so it
            # never holds an account another request could use meanwhile.
            gevent.sleep(delay)

    def _stream_once(self, account: Account, state: _AttemptState) -> None:
        upstream = self.services.upstream
        payload = self.request.build_payload(account)
        if self._cancelled:
            raise gevent.GreenletExit  # the client left while we prepared: ask nothing
        state.requested = True  # from here on the upstream may create a conversation
        response = upstream.open_stream(account, payload, referer=self.request.referer)
        state.response = response
        translator = Translator(self.request.translate_options)
        state.translator = translator
        decoder = SSEDecoder()
        for chunk in upstream.iter_stream(response):
            for event in decoder.feed(chunk):
                self._feed(translator, event, state)
        for event in decoder.finish():
            self._feed(translator, event, state)
        if not state.events:
            self._empty_stream()
        for delta in translator.finish():
            self._hand_over(delta, state)
        if not state.committed:
            self._commit(state)  # a buffered answer, complete: hand it over

    def _feed(self, translator: Translator, event: ServerSentEvent, state: _AttemptState) -> None:
        if not event.data or event.data == "[DONE]":
            return
        state.events += 1
        for delta in translator.feed(decode_json(event)):
            self._hand_over(delta, state)
        if self._cancelled:
            # cancel() let us read on only to learn the conversation id (see cancel)
            raise gevent.GreenletExit

    def _empty_stream(self) -> None:
        """A zero-byte answer: the upstream's reply to an unknown conversation id."""
        if self.request.continue_conversation:
            raise NotFound(
                f"conversation_id {self.request.continue_conversation!r} does not exist upstream "
                "(it may have been deleted).",
                param="conversation_id",
                code="conversation_not_found",
            )
        raise UpstreamRetryable("the upstream closed the answer stream without sending anything")

    def _hand_over(self, delta: Delta, state: _AttemptState) -> None:
        """Queue a delta; the conversation id waits until real content commits the attempt.

        A buffered request holds every delta until the attempt has ended well.
        """
        if isinstance(delta, ConversationStarted):
            state.conversation_id = delta.conversation_id
            state.started = delta
            return
        if self.request.buffered and not state.committed:
            state.held.append(delta)
            return
        if not state.committed:
            self._commit(state)
        self.queue.put(delta)

    def _commit(self, state: _AttemptState) -> None:
        """This attempt's answer goes to the client: no retry from here on."""
        state.committed = True
        self.conversation_id = state.conversation_id
        if state.started is not None:
            self.queue.put(state.started)
        held, state.held = state.held, []
        for delta in held:
            self.queue.put(delta)

    def _finish_attempt(self, account: Account, state: _AttemptState, lease) -> None:
        try:
            self._cleanup(account, state)
        finally:
            lease.release()

    def _cleanup(self, account: Account, state: _AttemptState) -> None:
        if state.response is not None:
            state.response.close()
        conversation_id = state.conversation_id
        if not conversation_id and state.translator is not None:
            # The first event may already be an error: the id is known, the delta was not sent.
            conversation_id = state.translator.conversation_id
        if not conversation_id:
            return
        # protocol: an answer the client left unfinished is stopped upstream (stop_stream)
        stop_id = unfinished_history_id(state.translator)
        conversations = self.services.pool.conversations
        if conversation_id == self.request.continue_conversation:
            if state.committed:
                conversations.touch(conversation_id)  # the idle sweeper's clock restarts
            if stop_id:
                self.services.janitor.stop_later(account, stop_id)
            return
        s = self.services.settings
        keep = state.committed and (self.request.keep_conversation or not s.delete_conversations)
        if keep:
            conversations.remember(account, conversation_id, self.request.assistant_id)
            if stop_id:
                self.services.janitor.stop_later(account, stop_id)
            return
        self.services.janitor.delete_later(
            account, self.request.assistant_id, conversation_id, stop_history_id=stop_id
        )


def unfinished_history_id(translator: Translator | None) -> str | None:
    """The upstream answer id when the answer had started but not ended (protocol)."""
    if translator is None or translator.finished:
        return None
    return translator.history_id


@dataclass
class _AttemptState:
    requested: bool = False  # the stream request was sent (a conversation may exist)
    response: Any = None
    conversation_id: str | None = None
    started: ConversationStarted | None = None
    committed: bool = False
    held: list[Delta] = field(default_factory=list)  # a buffered request's answer so far
    events: int = 0
    translator: Translator | None = None
