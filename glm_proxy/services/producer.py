"""One attempt at an answer on one leased account: the producer side of ``AnswerJob``.

An ``Attempt`` sends the request, decodes the upstream SSE, translates it to
deltas, runs them through the request's answer filters, and hands them to the
job's queue. Until it hands over the first delta the attempt is not
*committed* and may still be retried (``services.retry``); a buffered
(non-stream) request holds every delta until the attempt ended well.

Re-ask: when the first try's filter ends with ``Reask`` and nothing was handed
over, the attempt asks once more in the same upstream conversation (same
account, same lease) with the correction as new user text, and a filter built
with ``final=True``; the first try's output is discarded.

``finish()`` closes the upstream response and deletes (or keeps) the
conversation; the job runs it on every path. A worker killed before that
never runs it: the conversation's journal entry (``store.journal``), written
the moment its id is known and before anything reaches the client, lets the
recovery sweep delete it later.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

import gevent
import orjson

from glm_proxy.accounts import Account
from glm_proxy.errors import NotFound, UpstreamError, UpstreamRetryable
from glm_proxy.protocol.events import ConversationStarted, Delta, Finished
from glm_proxy.protocol.parsers import DeltaFilter, Reask
from glm_proxy.protocol.snapshots import SnapshotParser
from glm_proxy.protocol.sse import ServerSentEvent, SSEDecoder, decode_json
from glm_proxy.protocol.translate import Translator
from glm_proxy.store.journal import Entry

log = logging.getLogger(__name__)

__all__ = ["Attempt", "Job"]


class Job(Protocol):
    """What an attempt uses of its ``AnswerJob`` (a protocol: no import back)."""

    request: Any  # AnswerRequest
    services: Any
    conversation_id: str | None
    stop_upstream: bool
    cancelled: bool  # the client went away: the producer stops at the next step

    def put(self, item: Any) -> None: ...


class Attempt:
    """One try: request, translate, filter, hand over; then ``finish()`` cleans up."""

    def __init__(self, job: Job, account: Account, lease: Any = None) -> None:
        self.job = job
        self.account = account
        self.lease = lease  # the owning lease, named in the conversation's journal entry
        self.journalled: str | None = None  # the conversation id written to the journal
        self.journal_due: float | None = None  # the due time its entry was written with
        self.requested = False  # the stream request was sent (a conversation may exist)
        self.response: Any = None
        self.conversation_id: str | None = None
        self.started: ConversationStarted | None = None
        self.committed = False
        self.held: list[Delta] = []  # a buffered request's answer so far
        self.events = 0
        self.translator: Translator | None = None
        self.snapshots: SnapshotParser | None = None  # this read's events, as JSON (_read)
        self.filter: DeltaFilter | None = None
        self.reasked = False
        self.answered = False  # the filter ended the answer before the upstream did
        self.completed = False  # the upstream answer ended normally

    def upstream_conversation_id(self) -> str | None:
        """The conversation the upstream named, even if no delta was handed over yet."""
        if self.conversation_id:
            return self.conversation_id
        return self.translator.conversation_id if self.translator is not None else None

    # -- producing -----------------------------------------------------------

    def run(self) -> None:
        request = self.job.request
        payload = request.build_payload(self.account)
        if self.job.cancelled:
            raise gevent.GreenletExit  # the client left while we prepared: ask nothing
        self.requested = True  # from here on the upstream may create a conversation
        final = request.make_filter is None or request.build_followup is None
        reask = self._read(payload, final)
        if reask is not None:
            self._reask(reask)
        self.completed = True
        if not self.committed:
            self._commit()  # a buffered (or fully held) answer, complete: hand it over

    def _reask(self, reask: Reask) -> None:
        """Prompt once more in the same conversation; the first try never reached the client."""
        request = self.job.request
        if self.committed:
            # The filter let part of the answer through, then asked to redo it.
            raise UpstreamError(
                "the model's answer could not be used and was already partly sent"
                + (f" ({reask.reason})" if reask.reason else "")
            )
        conversation_id = self.upstream_conversation_id()
        if not conversation_id:
            raise UpstreamError("the upstream did not name the conversation to continue")
        log.info("re-asking in the same conversation: %s", reask.reason or "filter")
        self.reasked = True
        self.held = []
        self.started = None
        if self.response is not None:
            self.response.close()
        payload = request.build_followup(self.account, conversation_id, reask.text)
        if self._read(payload, final=True) is not None:
            raise UpstreamError("the model's answer could not be used even after a correction")

    def _read(self, payload: dict[str, Any], final: bool) -> Reask | None:
        """Stream one upstream answer through translator and filter; a ``Reask`` if asked."""
        job = self.job
        upstream = job.services.upstream
        make_filter = job.request.make_filter
        self.filter = make_filter(final) if make_filter is not None else None
        self.events = 0
        response = upstream.open_stream(self.account, payload, referer=job.request.referer)
        self.response = response
        translator = Translator(job.request.translate_options)
        self.translator = translator
        decoder = SSEDecoder()
        self.snapshots = SnapshotParser()
        self.answered = False
        for chunk in upstream.iter_stream(response):
            for event in decoder.feed(chunk):
                self._feed(translator, event)
            if self.answered:
                break  # a filter ended the answer (stop string, length): read no further
        else:
            for event in decoder.finish():
                self._feed(translator, event)
        if not self.events:
            self._empty_stream()
        for delta in translator.finish():
            self._hand_over(delta)
        if self.filter is None:
            return None
        for item in self.filter.finish():
            if isinstance(item, Reask):
                if final:
                    raise UpstreamError("an answer filter asked to re-ask on the final try")
                return item
            self._deliver(item)
        return None

    def _feed(self, translator: Translator, event: ServerSentEvent) -> None:
        raw = event.raw
        if not raw or raw == b"[DONE]":
            return
        self.events += 1
        snapshots = self.snapshots
        assert snapshots is not None, "set by _read before any event"
        try:
            parsed = snapshots.feed(raw)
        except orjson.JSONDecodeError:
            parsed = decode_json(event)  # the lenient parse, or the protocol error
        growth = snapshots.growth  # the last event with one string grown: a cheaper feed
        if growth is None:
            deltas = translator.feed(parsed)
        else:  # the event itself is built only if the translator needs it
            deltas = translator.feed_grown(snapshots.current, growth)
            # The event's bytes are a whole copy of the answer: a producer that waits
            # below for a client that stopped reading must not keep them alive.
            snapshots.release()
            growth = None
        # Nor the event (a whole snapshot, in bytes and parsed): only its deltas wait.
        event.raw = raw = b""
        parsed = None
        for delta in deltas:
            self._hand_over(delta)
        if self.job.cancelled:
            # cancel() let us read on only to learn the conversation id (see AnswerJob.cancel)
            raise gevent.GreenletExit

    def _empty_stream(self) -> None:
        """A zero-byte answer: the upstream's reply to an unknown conversation id."""
        continued = self.job.request.continue_conversation
        if continued:
            raise NotFound(
                f"conversation_id {continued!r} does not exist upstream "
                "(it may have been deleted).",
                param="conversation_id",
                code="conversation_not_found",
            )
        raise UpstreamRetryable("the upstream closed the answer stream without sending anything")

    def _hand_over(self, delta: Delta) -> None:
        """A translated delta: the conversation id is noted, the rest goes through the filter."""
        if isinstance(delta, ConversationStarted):
            self.conversation_id = delta.conversation_id
            self.started = delta
            if self.journalled != delta.conversation_id:
                self._journal(delta.conversation_id)
            return
        if self.filter is None:
            self._deliver(delta)
            return
        for out in self.filter.feed(delta):
            self._deliver(out)
            if isinstance(out, Finished):
                self.answered = True

    def _deliver(self, delta: Delta) -> None:
        """Queue a delta for the client; a buffered request holds all until the attempt ended."""
        if self.job.request.buffered and not self.committed:
            self.held.append(delta)
            return
        if not self.committed:
            self._commit()
        self.job.put(delta)

    def _commit(self) -> None:
        """This attempt's answer goes to the client: no retry from here on."""
        self.committed = True
        job = self.job
        job.conversation_id = self.conversation_id
        if self.started is not None:
            job.put(self.started)
        held, self.held = self.held, []
        for delta in held:
            job.put(delta)

    def _journal(self, conversation_id: str) -> None:
        """Write the new conversation to the crash-safe journal, before the client sees it."""
        services = self.job.services
        journal = getattr(services, "journal", None)
        if journal is None or conversation_id == self.job.request.continue_conversation:
            return  # a continued conversation is the caller's (kept: it has its own record)
        now = time.time()
        slot = getattr(self.lease, "slot", None)
        pool = services.pool
        due = now + services.settings.lease_ttl
        try:
            journal.record(
                Entry(
                    conversation_id=conversation_id,
                    account=self.account.fingerprint,
                    assistant_id=self.job.request.assistant_id,
                    created=now,
                    lease=getattr(slot, "member", "") or "",
                    due=due,
                    token=""
                    if pool.is_pooled(self.account.fingerprint)
                    else self.account.refresh_token,
                )
            )
            self.journalled, self.journal_due = conversation_id, due
        except Exception as exc:  # noqa: BLE001 - the answer goes on; cleanup still deletes
            log.warning(
                "could not journal conversation %s: %s",
                conversation_id,
                getattr(exc, "code", None) or type(exc).__name__,
            )

    def _unjournal(self, conversation_id: str) -> None:
        """The conversation is kept: its own record (``pool.conversations``) takes over."""
        journal = getattr(self.job.services, "journal", None)
        if journal is None or self.journalled != conversation_id:
            return
        try:
            journal.remove(conversation_id)
        except Exception as exc:  # noqa: BLE001 - the recovery sweep finds it anyway
            log.warning("conversation journal update failed: %s", type(exc).__name__)

    # -- cleanup -------------------------------------------------------------

    def _stop_upstream(self) -> None:
        """Ask the upstream to stop generating (when its client offers that call)."""
        stop = getattr(self.job.services.upstream, "stop_stream", None)
        if not getattr(self.job.services.settings, "glm_stop_on_disconnect", True):
            return  # protocol: the 2025 upstream has no stop call
        history_id = self.started.message_id if self.started is not None else None
        if history_id is None and self.translator is not None:
            history_id = getattr(self.translator, "message_id", None)
        if stop is None or not history_id:
            return
        try:
            stop(self.account, history_id)
        except Exception as exc:  # noqa: BLE001 - closing the stream still ends it
            log.info("stopping the upstream answer failed: %s", type(exc).__name__)

    def finish(self, lease: Any) -> None:
        """Close the upstream response, delete or keep the conversation, release the lease.

        The job runs it in a greenlet of its own, which a client's disconnect does
        not kill: the lease is released right here, without one more greenlet.
        """
        try:
            self._cleanup()
        finally:
            lease.release(in_place=True)

    def _cleanup(self) -> None:
        if self.response is not None:
            if (self.job.stop_upstream and not self.completed) or self.answered:
                # A stop string or the length limit ended the answer early: the
                # upstream would go on generating, keeping the account busy.
                self._stop_upstream()
            self.response.close()
        # The first event may already be an error: the id is known, the delta was not sent.
        conversation_id = self.upstream_conversation_id()
        if not conversation_id:
            return
        job = self.job
        services = job.services
        # protocol: an answer the client left unfinished is stopped upstream (stop_stream),
        # unless abort() already stopped it above
        stop_id = None if job.stop_upstream else unfinished_history_id(self.translator)
        conversations = services.pool.conversations
        if conversation_id == job.request.continue_conversation:
            if self.committed:
                conversations.touch(conversation_id)  # the idle sweeper's clock restarts
            if stop_id:
                services.janitor.stop_later(self.account, stop_id)
            return
        keep = self.committed and (
            job.request.keep_conversation or not services.settings.delete_conversations
        )
        if keep:
            conversations.remember(
                self.account, conversation_id, job.request.assistant_id, owner=job.request.owner
            )
            self._unjournal(conversation_id)
            if stop_id:
                services.janitor.stop_later(self.account, stop_id)
            return
        services.janitor.delete_later(
            self.account,
            job.request.assistant_id,
            conversation_id,
            stop_history_id=stop_id,
            journalled=self.journalled == conversation_id,  # held until the delete ends
            journal_due=self.journal_due,
        )


def unfinished_history_id(translator: Translator | None) -> str | None:
    """The upstream answer id when the answer had started but not ended (protocol)."""
    if translator is None or translator.finished:
        return None
    return translator.history_id
