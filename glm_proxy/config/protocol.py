"""Protocol settings: the 2025/2026 upstream profile, models, deletes, identity and the WAF.

A field whose default is ``FROM_PROFILE`` takes its value from the ``GLM_PROTOCOL``
profile (``glm_proxy/protocol/profiles.py``) unless set explicitly; ``Settings`` fills it in.
"""

from __future__ import annotations

from dataclasses import dataclass

from glm_proxy.config.parsing import FROM_PROFILE, one_of, parse_bool, parse_csv, setting
from glm_proxy.protocol.model_table import DEFAULT_ALIASES
from glm_proxy.protocol.profiles import PROTOCOLS


@dataclass(frozen=True)
class ProtocolSettings:
    """What differs between the upstream's protocol eras, each value its own setting."""

    glm_protocol: str = setting(
        "GLM_PROTOCOL",
        "2026",
        one_of(*PROTOCOLS),
        "Upstream protocol profile: `2026` (current web app) or `2025`. Picks the defaults "
        "of every setting marked (profile); each can still be set on its own.",
    )
    glm_upload_signed: bool = setting(
        "GLM_UPLOAD_SIGNED", FROM_PROFILE, parse_bool, "Sign chat uploads (profile)."
    )
    glm_upload_fields: str = setting(
        "GLM_UPLOAD_FIELDS",
        FROM_PROFILE,
        str,
        "Extra multipart form fields of a chat upload, `name=value,...`; `{assistant_id}` is "
        "replaced (profile).",
    )
    glm_attachment_items: str = setting(
        "GLM_ATTACHMENT_ITEMS",
        FROM_PROFILE,
        one_of("2026", "2025"),
        "Shape of image/file items in the stream request: `2026` slim records, `2025` the "
        "whole upload record (profile).",
    )
    glm_delete_methods: tuple[str, ...] = setting(
        "GLM_DELETE_METHODS",
        FROM_PROFILE,
        parse_csv,
        "Conversation delete calls, tried in order: `bulk` (mainchat bulk_delete), `mainchat` "
        "(mainchat delete), `legacy` (GLM_DELETE_PATH) (profile).",
    )
    glm_bulk_delete_path: str = setting(
        "GLM_BULK_DELETE_PATH",
        "/mainchat-api/conversation/bulk_delete",
        str,
        "Upstream path: delete many conversations.",
    )
    glm_mainchat_delete_path: str = setting(
        "GLM_MAINCHAT_DELETE_PATH",
        "/mainchat-api/conversation/delete",
        str,
        "Upstream path: delete one conversation (2026 web bundle).",
    )
    glm_list_path: str = setting(
        "GLM_LIST_PATH",
        "/mainchat-api/conversation/recent_list",
        str,
        "Upstream path: the account's recent conversations (the doctor confirms deletes).",
    )
    glm_bulk_delete_assistant: bool = setting(
        "GLM_BULK_DELETE_ASSISTANT", True, parse_bool, "Send `assistant_id` with bulk_delete."
    )
    glm_delete_batch_window: float = setting(
        "GLM_DELETE_BATCH_WINDOW",
        1.0,
        float,
        "Seconds the janitor gathers finished conversations of one account into one bulk_delete "
        "(under load, fewer upstream calls; a conversation outlives its answer by at most this).",
    )
    glm_delete_batch_max: int = setting(
        "GLM_DELETE_BATCH_MAX", 50, int, "Most conversation ids in one bulk_delete."
    )
    glm_stop_path: str = setting(
        "GLM_STOP_PATH", "/mainchat-api/stream/stop_stream", str, "Upstream path: stop an answer."
    )
    glm_stop_on_disconnect: bool = setting(
        "GLM_STOP_ON_DISCONNECT",
        FROM_PROFILE,
        parse_bool,
        "Stop the upstream answer (stop_stream) when the client leaves mid-answer (profile).",
    )
    glm_send_selected_model: bool = setting(
        "GLM_SEND_SELECTED_MODEL",
        FROM_PROFILE,
        parse_bool,
        "Send `meta_data.selected_model` and `reasoning_effort` (profile).",
    )
    glm_if_plus_model: bool = setting(
        "GLM_IF_PLUS_MODEL",
        FROM_PROFILE,
        parse_bool,
        "Send `meta_data.if_plus_model: true` (profile).",
    )
    glm_default_model: str = setting(
        "GLM_DEFAULT_MODEL",
        "glm-5.3-flash",
        str,
        "Upstream `selected_model` for model names that do not name one.",
    )
    glm_mode_map: str = setting(
        "GLM_MODE_MAP",
        FROM_PROFILE,
        str,
        "Mode -> `chat_mode:reasoning_effort` sent upstream, for modes fast, thinking, deep, "
        "research (profile; see docs/api.md).",
    )
    glm_effort_map: str = setting(
        "GLM_EFFORT_MAP",
        FROM_PROFILE,
        str,
        "Client `reasoning_effort` -> mode (profile; see docs/api.md).",
    )
    strict_models: bool = setting(
        "STRICT_MODELS",
        False,
        parse_bool,
        "Unknown model names are a 400 `model_not_found` (otherwise the default model answers, "
        "with a log line); `MODEL_ALIASES` are not applied then.",
    )
    model_aliases: str = setting(
        "MODEL_ALIASES",
        DEFAULT_ALIASES,
        str,
        "Model names agent clients send -> a model of the table: `pattern=model` items, "
        "shell-style patterns, first match wins (see docs/clients.md).",
    )
    model_context_window: int = setting(
        "MODEL_CONTEXT_WINDOW",
        128000,
        int,
        "Context window in tokens that `/v1/models` reports for each model.",
    )
    glm_model_catalogue: bool = setting(
        "GLM_MODEL_CATALOGUE",
        FROM_PROFILE,
        parse_bool,
        "List the upstream's model catalogue in /v1/models (profile).",
    )
    glm_catalogue_path: str = setting(
        "GLM_CATALOGUE_PATH",
        "/agent-api/operation/detail?tag=available_models",
        str,
        "Upstream path: model catalogue.",
    )
    glm_catalogue_ttl: float = setting(
        "GLM_CATALOGUE_TTL", 600.0, float, "Seconds the model catalogue is cached."
    )
    glm_static_models: tuple[str, ...] = setting(
        "GLM_STATIC_MODELS",
        ("glm-5.3", "glm-5.3-flash"),
        parse_csv,
        "Upstream models listed when the catalogue is off or unreachable.",
    )
    glm_time_sync: bool = setting(
        "GLM_TIME_SYNC",
        FROM_PROFILE,
        parse_bool,
        "Sign with the server clock (GLM_TIME_PATH), falling back to the local clock (profile).",
    )
    glm_time_path: str = setting(
        "GLM_TIME_PATH", "/operation-api/config/cur_ts", str, "Upstream path: server time."
    )
    glm_time_field: str = setting(
        "GLM_TIME_FIELD", "timestamp_ms", str, "Field of the server time result (milliseconds)."
    )
    glm_time_sync_interval: float = setting(
        "GLM_TIME_SYNC_INTERVAL", 600.0, float, "Seconds between server time syncs."
    )
    glm_device_id_strategy: str = setting(
        "GLM_DEVICE_ID_STRATEGY",
        FROM_PROFILE,
        one_of("jwt_claim", "fixed", "per_request", "rotate"),
        "X-Device-Id: `jwt_claim` (the token's device_id, else a stable per-account id), "
        "`fixed` (GLM_DEVICE_ID), `per_request`, `rotate` (every GLM_DEVICE_ROTATE_EVERY "
        "requests) (profile).",
    )
    glm_device_id: str = setting("GLM_DEVICE_ID", "", str, "X-Device-Id for the `fixed` strategy.")
    glm_device_rotate_every: int = setting(
        "GLM_DEVICE_ROTATE_EVERY", 8, int, "Requests per device id for the `rotate` strategy."
    )
    glm_sec_ch_ua: str = setting(
        "GLM_SEC_CH_UA",
        "",
        str,
        "`sec-ch-ua` header; empty: derived from GLM_USER_AGENT (none for Firefox).",
    )
    list_uncited_sources: bool = setting(
        "LIST_UNCITED_SOURCES",
        True,
        parse_bool,
        "List the pages the upstream searched even when the answer cites none of them.",
    )
