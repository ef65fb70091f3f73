"""Every setting, parsed and validated in one place.

Settings come from environment variables (12-factor). ``create_app`` accepts a
mapping with the same names, layered over the environment, so tests configure
the app exactly the way an operator does. Every upstream constant is a setting
so a user can follow an upstream change without a new release.

A bad value fails at start-up with a message naming the variable, never later
in the middle of a request.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glm_proxy.parsers.tool_prompt import check_template
from glm_proxy.profiles import PROFILE_SETTINGS, PROFILES, PROTOCOLS, parse_mode_map, parse_pairs

DEFAULT_CHAT_ASSISTANT = "65940acff94777010aa6b796"
DEFAULT_DRAWING_ASSISTANT = "65a232c082ff90a2ad2f15e2"
DEFAULT_SIGN_SECRET = "8a1317a7468aa3ad86e997d08f3f31cb"
DEFAULT_USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/143.0.0.0 Safari/537.36 Edg/143.0.0.0"
)
FROM_PROFILE = None  # default of a setting whose value comes from the GLM_PROTOCOL profile


class ConfigError(ValueError):
    """A setting is missing or malformed; raised at start-up."""


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected a boolean (true/false), got {value!r}")


def _csv(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _size(value: str) -> int:
    """Bytes, with optional K/M/G (binary) suffix: ``32M`` = 32 MiB."""
    match = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)i?[bB]?\s*", value)
    if not match:
        raise ValueError(f"expected a size like 32M, got {value!r}")
    number, unit = int(match.group(1)), match.group(2).lower()
    return number * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit]


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        value = value.strip().lower()
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}, got {value!r}")
        return value

    return parse


def _hex32(value: str) -> str:
    value = value.strip()
    if not re.fullmatch(r"[0-9a-fA-F]{32}", value):
        raise ValueError("expected 32 hex characters")
    return value.lower()


def _tool_prompt_file(value: str) -> str:
    """A readable template with the placeholders the tool section needs (checked at start-up)."""
    path = value.strip()
    if not path:
        return ""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror or exc}") from None
    problem = check_template(text)
    if problem:
        raise ValueError(f"{path}: {problem}")
    return path


def _setting(env: str, default: Any, parse: Callable[[str], Any] | None = None, doc: str = ""):
    return field(default=default, metadata={"env": env, "parse": parse, "doc": doc})


@dataclass(frozen=True)
class Settings:
    """All configuration. Field metadata names the environment variable and documents it."""

    # -- serving -------------------------------------------------------------
    log_level: str = _setting("LOG_LEVEL", "INFO", str.upper, "Log level.")
    max_request_body: int = _setting(
        "MAX_REQUEST_BODY", 32 * 1024**2, _size, "Largest accepted request body (413 above)."
    )
    cors_allow_origins: tuple[str, ...] = _setting(
        "CORS_ALLOW_ORIGINS", ("*",), _csv, "Access-Control-Allow-Origin values."
    )
    keepalive_interval: float = _setting(
        "KEEPALIVE_INTERVAL", 5.0, float, "Seconds of upstream silence before `: keep-alive`."
    )
    stream_header_wait: float = _setting(
        "STREAM_HEADER_WAIT",
        3.0,
        float,
        "Seconds a stream request waits for the upstream before committing to HTTP 200 "
        "(errors before then get their real status).",
    )
    reasoning_output: str = _setting(
        "REASONING_OUTPUT",
        "reasoning_content",
        _choice("reasoning_content", "think_tags", "hidden"),
        "How reasoning is shown: `reasoning_content` field, inline `<think>` tags, or hidden.",
    )
    delete_conversations: bool = _setting(
        "DELETE_CONVERSATIONS", True, _bool, "Delete upstream conversations after each answer."
    )
    conversation_ttl: int = _setting(
        "CONVERSATION_TTL",
        86400,
        int,
        "Seconds the service remembers which account owns a kept conversation.",
    )
    models_file: str = _setting(
        "MODELS_FILE", "", str, "JSON file with extra model table entries (see README)."
    )

    metrics_enabled: bool = _setting(
        "METRICS_ENABLED",
        True,
        _bool,
        "Serve Prometheus metrics at `/metrics` (behind `ADMIN_KEY` when one is set).",
    )

    # -- shared state --------------------------------------------------------
    store: str = _setting("STORE", "", _choice("", "memory", "redis"), "memory or redis.")
    redis_url: str = _setting("REDIS_URL", "", str, "Redis URL; enables the Redis store.")
    redis_prefix: str = _setting("REDIS_PREFIX", "glmproxy:", str, "Prefix of every Redis key.")
    web_concurrency: int = _setting(
        "WEB_CONCURRENCY", 1, int, "gunicorn worker processes (more than 1 needs Redis)."
    )

    # -- upstream ------------------------------------------------------------
    glm_base_url: str = _setting(
        "GLM_BASE_URL", "https://chatglm.cn/chatglm", str, "Upstream API base URL."
    )
    glm_sign_secret: str = _setting(
        "GLM_SIGN_SECRET", DEFAULT_SIGN_SECRET, _hex32, "Request signing secret (32 hex)."
    )
    glm_sign_check_digit: bool = _setting(
        "GLM_SIGN_CHECK_DIGIT", True, _bool, "Apply the X-Timestamp check digit like the web app."
    )
    glm_refresh_mode: str = _setting(
        "GLM_REFRESH_MODE", "new", _choice("new", "legacy"), "Refresh endpoint flavour."
    )
    glm_assistant_id: str = _setting(
        "GLM_ASSISTANT_ID", DEFAULT_CHAT_ASSISTANT, str, "Default chat assistant id."
    )
    glm_drawing_assistant_id: str = _setting(
        "GLM_DRAWING_ASSISTANT_ID", DEFAULT_DRAWING_ASSISTANT, str, "Drawing assistant id."
    )
    glm_refresh_path: str = _setting(
        "GLM_REFRESH_PATH", "/user-api/user/refresh", str, "Upstream path: token refresh."
    )
    glm_legacy_refresh_path: str = _setting(
        "GLM_LEGACY_REFRESH_PATH",
        "/backend-api/v1/user/refresh",
        str,
        "Upstream path: legacy token refresh (`GLM_REFRESH_MODE=legacy`).",
    )
    glm_stream_path: str = _setting(
        "GLM_STREAM_PATH", "/backend-api/assistant/stream", str, "Upstream path: answer stream."
    )
    glm_delete_path: str = _setting(
        "GLM_DELETE_PATH",
        "/backend-api/assistant/conversation/delete",
        str,
        "Upstream path: conversation delete.",
    )
    glm_upload_path: str = _setting(
        "GLM_UPLOAD_PATH",
        FROM_PROFILE,
        str,
        "Upstream path: chat file upload (2026 `/productivity-api/file/chat_upload`, "
        "2025 `/backend-api/assistant/file_upload`).",
    )
    glm_video_create_path: str = _setting(
        "GLM_VIDEO_CREATE_PATH", "/video-api/v1/chat", str, "Upstream path: create a video task."
    )
    glm_video_status_path: str = _setting(
        "GLM_VIDEO_STATUS_PATH",
        "/video-api/v1/chat/status/{chat_id}",
        str,
        "Upstream path: video task status.",
    )
    glm_video_delete_path: str = _setting(
        "GLM_VIDEO_DELETE_PATH",
        "/video-api/v1/chat/{chat_id}",
        str,
        "Upstream path: delete a video task.",
    )
    glm_video_upload_path: str = _setting(
        "GLM_VIDEO_UPLOAD_PATH",
        "/video-api/v1/static/upload",
        str,
        "Upstream path: first-frame upload.",
    )
    glm_video_composite_path: str = _setting(
        "GLM_VIDEO_COMPOSITE_PATH",
        "/video-api/v1/static/composite_video",
        str,
        "Upstream path: add music to a video.",
    )
    glm_origin: str = _setting("GLM_ORIGIN", "https://chatglm.cn", str, "Origin/Referer host.")
    glm_user_agent: str = _setting("GLM_USER_AGENT", DEFAULT_USER_AGENT, str, "User-Agent.")
    glm_app_version: str = _setting("GLM_APP_VERSION", "0.0.1", str, "X-App-Version.")
    glm_app_platform: str = _setting("GLM_APP_PLATFORM", "pc", str, "X-App-Platform.")
    glm_app_fr: str = _setting("GLM_APP_FR", "default", str, "X-App-Fr.")
    glm_exp_groups: str = _setting(
        "GLM_EXP_GROUPS", FROM_PROFILE, str, "X-Exp-Groups (empty: not sent)."
    )
    glm_extra_headers: str = _setting(
        "GLM_EXTRA_HEADERS", "", str, "Extra upstream headers, `Name: value` separated by `;`."
    )
    glm_networking: bool = _setting(
        "GLM_NETWORKING", True, _bool, "Allow the upstream's web search (`is_networking`)."
    )
    glm_busy_codes: tuple[str, ...] = _setting(
        "GLM_BUSY_CODES",
        ("10040", "10061", "10062"),
        _csv,
        "Envelope status codes meaning 'this account is busy' (10061 busy, 10062 peak-hour "
        "queue): retried on another account before the first byte.",
    )
    glm_access_token_ttl: int = _setting(
        "GLM_ACCESS_TOKEN_TTL", 3600, int, "Seconds an access token is cached."
    )
    glm_connect_timeout: float = _setting("GLM_CONNECT_TIMEOUT", 10.0, float, "Connect timeout.")
    glm_read_timeout: float = _setting(
        "GLM_READ_TIMEOUT", 120.0, float, "Longest upstream silence inside a stream (seconds)."
    )
    glm_request_timeout: float = _setting(
        "GLM_REQUEST_TIMEOUT", 15.0, float, "Timeout of refresh/delete/other JSON calls."
    )
    glm_retries: int = _setting(
        "GLM_RETRIES", 2, int, "Extra attempts on transient upstream failures before any output."
    )
    glm_retry_backoff: float = _setting(
        "GLM_RETRY_BACKOFF", 0.5, float, "First retry delay in seconds (doubles each time)."
    )
    glm_pool_maxsize: int = _setting(
        "GLM_POOL_MAXSIZE", 512, int, "Kept-alive upstream connections."
    )
    upstream_transport: str = _setting(
        "UPSTREAM_TRANSPORT",
        "fast",
        _choice("fast", "requests"),
        "HTTP client for upstream calls: `fast` (HTTP/1.1 on pooled gevent sockets, parsed by "
        "httptools; uploads still use requests) or `requests` (requests/urllib3 for everything).",
    )

    # -- attachments, drawing, video -----------------------------------------
    max_file_size: int = _setting(
        "MAX_FILE_SIZE", 100 * 1024**2, _size, "Largest attachment fetched or uploaded."
    )
    fetch_allow_hosts: tuple[str, ...] = _setting(
        "FETCH_ALLOW_HOSTS",
        (),
        _csv,
        "Hosts/CIDRs that user-supplied URLs may reach even if private/loopback.",
    )
    fetch_connect_timeout: float = _setting(
        "FETCH_CONNECT_TIMEOUT", 10.0, float, "Connect timeout for user-supplied URLs."
    )
    fetch_read_timeout: float = _setting(
        "FETCH_READ_TIMEOUT", 60.0, float, "Read timeout for user-supplied URLs."
    )
    upload_cache_ttl: int = _setting(
        "UPLOAD_CACHE_TTL", 86400, int, "Seconds an upload is reused for the same file+account."
    )
    glm_media_timeout: float = _setting(
        "GLM_MEDIA_TIMEOUT", 60.0, float, "Read timeout of upstream uploads and video API calls."
    )
    images_max_n: int = _setting("IMAGES_MAX_N", 8, int, "Largest `n` for image generation.")
    video_poll_interval: float = _setting(
        "VIDEO_POLL_INTERVAL", 1.0, float, "Seconds between video task polls."
    )
    video_deadline: float = _setting(
        "VIDEO_DEADLINE", 600.0, float, "Seconds to wait for a video before giving up."
    )
    job_ttl: int = _setting("JOB_TTL", 86400, int, "Seconds an async video job is kept.")

    # -- accounts and team access ---------------------------------------------
    accounts: tuple[str, ...] = _setting(
        "ACCOUNTS", (), _csv, "Server-side pool: comma-separated refresh tokens."
    )
    accounts_file: str = _setting(
        "ACCOUNTS_FILE", "", str, "File with one refresh token per line (pool)."
    )
    api_keys: tuple[str, ...] = _setting(
        "API_KEYS", (), _csv, "Team keys as `name:key`, comma-separated."
    )
    api_keys_file: str = _setting("API_KEYS_FILE", "", str, "File with `name:key` lines.")
    allow_passthrough: str = _setting(
        "ALLOW_PASSTHROUGH",
        "auto",
        _choice("auto", "true", "false"),
        "Accept refresh tokens as Bearer (auto: only when no API keys are set).",
    )
    admin_key: str = _setting("ADMIN_KEY", "", str, "Key for the /admin API (disabled if empty).")
    account_max_streams: int = _setting(
        "ACCOUNT_MAX_STREAMS", 1, int, "Concurrent answers per account."
    )
    queue_timeout: float = _setting(
        "QUEUE_TIMEOUT", 30.0, float, "Seconds a request waits for a free account (then 429)."
    )
    queue_max: int = _setting("QUEUE_MAX", 200, int, "Most requests waiting for an account.")
    lease_ttl: float = _setting(
        "LEASE_TTL", 30.0, float, "Seconds a lease lives without a heartbeat (crash safety)."
    )
    cooldown_base: float = _setting(
        "COOLDOWN_BASE", 5.0, float, "First cooldown of a failing account (doubles)."
    )
    cooldown_max: float = _setting("COOLDOWN_MAX", 300.0, float, "Longest cooldown.")
    conversation_idle_ttl: float = _setting(
        "CONVERSATION_IDLE_TTL", 3600.0, float, "Kept conversations idle this long are deleted."
    )
    sweep_interval: float = _setting(
        "SWEEP_INTERVAL", 60.0, float, "Seconds between idle-conversation sweeps."
    )
    follow_token_rotation: bool = _setting(
        "FOLLOW_TOKEN_ROTATION",
        False,
        _bool,
        "Use (and persist) a new refresh token when the upstream rotates it.",
    )
    key_rpm: int = _setting("KEY_RPM", 0, int, "Requests per minute per API key (0 = no limit).")
    key_max_concurrent: int = _setting(
        "KEY_MAX_CONCURRENT", 0, int, "Concurrent requests per API key (0 = no limit)."
    )

    # -- client controls (stop, length, n, structured outputs, logprobs) -------
    max_choices: int = _setting(
        "MAX_CHOICES", 4, int, "Largest `n` for chat completions (each choice is one answer)."
    )
    lenient_logprobs: bool = _setting(
        "LENIENT_LOGPROBS",
        False,
        _bool,
        "Accept `logprobs: true` and return no log probabilities (default: a 400).",
    )

    # -- limits on hostile input (README "Limits") ---------------------------
    request_body_timeout: float = _setting(
        "REQUEST_BODY_TIMEOUT", 60.0, float, "Seconds to receive a whole request body (408)."
    )
    max_messages: int = _setting("MAX_MESSAGES", 5000, int, "Most messages per request (400).")
    max_content_parts: int = _setting(
        "MAX_CONTENT_PARTS", 10000, int, "Most content parts in all messages of a request (400)."
    )
    max_tools: int = _setting("MAX_TOOLS", 1000, int, "Most tool definitions per request (400).")
    max_token_length: int = _setting(
        "MAX_TOKEN_LENGTH", 4096, int, "Longest API key or refresh token accepted (400)."
    )
    max_url_length: int = _setting(
        "MAX_URL_LENGTH", 4096, int, "Longest request target (path and query) accepted (414)."
    )
    max_headers: int = _setting("MAX_HEADERS", 100, int, "Most request header fields (431).")
    max_header_size: int = _setting(
        "MAX_HEADER_SIZE", 16384, int, "Largest single request header field in bytes (431)."
    )
    fetch_total_timeout: float = _setting(
        "FETCH_TOTAL_TIMEOUT", 120.0, float, "Seconds one URL download may take in all (400)."
    )
    max_attachments: int = _setting(
        "MAX_ATTACHMENTS", 16, int, "Most distinct file/image URLs in one request (400)."
    )
    max_attachment_bytes: int = _setting(
        "MAX_ATTACHMENT_BYTES", 128 * 1024**2, _size, "Most attachment bytes per request (413)."
    )
    models_public: bool = _setting(
        "MODELS_PUBLIC", False, _bool, "Serve `/v1/models` without a key in team mode."
    )

    # -- upstream protocol profile (2025/2026), models, deletes, WAF ---------
    # Settings whose default is FROM_PROFILE take their value from GLM_PROTOCOL's
    # profile (glm_proxy/profiles.py) unless set explicitly.
    glm_protocol: str = _setting(
        "GLM_PROTOCOL",
        "2026",
        _choice(*PROTOCOLS),
        "Upstream protocol profile: `2026` (current web app) or `2025`. Picks the defaults "
        "of every setting marked (profile); each can still be set on its own.",
    )
    glm_upload_signed: bool = _setting(
        "GLM_UPLOAD_SIGNED", FROM_PROFILE, _bool, "Sign chat uploads (profile)."
    )
    glm_upload_fields: str = _setting(
        "GLM_UPLOAD_FIELDS",
        FROM_PROFILE,
        str,
        "Extra multipart form fields of a chat upload, `name=value,...`; `{assistant_id}` is "
        "replaced (profile).",
    )
    glm_attachment_items: str = _setting(
        "GLM_ATTACHMENT_ITEMS",
        FROM_PROFILE,
        _choice("2026", "2025"),
        "Shape of image/file items in the stream request: `2026` slim records, `2025` the "
        "whole upload record (profile).",
    )
    glm_delete_methods: tuple[str, ...] = _setting(
        "GLM_DELETE_METHODS",
        FROM_PROFILE,
        _csv,
        "Conversation delete calls, tried in order: `bulk` (mainchat bulk_delete), `mainchat` "
        "(mainchat delete), `legacy` (GLM_DELETE_PATH) (profile).",
    )
    glm_bulk_delete_path: str = _setting(
        "GLM_BULK_DELETE_PATH",
        "/mainchat-api/conversation/bulk_delete",
        str,
        "Upstream path: delete many conversations.",
    )
    glm_mainchat_delete_path: str = _setting(
        "GLM_MAINCHAT_DELETE_PATH",
        "/mainchat-api/conversation/delete",
        str,
        "Upstream path: delete one conversation (2026 web bundle).",
    )
    glm_bulk_delete_assistant: bool = _setting(
        "GLM_BULK_DELETE_ASSISTANT", True, _bool, "Send `assistant_id` with bulk_delete."
    )
    glm_delete_batch_window: float = _setting(
        "GLM_DELETE_BATCH_WINDOW",
        0.2,
        float,
        "Seconds the janitor gathers finished conversations of one account into one bulk_delete.",
    )
    glm_delete_batch_max: int = _setting(
        "GLM_DELETE_BATCH_MAX", 50, int, "Most conversation ids in one bulk_delete."
    )
    glm_stop_path: str = _setting(
        "GLM_STOP_PATH", "/mainchat-api/stream/stop_stream", str, "Upstream path: stop an answer."
    )
    glm_stop_on_disconnect: bool = _setting(
        "GLM_STOP_ON_DISCONNECT",
        FROM_PROFILE,
        _bool,
        "Stop the upstream answer (stop_stream) when the client leaves mid-answer (profile).",
    )
    glm_send_selected_model: bool = _setting(
        "GLM_SEND_SELECTED_MODEL",
        FROM_PROFILE,
        _bool,
        "Send `meta_data.selected_model` and `reasoning_effort` (profile).",
    )
    glm_if_plus_model: bool = _setting(
        "GLM_IF_PLUS_MODEL", FROM_PROFILE, _bool, "Send `meta_data.if_plus_model: true` (profile)."
    )
    glm_default_model: str = _setting(
        "GLM_DEFAULT_MODEL",
        "glm-5.3-flash",
        str,
        "Upstream `selected_model` for model names that do not name one.",
    )
    glm_mode_map: str = _setting(
        "GLM_MODE_MAP",
        FROM_PROFILE,
        str,
        "Mode -> `chat_mode:reasoning_effort` sent upstream, for modes fast, thinking, deep, "
        "research (profile; see README).",
    )
    glm_effort_map: str = _setting(
        "GLM_EFFORT_MAP",
        FROM_PROFILE,
        str,
        "Client `reasoning_effort` -> mode (profile; see README).",
    )
    strict_models: bool = _setting(
        "STRICT_MODELS",
        False,
        _bool,
        "Unknown model names are a 400 (otherwise the default model answers, with a log line).",
    )
    glm_model_catalogue: bool = _setting(
        "GLM_MODEL_CATALOGUE",
        FROM_PROFILE,
        _bool,
        "List the upstream's model catalogue in /v1/models (profile).",
    )
    glm_catalogue_path: str = _setting(
        "GLM_CATALOGUE_PATH",
        "/agent-api/operation/detail?tag=available_models",
        str,
        "Upstream path: model catalogue.",
    )
    glm_catalogue_ttl: float = _setting(
        "GLM_CATALOGUE_TTL", 600.0, float, "Seconds the model catalogue is cached."
    )
    glm_static_models: tuple[str, ...] = _setting(
        "GLM_STATIC_MODELS",
        ("glm-5.3", "glm-5.3-flash"),
        _csv,
        "Upstream models listed when the catalogue is off or unreachable.",
    )
    glm_time_sync: bool = _setting(
        "GLM_TIME_SYNC",
        FROM_PROFILE,
        _bool,
        "Sign with the server clock (GLM_TIME_PATH), falling back to the local clock (profile).",
    )
    glm_time_path: str = _setting(
        "GLM_TIME_PATH", "/operation-api/config/cur_ts", str, "Upstream path: server time."
    )
    glm_time_field: str = _setting(
        "GLM_TIME_FIELD", "timestamp_ms", str, "Field of the server time result (milliseconds)."
    )
    glm_time_sync_interval: float = _setting(
        "GLM_TIME_SYNC_INTERVAL", 600.0, float, "Seconds between server time syncs."
    )
    glm_device_id_strategy: str = _setting(
        "GLM_DEVICE_ID_STRATEGY",
        FROM_PROFILE,
        _choice("jwt_claim", "fixed", "per_request", "rotate"),
        "X-Device-Id: `jwt_claim` (the token's device_id, else a stable per-account id), "
        "`fixed` (GLM_DEVICE_ID), `per_request`, `rotate` (every GLM_DEVICE_ROTATE_EVERY "
        "requests) (profile).",
    )
    glm_device_id: str = _setting("GLM_DEVICE_ID", "", str, "X-Device-Id for the `fixed` strategy.")
    glm_device_rotate_every: int = _setting(
        "GLM_DEVICE_ROTATE_EVERY", 8, int, "Requests per device id for the `rotate` strategy."
    )
    glm_sec_ch_ua: str = _setting(
        "GLM_SEC_CH_UA",
        "",
        str,
        "`sec-ch-ua` header; empty: derived from GLM_USER_AGENT (none for Firefox).",
    )
    list_uncited_sources: bool = _setting(
        "LIST_UNCITED_SOURCES",
        True,
        _bool,
        "List the pages the upstream searched even when the answer cites none of them.",
    )

    # -- streaming core: backpressure and shutdown ---------------------------------
    stream_queue_items: int = _setting(
        "STREAM_QUEUE_ITEMS",
        64,
        int,
        "Pieces of an answer queued for a client that is not reading; then the upstream is "
        "no longer read (backpressure).",
    )
    stream_stall_timeout: float = _setting(
        "STREAM_STALL_TIMEOUT",
        60.0,
        float,
        "Seconds a stream may wait on a client that stopped reading; then the answer is "
        "ended, the upstream answer stopped and its conversation deleted.",
    )
    stream_send_buffer: int = _setting(
        "STREAM_SEND_BUFFER",
        0,
        _size,
        "Kernel send buffer per streaming connection (e.g. `64K`; 0 = the OS default, which "
        "can hold megabytes for a client that stopped reading).",
    )
    shutdown_margin: float = _setting(
        "SHUTDOWN_MARGIN",
        5.0,
        float,
        "On SIGTERM, open streams end this many seconds before `GRACEFUL_TIMEOUT` runs out, "
        "with an error event telling the client to retry.",
    )

    # -- Tool calling (emulated; see README "Tool calling") --------------------
    tool_prompt_file: str = _setting(
        "TOOL_PROMPT_FILE",
        "",
        _tool_prompt_file,
        "File with the tool-section template sent when a request has tools (empty = built-in).",
    )

    # -- Responses API (/v1/responses) -------------------------------------------------
    responses_ttl: int = _setting(
        "RESPONSES_TTL",
        86400,
        int,
        "Seconds a stored response (`store: true`) can be retrieved or continued with "
        "`previous_response_id`.",
    )

    def __post_init__(self) -> None:
        profile = PROFILES[self.glm_protocol]
        for name in PROFILE_SETTINGS:
            if getattr(self, name) is None:
                object.__setattr__(self, name, profile[name])
        try:
            parse_mode_map(self.glm_mode_map)
            parse_pairs(self.glm_effort_map)
            parse_pairs(self.glm_upload_fields)
        except ValueError as exc:
            raise ConfigError(f"GLM_MODE_MAP/GLM_EFFORT_MAP/GLM_UPLOAD_FIELDS: {exc}") from None
        unknown = set(self.glm_delete_methods) - {"bulk", "mainchat", "legacy"}
        if unknown:
            raise ConfigError(f"GLM_DELETE_METHODS: unknown {sorted(unknown)}")
        if self.web_concurrency < 1:
            raise ConfigError("WEB_CONCURRENCY must be at least 1")
        if self.keepalive_interval <= 0:
            raise ConfigError("KEEPALIVE_INTERVAL must be positive")
        if self.stream_queue_items < 1:
            raise ConfigError("STREAM_QUEUE_ITEMS must be at least 1")
        if self.stream_stall_timeout <= 0:
            raise ConfigError("STREAM_STALL_TIMEOUT must be positive")
        if not self.glm_base_url.startswith(("http://", "https://")):
            raise ConfigError("GLM_BASE_URL must be an http(s) URL")
        if self.max_choices < 1:
            raise ConfigError("MAX_CHOICES must be at least 1")

    @property
    def store_backend(self) -> str:
        """``redis`` when asked for or when REDIS_URL is set, else ``memory``."""
        if self.store:
            return self.store
        return "redis" if self.redis_url else "memory"

    @property
    def extra_headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for item in self.glm_extra_headers.split(";"):
            name, sep, value = item.partition(":")
            if sep and name.strip():
                headers[name.strip()] = value.strip()
        return headers

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> Settings:
        """Build settings from ``ENV_NAME -> value``; non-string values are taken as they are."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            env = f.metadata["env"]
            if env not in mapping:
                continue
            raw = mapping[env]
            parse = f.metadata["parse"]
            if isinstance(raw, str) and parse is not None:
                try:
                    values[f.name] = parse(raw)
                except ValueError as exc:
                    raise ConfigError(f"{env}: {exc}") from None
            elif isinstance(raw, list):
                values[f.name] = tuple(raw)
            else:
                values[f.name] = raw
        return cls(**values)

    @classmethod
    def from_env(cls, overrides: Mapping[str, Any] | None = None) -> Settings:
        merged: dict[str, Any] = dict(os.environ)
        merged.update(overrides or {})
        return cls.from_mapping(merged)


