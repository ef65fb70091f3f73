"""``n`` > 1 (``glm_proxy.streaming.choice_jobs``): n hand-fed answer jobs through the real pump.

The jobs are real ``AnswerJob`` objects whose producers never run; each test
puts items in their queues, so what the pump writes for interleaved choices,
how many run at once, and how a failure or a hang-up cancels every choice
are seen exactly as a request sees them.
"""

from __future__ import annotations

import gevent
import orjson
import pytest

from glm_proxy.errors import UpstreamError
from glm_proxy.observability.record import RequestRecord
from glm_proxy.protocol.events import Finished, ReasoningDelta, TextDelta
from glm_proxy.protocol.formats.openai import ChatWire
from glm_proxy.protocol.usage import estimate_tokens
from glm_proxy.streaming.choice_jobs import Choice, ChoiceJobs
from glm_proxy.streaming.choices_wire import ChoicesWire
from glm_proxy.streaming.pump import collect
from glm_proxy.streaming.queue import Failure, JobDone
from tests.support.pump import pump


class HandFedJob:
    """Stands in for ``AnswerJob``: the test fills ``queue``; ``items`` drains it."""

    def __init__(self) -> None:
        from gevent.queue import Queue

        self.queue: Queue = Queue()
        self.account = None
        self.cancelled = 0

    def items(self):
        while True:
            item = self.queue.get()
            yield item
            if isinstance(item, JobDone | Failure):
                return

    def wait_leased(self, timeout=None) -> bool:
        return True

    def cancel(self) -> None:
        self.cancelled += 1

    def abort(self, error) -> None:
        self.queue.put(Failure(error))


def make(n: int, parallel: int) -> tuple[ChoiceJobs, list[HandFedJob], ChoicesWire]:
    started: list[HandFedJob] = []

    def start_job() -> HandFedJob:
        job = HandFedJob()
        started.append(job)
        return job

    jobs = ChoiceJobs(start_job, n, parallel).start()

    def make_wire(index: int) -> ChatWire:
        return ChatWire(
            model="glm-4", created=1, prompt_text="question", response_id=lambda: "c1", index=index
        )

    return jobs, started, ChoicesWire(make_wire, n, include_usage=True)


def answer(job: HandFedJob, text: str) -> None:
    for item in (TextDelta(text), Finished("stop"), JobDone()):
        job.queue.put(item)


def chunks(data: bytes) -> list[dict]:
    lines = [line[6:] for line in data.split(b"\n") if line.startswith(b"data: ")]
    return [orjson.loads(line) for line in lines if line != b"[DONE]"]


def test_choices_run_at_most_parallel_at_once_and_the_next_starts_when_one_ends() -> None:
    jobs, started, _ = make(n=3, parallel=2)
    assert len(started) == 2
    answer(started[1], "b")
    gevent.sleep(0.01)
    assert len(started) == 3  # the third choice took the slot the second one freed
    answer(started[0], "a")
    answer(started[2], "c")
    items = list(jobs.deltas())
    assert sorted({i.index for i in items}) == [0, 1, 2]
    assert [i for i in items if isinstance(i.delta, TextDelta) and i.index == 2] == [
        Choice(2, TextDelta("c"))
    ]


def test_streamed_choices_interleave_each_with_its_index() -> None:
    jobs, started, wire = make(n=2, parallel=2)
    started[0].queue.put(ReasoningDelta("r"))
    started[1].queue.put(TextDelta("B1"))
    started[0].queue.put(TextDelta("A1"))
    answer(started[1], "B2")
    answer(started[0], "A2")
    fields = RequestRecord()
    data = b"".join(pump(jobs, wire, 5, fields))
    assert data.endswith(b"data: [DONE]\n\n") and data.count(b"[DONE]") == 1
    out = chunks(data)
    usage = out.pop()
    assert usage["choices"] == []
    assert usage["usage"]["prompt_tokens"] == estimate_tokens("question")  # counted once
    expected = estimate_tokens("A1A2") + estimate_tokens("r") + estimate_tokens("B1B2")
    assert usage["usage"]["completion_tokens"] == expected
    assert {c["id"] for c in out} == {"c1"}
    for index, text in ((0, "A1A2"), (1, "B1B2")):
        mine = [c["choices"][0] for c in out if c["choices"][0]["index"] == index]
        assert mine[0]["delta"]["role"] == "assistant"
        assert "".join(c["delta"].get("content") or "" for c in mine) == text
        assert mine[-1]["finish_reason"] == "stop"
    assert fields.usage == usage["usage"]
    assert all(job.cancelled for job in started)


def test_non_stream_lists_the_choices_in_index_order() -> None:
    jobs, started, wire = make(n=3, parallel=3)
    answer(started[2], "third")
    answer(started[0], "first")
    answer(started[1], "second")
    body = collect(jobs, wire, RequestRecord())
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert [c["message"]["content"] for c in body["choices"]] == ["first", "second", "third"]
    assert body["usage"]["completion_tokens"] == sum(
        estimate_tokens(t) for t in ("first", "second", "third")
    )


def test_one_failing_choice_fails_the_request_and_cancels_the_others() -> None:
    jobs, started, wire = make(n=3, parallel=3)
    started[0].queue.put(TextDelta("partial"))
    started[1].queue.put(Failure(UpstreamError("boom")))
    with pytest.raises(UpstreamError):
        collect(jobs, wire, RequestRecord())
    assert all(job.cancelled for job in started)


def test_a_failure_before_any_output_keeps_its_status() -> None:
    jobs, started, _ = make(n=2, parallel=2)
    started[1].queue.put(Failure(UpstreamError("boom")))
    error = jobs.opening_failure(1.0)
    assert isinstance(error, UpstreamError)
    assert all(job.cancelled for job in started)


def test_a_choice_that_cannot_start_fails_the_request_instead_of_hanging() -> None:
    calls = []

    def start_job() -> HandFedJob:
        if calls:
            raise UpstreamError("cannot start")
        calls.append(1)
        return HandFedJob()

    jobs = ChoiceJobs(start_job, 2, parallel=1).start()
    answer(jobs.jobs[0], "a")
    with pytest.raises(UpstreamError, match="cannot start"):
        list(jobs.deltas())


def test_client_hangup_cancels_every_choice() -> None:
    jobs, started, wire = make(n=2, parallel=2)
    started[0].queue.put(TextDelta("a"))
    gen = pump(jobs, wire, 5, RequestRecord())
    assert next(gen)
    gen.close()
    assert all(job.cancelled for job in started)


def test_a_client_that_stops_reading_stops_the_choices_backpressure() -> None:
    started: list[HandFedJob] = []

    def start_job() -> HandFedJob:
        started.append(HandFedJob())
        return started[-1]

    jobs = ChoiceJobs(start_job, 2, parallel=2, queue_items=2).start()
    for i in range(10):
        started[0].queue.put(TextDelta(str(i)))
    gevent.sleep(0.05)
    assert jobs.queue.qsize() == 2  # the forwarder waits instead of buffering the answer
    assert started[0].queue.qsize() == 7  # so the job's own bounded queue fills up
    jobs.cancel()


def test_abort_ends_every_choice_with_the_error() -> None:
    jobs, started, wire = make(n=2, parallel=2)
    started[0].queue.put(TextDelta("a"))
    jobs.abort(UpstreamError("stalled"))
    with pytest.raises(UpstreamError, match="stalled"):
        collect(jobs, wire, RequestRecord())
