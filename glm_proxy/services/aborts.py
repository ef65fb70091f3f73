"""Why the service itself ends an answer early: a client that stopped reading, a restart.

Both are raised *into* an answer's producer (``AnswerJob.abort``), so they
take the same road as any upstream failure: the attempt's cleanup stops the
upstream answer, closes the stream and deletes the conversation; the client
gets the error as its HTTP status (nothing sent yet) or as the final error
event of the stream.
"""

from __future__ import annotations

from glm_proxy.errors import GLMProxyError, ServiceUnavailable

__all__ = ["ClientGone", "ClientStalled", "ServerRestarting"]


class ClientStalled(GLMProxyError):
    """The client stopped reading for ``STREAM_STALL_TIMEOUT``; nobody is left to tell."""

    status = 408
    openai_type = "timeout_error"
    code = "client_stalled"


class ClientGone(GLMProxyError):
    """The client hung up before its answer began: nobody is left to tell.

    Raised into the producer of a job still waiting in line for an account
    when its client's connection closes (``glm_proxy.streaming.line_watch``).
    """

    status = 400
    openai_type = "invalid_request_error"
    code = "client_disconnected"


class ServerRestarting(ServiceUnavailable):
    """The server is shutting down (SIGTERM): the client should retry, on another instance.

    ``stream_done``: a stream ends with this error event and then its normal end
    marker (``data: [DONE]``), so a client that reads to the end sees a proper end.
    """

    code = "server_restarting"
    stream_done = True

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__(
            "The server is restarting; retry the request.",
            headers={"Retry-After": str(retry_after)},
        )
