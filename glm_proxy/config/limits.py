"""Limit settings: attachments and media, and the bounds on what one hostile caller can send.

docs/errors-and-limits.md explains what a client gets over each bound.
"""

from __future__ import annotations

from dataclasses import dataclass

from glm_proxy.config.parsing import parse_bool, parse_csv, parse_size, setting


@dataclass(frozen=True)
class AttachmentSettings:
    """Attachments fetched from user URLs, drawing and video."""

    max_file_size: int = setting(
        "MAX_FILE_SIZE", 100 * 1024**2, parse_size, "Largest attachment fetched or uploaded."
    )
    fetch_allow_hosts: tuple[str, ...] = setting(
        "FETCH_ALLOW_HOSTS",
        (),
        parse_csv,
        "Hosts/CIDRs that user-supplied URLs may reach even if private/loopback.",
    )
    fetch_connect_timeout: float = setting(
        "FETCH_CONNECT_TIMEOUT", 10.0, float, "Connect timeout for user-supplied URLs."
    )
    fetch_read_timeout: float = setting(
        "FETCH_READ_TIMEOUT", 60.0, float, "Read timeout for user-supplied URLs."
    )
    upload_cache_ttl: int = setting(
        "UPLOAD_CACHE_TTL", 86400, int, "Seconds an upload is reused for the same file+account."
    )
    glm_media_timeout: float = setting(
        "GLM_MEDIA_TIMEOUT", 60.0, float, "Read timeout of upstream uploads and video API calls."
    )
    images_max_n: int = setting("IMAGES_MAX_N", 8, int, "Largest `n` for image generation.")
    video_poll_interval: float = setting(
        "VIDEO_POLL_INTERVAL", 1.0, float, "Seconds between video task polls."
    )
    video_deadline: float = setting(
        "VIDEO_DEADLINE", 600.0, float, "Seconds to wait for a video before giving up."
    )
    job_ttl: int = setting("JOB_TTL", 86400, int, "Seconds an async video job is kept.")


@dataclass(frozen=True)
class LimitSettings:
    """Bounds on request size, shape and timing, checked before any work."""

    request_body_timeout: float = setting(
        "REQUEST_BODY_TIMEOUT", 60.0, float, "Seconds to receive a whole request body (408)."
    )
    max_messages: int = setting("MAX_MESSAGES", 5000, int, "Most messages per request (400).")
    max_json_values: int = setting(
        "MAX_JSON_VALUES",
        1_000_000,
        int,
        "Most JSON values (objects, arrays, strings, numbers ...) in one request body (400): "
        "parsing is one call no other request can interrupt, about 0.1 s per million values.",
    )
    max_content_parts: int = setting(
        "MAX_CONTENT_PARTS", 10000, int, "Most content parts in all messages of a request (400)."
    )
    max_tools: int = setting("MAX_TOOLS", 1000, int, "Most tool definitions per request (400).")
    max_schema_bytes: int = setting(
        "MAX_SCHEMA_BYTES",
        1024**2,
        parse_size,
        "Most bytes of JSON Schema (tool parameters and the structured-output schema) in "
        "one request (400).",
    )
    max_schema_properties: int = setting(
        "MAX_SCHEMA_PROPERTIES",
        2000,
        int,
        "Most property definitions and other listed subschemas (`anyOf`, `$defs`...) in all "
        "of a request's JSON schemas (400); each costs about a millisecond to check.",
    )
    max_schema_depth: int = setting(
        "MAX_SCHEMA_DEPTH",
        32,
        int,
        "Deepest nesting of arrays and objects in one JSON schema (400).",
    )
    max_schema_pattern_length: int = setting(
        "MAX_SCHEMA_PATTERN_LENGTH",
        1000,
        int,
        "Longest regex (`pattern`, `patternProperties`) in a JSON schema (400).",
    )
    max_token_length: int = setting(
        "MAX_TOKEN_LENGTH", 4096, int, "Longest API key or refresh token accepted (400)."
    )
    max_url_length: int = setting(
        "MAX_URL_LENGTH", 4096, int, "Longest request target (path and query) accepted (414)."
    )
    max_headers: int = setting("MAX_HEADERS", 100, int, "Most request header fields (431).")
    max_header_size: int = setting(
        "MAX_HEADER_SIZE", 16384, int, "Largest single request header field in bytes (431)."
    )
    fetch_total_timeout: float = setting(
        "FETCH_TOTAL_TIMEOUT", 120.0, float, "Seconds one URL download may take in all (400)."
    )
    max_attachments: int = setting(
        "MAX_ATTACHMENTS", 16, int, "Most distinct file/image URLs in one request (400)."
    )
    max_attachment_bytes: int = setting(
        "MAX_ATTACHMENT_BYTES",
        128 * 1024**2,
        parse_size,
        "Most attachment bytes per request (413).",
    )
    models_public: bool = setting(
        "MODELS_PUBLIC", False, parse_bool, "Serve `/v1/models` without a key in team mode."
    )