def read_setting_file(path: str, variable: str) -> list[str]:
    """The lines of a file a setting names; a missing or unreadable file is a start-up error."""
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"{variable} {path}: {exc.strerror or exc}") from None


def documented_settings() -> list[tuple[str, Any, str]]:
    """(variable, default, description) for every setting; the README table is built from it."""
    rows = []
    for f in dataclasses.fields(Settings):
        default = f.default
        if default is FROM_PROFILE:
            default = "(profile) " + " / ".join(
                f"{p}: {_shown(PROFILES[p][f.name])}" for p in PROTOCOLS
            )
        elif isinstance(default, tuple):
            default = ",".join(default)
        rows.append((f.metadata["env"], default, f.metadata["doc"]))
    return rows


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value) or '""'


def markdown_table() -> str:
    """The README's configuration table (``python -m glm_proxy.config``)."""
    lines = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for env, default, doc in documented_settings():
        shown = str(default).lower() if isinstance(default, bool) else str(default)
        sizes = {"MAX_REQUEST_BODY", "MAX_FILE_SIZE", "MAX_ATTACHMENT_BYTES"}
        if env in sizes and isinstance(default, int):
            shown = f"{default // 1024**2}M"
        if shown.startswith("(profile)"):
            pass
        else:
            shown = f"`{shown}`" if shown else "(empty)"
        lines.append(f"| `{env}` | {shown} | {doc} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
