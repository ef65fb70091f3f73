"""The pump writing chunk frames itself, and the producer writing through the pump's sink.

The job is a real ``AnswerJob`` whose producer never runs: the test plays the
producer (``put``/``flush`` in a greenlet) and reads the raw chunked bytes
from the other end of a (gevent) socket pair, so order, framing, keep-alives and a
failed connection are seen exactly as a client would see them.
"""

from __future__ import annotations

import errno

import gevent
import pytest
from gevent import socket

from glm_proxy.api import _stream_state
from glm_proxy.api._streaming import _pump
from glm_proxy.observability.record import RequestRecord
from glm_proxy.protocol.events import Finished, TextDelta
from glm_proxy.services.aborts import ClientGone
from glm_proxy.services.job_queue import JobDone
from tests.support.pump import HandFedJob, RecordingSocket, wire


def read_chunks(sock: socket.socket, until: bytes, timeout: float = 5.0) -> list[bytes]:
    """Chunk payloads from raw chunked bytes, until one contains ``until``."""
    sock.settimeout(timeout)
    buf, chunks = b"", []
    while not chunks or until not in chunks[-1]:
        while b"\r\n" not in buf:
            buf += sock.recv(65536)
        line, _, buf = buf.partition(b"\r\n")
        size = int(line, 16)
        while len(buf) < size + 2:
            buf += sock.recv(65536)
        assert buf[size : size + 2] == b"\r\n", "a chunk is not followed by CRLF"
        chunks.append(buf[:size])
        buf = buf[size + 2 :]
    return chunks


@pytest.fixture
def pair():
    server, client = socket.socketpair()
    yield server, client
    server.close()
    client.close()


def start(job, server, keepalive: float = 5.0, record: RequestRecord | None = None):
    gen = _pump(job, wire(), keepalive, record or RequestRecord(), 5.0, server, server)
    assert next(gen) == b""  # the head is the server's: the pump yields nothing else
    runner = gevent.spawn(list, gen)
    return runner


def test_producer_writes_through_the_sink_in_order_and_the_pump_ends_the_answer(pair):
    server, client = pair
    job = HandFedJob()
    job.queue.put(TextDelta("a"))  # before the sink: the pump writes it (and opens)
    runner = start(job, server)
    first = read_chunks(client, b'"a"')
    assert b'"role":"assistant"' in first[0] and b'"content":"a"' in first[-1]
    gevent.sleep(0.01)
    assert job.sink is not None  # lent while the pump waits on an empty queue

    job.put(TextDelta("b"))
    job.put(TextDelta("c"))
    assert job.queue.qsize() == 0  # kept for flush(), not queued
    job.flush()  # the producer writes both, in one chunk
    (both,) = read_chunks(client, b'"c"')
    assert both.index(b'"content":"b"') < both.index(b'"content":"c"')

    job.put(Finished("stop"))
    job._put_final(JobDone())  # the last item always goes through the queue
    rest = read_chunks(client, b"[DONE]")
    assert b'"finish_reason":"stop"' in b"".join(rest)
    runner.join(timeout=5)
    assert runner.successful() and job.sink is None


def test_a_failed_producer_write_is_client_gone_and_the_pump_hangs_up(pair):
    server, client = pair
    job = HandFedJob()
    job.queue.put(TextDelta("a"))
    record = RequestRecord()
    runner = start(job, server, record=record)
    read_chunks(client, b'"a"')
    gevent.sleep(0.01)
    client.close()  # the client hangs up
    job.put(TextDelta("b" * 300_000))  # more than the kernel buffers: the write fails
    with pytest.raises(ClientGone):
        job.flush()
    with pytest.raises(ClientGone):  # and stays failed
        job.sink([TextDelta("c")])
    job._put_final(JobDone())
    runner.join(timeout=5)
    assert isinstance(runner.exception, OSError) and runner.exception.errno == errno.EPIPE
    assert record.error == "client_disconnected"
    assert job.cancels == 1


