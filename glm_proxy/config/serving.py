"""Serving settings: how the HTTP side behaves, and the streaming core's backpressure."""

from __future__ import annotations

from dataclasses import dataclass

from glm_proxy.config.parsing import one_of, parse_bool, parse_csv, parse_size, setting


@dataclass(frozen=True)
class ServingSettings:
    """Request bodies, CORS, keep-alives, how reasoning is shown, metrics."""

    log_level: str = setting("LOG_LEVEL", "INFO", str.upper, "Log level.")
    max_request_body: int = setting(
        "MAX_REQUEST_BODY", 32 * 1024**2, parse_size, "Largest accepted request body (413 above)."
    )
    request_head_timeout: float = setting(
        "REQUEST_HEAD_TIMEOUT",
        10.0,
        float,
        "Seconds a new connection has to send its first request head (408 after; the "
        "wait between requests on a kept connection is `KEEPALIVE`).",
    )
    cors_allow_origins: tuple[str, ...] = setting(
        "CORS_ALLOW_ORIGINS", ("*",), parse_csv, "Access-Control-Allow-Origin values."
    )
    keepalive_interval: float = setting(
        "KEEPALIVE_INTERVAL", 5.0, float, "Seconds of upstream silence before `: keep-alive`."
    )
    stream_header_wait: float = setting(
        "STREAM_HEADER_WAIT",
        3.0,
        float,
        "Seconds a stream request waits for the upstream before committing to HTTP 200 "
        "(errors before then get their real status).",
    )
    reasoning_output: str = setting(
        "REASONING_OUTPUT",
        "reasoning_content",
        one_of("reasoning_content", "think_tags", "hidden"),
        "How reasoning is shown: `reasoning_content` field, inline `<think>` tags, or hidden.",
    )
    delete_conversations: bool = setting(
        "DELETE_CONVERSATIONS", True, parse_bool, "Delete upstream conversations after each answer."
    )
    conversation_ttl: int = setting(
        "CONVERSATION_TTL",
        86400,
        int,
        "Seconds the service remembers which account owns a kept conversation.",
    )
    models_file: str = setting(
        "MODELS_FILE", "", str, "JSON file with extra model table entries (see docs/api.md)."
    )

    metrics_enabled: bool = setting(
        "METRICS_ENABLED",
        True,
        parse_bool,
        "Serve Prometheus metrics at `/metrics` (behind `ADMIN_KEY` when one is set).",
    )


@dataclass(frozen=True)
class StreamingSettings:
    """Streaming core: a client that stops reading, and the drain on shutdown.

    The pump (``glm_proxy.streaming``) enforces these once for every wire format.
    """

    stream_queue_items: int = setting(
        "STREAM_QUEUE_ITEMS",
        64,
        int,
        "Pieces of an answer queued for a client that is not reading; then the upstream is "
        "no longer read (backpressure).",
    )
    stream_stall_timeout: float = setting(
        "STREAM_STALL_TIMEOUT",
        60.0,
        float,
        "Seconds a stream may wait on a client that stopped reading; then the answer is "
        "ended, the upstream answer stopped and its conversation deleted.",
    )
    stream_send_buffer: int = setting(
        "STREAM_SEND_BUFFER",
        0,
        parse_size,
        "Kernel send buffer per streaming connection (e.g. `64K`; 0 = the OS default, which "
        "can hold megabytes for a client that stopped reading).",
    )
    shutdown_margin: float = setting(
        "SHUTDOWN_MARGIN",
        5.0,
        float,
        "On SIGTERM, open streams end this many seconds before `GRACEFUL_TIMEOUT` runs out, "
        "with an error event telling the client to retry.",
    )
