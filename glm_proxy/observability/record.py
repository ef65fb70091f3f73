"""The per-request record: what a request leaves for the request log, the metrics
and the per-key usage counters.

One typed object per request instead of a string-keyed dict: the app's
before-request step makes it (``glm_proxy.http.plumbing.request_record``), the views say
what was asked (model, stream, caller), the streaming pump adds how it ended
(account, usage, error), and the response's close callbacks read it: the
per-key limits (``glm_proxy.access.limits``) count usage and errors, the
request log prints one line, the metrics count error codes. A field nobody set
stays ``None`` and is logged as ``-``. The request's id is in every response's
head and in its log line, so a caller can point at the line that tells what
happened.
"""

from __future__ import annotations

import os
import re
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CURRENT_REQUEST_ID", "RequestRecord", "request_id_for"]

# The id of the request this code runs for: set on arrival (``glm_proxy.http.plumbing``) and
# carried into the greenlets an answer spawns (``AnswerJob.start``), so that every
# log line written for the request names it (``glm_proxy.observability.logs``).
CURRENT_REQUEST_ID: ContextVar[str | None] = ContextVar("glm_proxy_request_id", default=None)

# What an id set by a front proxy may look like (Nginx's ``$request_id`` is 32 hex
# digits): it is echoed to the caller and written in the log, so nothing else passes.
_GIVEN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def request_id_for(given: str | None) -> str:
    """The request's id: the one a front proxy set (``X-Request-Id``) if it is a plain
    token of up to 128 characters, else a new ``req_`` id."""
    if given and _GIVEN_ID.fullmatch(given):
        return given
    return "req_" + os.urandom(16).hex()  # as random as uuid4, a quarter of the time


@dataclass(slots=True)
class RequestRecord:
    started: float = field(default_factory=time.perf_counter)  # perf_counter at arrival
    # Sent back as ``X-Request-Id`` (and ``request-id`` on Anthropic routes), logged.
    request_id: str = field(default_factory=lambda: request_id_for(None))
    model: str | None = None  # the model the request asked for
    stream: bool | None = None  # whether the answer is an event stream
    caller: str | None = None  # ``Caller.label``: log-safe, never a secret
    account: str | None = None  # fingerprint of the account that answered
    usage: dict[str, Any] | None = None  # the answer's usage, in OpenAI terms
    error: str | None = None  # error code of a failure after the status was sent
    latency_to_end: float | None = None  # seconds from the pump's start to the answer's end
    status: int | None = None  # a status decided after the after-request hooks (a stream's)

    def note_account(self, account: Any) -> None:
        """The account that answered (an ``Account``, or None before any lease): its fingerprint."""
        if account is not None:
            self.account = account.fingerprint

    def describe(self, *, model: str, stream: bool, caller: str) -> None:
        """What the request asked for and who asked (set by the view once it knows)."""
        self.model, self.stream, self.caller = model, stream, caller