def test_no_keepalive_is_written_while_the_producer_is_writing(pair, monkeypatch):
    server, client = pair
    job = HandFedJob()
    job.queue.put(TextDelta("a"))
    runner = start(job, server, keepalive=0.05)
    read_chunks(client, b'"a"')
    gevent.sleep(0.01)
    sink = job.sink
    writes: list[bytes] = []
    real_chunk, real_sender = _stream_state.send_chunk, _stream_state.chunk_sender

    def slow_chunk(sock, data, head=b"", tail=b""):
        writes.append(data)
        real_chunk(sock, data, head, tail)

    def slow_sender(sock):
        send_data = real_sender(sock)

        def send(data):
            writes.append(data)
            if b'"content":"b"' in data:
                gevent.sleep(0.3)  # several keep-alive intervals inside one write
            send_data(data)

        return send

    monkeypatch.setattr(_stream_state, "send_chunk", slow_chunk)
    monkeypatch.setattr(_stream_state, "chunk_sender", slow_sender)
    sink.__self__._send_data = None  # the next write asks for its sender again (patched)
    sink([TextDelta("b")])
    assert any(b'"content":"b"' in w for w in writes)  # the slow write did happen
    assert [w for w in writes if w.startswith(b":")] == []
    job._put_final(JobDone())
    chunks = read_chunks(client, b"[DONE]")
    assert not any(c.startswith(b":") for c in chunks[: len(chunks) - 1] if b'"b"' in c)
    runner.join(timeout=5)
    assert runner.successful()


def test_the_sink_is_not_lent_before_the_answer_opens(pair):
    server, client = pair
    job = HandFedJob()
    runner = start(job, server)
    gevent.sleep(0.05)
    assert job.sink is None  # nothing written yet: the pump decides the opening
    job.put(TextDelta("a"))
    job.flush()
    job._put_final(JobDone())
    chunks = read_chunks(client, b"[DONE]")
    assert b'"role":"assistant"' in chunks[0]
    runner.join(timeout=5)
    assert runner.successful()


class ServerResponse:
    """The part of gunicorn's response object that ``take_head`` uses."""

    def __init__(self, *, chunked: bool = True, headers_sent: bool = False) -> None:
        self.status = "200 OK"
        self.headers = [("Content-Type", "text/event-stream"), ("X-Request-Id", "req_1")]
        self.chunked = chunked
        self.headers_sent = headers_sent

    def default_headers(self) -> list[str]:
        return ["HTTP/1.1 200 OK\r\n", "Connection: keep-alive\r\n"]

    def start_response(self, status, headers, exc_info=None):  # bound: take_head's way in
        raise AssertionError("already called by the server")


def test_the_head_goes_out_with_the_first_chunk_in_one_write():
    sock, response = RecordingSocket(), ServerResponse()
    job = HandFedJob()
    job.queue.put(TextDelta("a"))
    gen = _pump(job, wire(), 5.0, RequestRecord(), 5.0, sock, sock, response.start_response)
    runner = gevent.spawn(list, gen)
    gevent.sleep(0.05)
    assert response.headers_sent  # the server will not send it again
    first = sock.sends[0]
    head, _, body = first.partition(b"\r\n\r\n")
    assert head.split(b"\r\n") == [
        b"HTTP/1.1 200 OK",
        b"Connection: keep-alive",
        b"Content-Type: text/event-stream",
        b"X-Request-Id: req_1",
    ]
    assert b'"content":"a"' in body and body.endswith(b"\r\n")  # a whole chunk frame
    job._put_final(JobDone())
    runner.join(timeout=5)
    assert runner.successful() and len(sock.sends) == 2


def test_the_head_goes_out_alone_at_once_when_nothing_is_ready():
    sock, response = RecordingSocket(), ServerResponse()
    job = HandFedJob()
    gen = _pump(job, wire(), 5.0, RequestRecord(), 5.0, sock, sock, response.start_response)
    runner = gevent.spawn(list, gen)
    gevent.sleep(0.05)
    assert sock.sends == [
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n"
        b"Content-Type: text/event-stream\r\nX-Request-Id: req_1\r\n\r\n"
    ]
    job.queue.put(TextDelta("a"))
    job._put_final(JobDone())
    runner.join(timeout=5)
    assert runner.successful()
    assert all(not s.startswith(b"HTTP/") for s in sock.sends[1:])
    size, _, rest = sock.sends[1].partition(b"\r\n")
    assert int(size, 16) == len(rest) - 2 and b'"content":"a"' in rest  # a chunk frame only


@pytest.mark.parametrize(
    "start_response",
    [
        None,
        lambda status, headers, exc_info=None: None,  # not gunicorn's
        ServerResponse(chunked=False).start_response,  # a Content-Length body
        ServerResponse(headers_sent=True).start_response,
    ],
)
def test_the_server_sends_its_own_head_when_the_pump_cannot(start_response):
    sock = RecordingSocket()
    job = HandFedJob()
    job.queue.put(TextDelta("a"))
    gen = _pump(job, wire(), 5.0, RequestRecord(), 5.0, sock, sock, start_response)
    assert next(gen) == b""  # the server's write of nothing: it sends its head
    assert sock.sends == []
    job._put_final(JobDone())
    list(gen)
    assert not any(s.startswith(b"HTTP/") for s in sock.sends)
