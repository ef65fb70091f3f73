"""The streaming pump (``glm_proxy.streaming.pump.respond``) with a hand-fed job queue.

The job is a real ``AnswerJob`` whose producer never runs: the test puts the
items in its queue and iterates the WSGI body of the response ``respond()``
returns, as a server does, so batching, keep-alives, the error path and the
cleanup are seen exactly as the pump does them.
"""

from __future__ import annotations

import socket
import time

import gevent
import gevent.event
import orjson

from glm_proxy.errors import UpstreamError
from glm_proxy.observability.record import RequestRecord
from glm_proxy.protocol.events import ConversationStarted, Finished, TextDelta
from glm_proxy.protocol.formats.anthropic import MessagesWire
from glm_proxy.services.answer import AnswerJob, AnswerRequest
from glm_proxy.streaming.queue import Failure, JobDone
from tests.support.pump import HandFedJob, pump, wire


def test_waiting_items_go_out_in_one_write_and_end_with_done() -> None:
    job = HandFedJob()
    for item in (ConversationStarted("conv1", "m"), TextDelta("a"), TextDelta("b")):
        job.queue.put(item)
    fields = RequestRecord()
    gen = pump(job, wire(), 5, fields)
    first = next(gen)
    assert first.count(b"data: ") == 3  # role chunk + two text chunks, one write
    job.queue.put(Finished("stop"))
    job.queue.put(JobDone())
    last = next(gen)
    assert last.endswith(b"data: [DONE]\n\n") and b'"finish_reason":"stop"' in last
    assert list(gen) == []
    assert job.cancels == 1
    assert fields.usage["completion_tokens"] == 1 and fields.latency_to_end is not None


def test_silence_sends_keepalives_in_the_wire_format() -> None:
    job = HandFedJob()
    chat = pump(job, wire(), 0.01, RequestRecord())
    assert next(chat) == b": keep-alive\n\n"
    messages = MessagesWire(model="glm-4", prompt_text="hi", response_id=lambda: "msg_1")
    assert next(pump(job, messages, 0.01, RequestRecord())).startswith(b"event: ping\n")


def test_failure_is_one_error_event_and_the_end() -> None:
    job = HandFedJob()
    fields = RequestRecord()
    body = pump(job, wire(), 5, fields)
    # after the opening committed to the stream (a failure before it keeps its status)
    gevent.spawn_later(0.1, job.queue.put, Failure(UpstreamError("boom")))
    out = list(body)
    assert out == [b"data: " + orjson.dumps(UpstreamError("boom").to_dict()) + b"\n\n"]
    assert len(out) == 1 and b"[DONE]" not in out[0] and b"chat.completion.chunk" not in out[0]
    assert fields.error and job.cancels == 1


def test_end_without_deltas_still_opens_and_closes_the_answer() -> None:
    job = HandFedJob()
    job.queue.put(JobDone())
    messages = MessagesWire(model="glm-4", prompt_text="hi", response_id=lambda: "msg_1")
    (data,) = list(pump(job, messages, 5, RequestRecord()))
    names = [line[7:] for line in data.split(b"\n") if line.startswith(b"event: ")]
    assert names[0] == b"message_start" and names[-1] == b"message_stop"


def test_client_hangup_cancels_the_job() -> None:
    job = HandFedJob()
    job.queue.put(TextDelta("a"))
    gen = pump(job, wire(), 5, RequestRecord())
    next(gen)
    gen.close()  # what the WSGI server does when the client goes away
    assert job.cancels == 1


def test_a_slow_producer_is_not_waited_for_between_batches() -> None:
    job = HandFedJob()
    gen = pump(job, wire(), 5, RequestRecord())
    gevent.spawn_later(0.05, job.queue.put, TextDelta("late"))
    job.queue.put(TextDelta("early"))
    assert b"early" in next(gen)
    assert b"late" in next(gen)


def test_a_write_pending_past_the_stall_timeout_aborts_the_job_and_hangs_up() -> None:
    class Recording(HandFedJob):
        aborted_with: list = []

        def abort(self, error) -> None:
            self.aborted_with.append(error)

    job = Recording()
    job.queue.put(TextDelta("a"))
    server, client = socket.socketpair()
    try:
        gen = pump(job, wire(), 5, RequestRecord(), stall_timeout=0.2, client=server)
        next(gen)  # the server now "writes" this and never comes back for more
        deadline = time.monotonic() + 5
        while not job.aborted_with and time.monotonic() < deadline:
            gevent.sleep(0.05)
        assert [e.code for e in job.aborted_with] == ["client_stalled"]
        client.settimeout(2)
        assert client.recv(10) == b""  # the connection was shut down
        gen.close()
        assert job.cancels == 1
    finally:
        server.close()
        client.close()


def test_a_write_that_returns_in_time_is_not_a_stall() -> None:
    class Recording(HandFedJob):
        aborted_with: list = []

        def abort(self, error) -> None:
            self.aborted_with.append(error)

    job = Recording()
    gen = pump(job, wire(), 0.05, RequestRecord(), stall_timeout=0.2)
    for _ in range(12):  # 0.6 s of keep-alives, each written at once
        assert next(gen) == b": keep-alive\n\n"
    assert job.aborted_with == []


def test_the_opening_decision_is_made_once() -> None:
    """A view that asked first and then ``respond()`` must not wait the header time twice."""
    job = HandFedJob()
    job.wait_leased = lambda timeout=None: True  # type: ignore[method-assign]
    started = time.monotonic()
    assert job.opening_failure(0.2) is None  # nothing arrived in time: stream
    assert job.opening_failure(0.2) is None
    assert time.monotonic() - started < 0.35


def test_the_producer_runs_up_to_its_first_wait_before_start_returns() -> None:
    """The view builds its wire and response while the upstream works, not before asking it."""
    reached: list[str] = []
    blocked = gevent.event.Event()

    def before_lease() -> None:
        reached.append("producer")
        blocked.wait()  # the producer's first wait (here: instead of the account queue)

    request = AnswerRequest(assistant_id="a", build_payload=dict, before_lease=before_lease)
    job = AnswerJob(services=None, candidates=(), request=request).start()
    reached.append("caller")
    try:
        assert reached == ["producer", "caller"]
    finally:
        job._greenlet.kill()
