"""The streaming pump's test doubles: an ``AnswerJob`` fed by hand (its producer never runs),
``pump()`` (the body of ``respond()``'s streamed response, iterated as a WSGI server does) and
a chat wire."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from flask import Flask, Response, request

from glm_proxy.observability.record import RequestRecord
from glm_proxy.protocol.formats.openai import ChatWire
from glm_proxy.services.answer import AnswerJob
from glm_proxy.streaming.pump import respond


class HandFedJob(AnswerJob):
    def __init__(self) -> None:
        super().__init__(services=None, candidates=(), request=None)
        self.cancels = 0
        self.conversation_id = "conv1"
        self._leased.set()  # never in line for an account

    def cancel(self) -> None:
        self.cancels += 1


APP = Flask(__name__)


def pump(
    job: Any,
    wire: Any,
    keepalive_interval: float,
    record: RequestRecord,
    *,
    stall_timeout: float = 0,
    client: socket.socket | None = None,
    header_wait: float = 0.01,
) -> Iterator[bytes]:
    """The body of ``respond()``'s streamed response, iterated as a WSGI server does."""
    settings = SimpleNamespace(
        keepalive_interval=keepalive_interval,
        stream_stall_timeout=stall_timeout,
        stream_header_wait=header_wait,
        stream_send_buffer=0,
    )
    overrides = {"gunicorn.socket": client} if client is not None else {}
    with APP.test_request_context("/", method="POST", environ_overrides=overrides):
        response = respond(
            job,
            wire,
            stream=True,
            settings=settings,  # type: ignore[arg-type]
            record=record,
            error_response=lambda error: Response(str(error), status=error.status),
        )
        environ = request.environ
    return response(environ, lambda status, headers, exc_info=None: None)


def wire() -> ChatWire:
    return ChatWire(model="glm-4", created=1, prompt_text="hi", response_id=lambda: "c1")
