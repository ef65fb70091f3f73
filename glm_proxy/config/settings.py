"""``Settings``: every section in one frozen object, parsed and validated in one place.

``Settings.from_mapping`` is the one entry point: it parses each variable with
its field's parser, and ``__post_init__`` fills in the protocol profile and
checks what spans fields. ``from_env`` layers overrides over ``os.environ``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from glm_proxy.config.care import AccountCareSettings, parse_refusals
from glm_proxy.config.console import ConsoleSettings
from glm_proxy.config.controls import ControlSettings, ResponsesSettings, ToolSettings
from glm_proxy.config.gunicorn import DoctorSettings, GunicornSettings
from glm_proxy.config.limits import AttachmentSettings, LimitSettings
from glm_proxy.config.parsing import ConfigError
from glm_proxy.config.pool import AccountSettings, SharedStateSettings
from glm_proxy.config.protocol import ProtocolSettings
from glm_proxy.config.quotas import QuotaSettings
from glm_proxy.config.serving import ServingSettings, StreamingSettings
from glm_proxy.config.upstream import UpstreamSettings
from glm_proxy.protocol.profiles import PROFILE_SETTINGS, PROFILES, parse_mode_map, parse_pairs


# A dataclass collects fields from its last base first, so the sections are listed
# here in reverse of the order the configuration table shows them (serving first).
@dataclass(frozen=True)
class Settings(
    DoctorSettings,
    ConsoleSettings,
    QuotaSettings,
    ResponsesSettings,
    ToolSettings,
    StreamingSettings,
    ProtocolSettings,
    LimitSettings,
    ControlSettings,
    AccountCareSettings,
    AccountSettings,
    AttachmentSettings,
    UpstreamSettings,
    SharedStateSettings,
    ServingSettings,
    GunicornSettings,
):
    """All configuration. Field metadata names the environment variable and documents it."""

    def __post_init__(self) -> None:
        profile = PROFILES[self.glm_protocol]
        for name in PROFILE_SETTINGS:
            if getattr(self, name) is None:
                object.__setattr__(self, name, profile[name])
        try:
            parse_mode_map(self.glm_mode_map)
            parse_pairs(self.glm_effort_map)
            parse_pairs(self.glm_upload_fields)
            parse_pairs(self.model_aliases)
        except ValueError as exc:
            raise ConfigError(
                f"GLM_MODE_MAP/GLM_EFFORT_MAP/GLM_UPLOAD_FIELDS/MODEL_ALIASES: {exc}"
            ) from None
        unknown = set(self.glm_delete_methods) - {"bulk", "mainchat", "legacy"}
        if unknown:
            raise ConfigError(f"GLM_DELETE_METHODS: unknown {sorted(unknown)}")
        if self.web_concurrency < 1:
            raise ConfigError("WEB_CONCURRENCY must be at least 1")
        if not 0 < self.port < 65536:
            raise ConfigError("PORT must be between 1 and 65535")
        if min(self.worker_connections, self.gunicorn_timeout, self.keepalive) < 1:
            raise ConfigError(
                "WORKER_CONNECTIONS, GUNICORN_TIMEOUT and KEEPALIVE must be at least 1"
            )
        if self.graceful_timeout < 0:
            raise ConfigError("GRACEFUL_TIMEOUT must not be negative")
        if self.gc_interval < 0:
            raise ConfigError("GC_INTERVAL must not be negative")
        if self.keepalive_interval <= 0:
            raise ConfigError("KEEPALIVE_INTERVAL must be positive")
        if self.request_head_timeout <= 0:
            raise ConfigError("REQUEST_HEAD_TIMEOUT must be positive")
        if min(self.max_schema_depth, self.max_schema_properties) < 1:
            raise ConfigError("MAX_SCHEMA_DEPTH and MAX_SCHEMA_PROPERTIES must be at least 1")
        if self.stream_queue_items < 1:
            raise ConfigError("STREAM_QUEUE_ITEMS must be at least 1")
        if self.stream_stall_timeout <= 0:
            raise ConfigError("STREAM_STALL_TIMEOUT must be positive")
        if not self.glm_base_url.startswith(("http://", "https://")):
            raise ConfigError("GLM_BASE_URL must be an http(s) URL")
        if self.max_choices < 1:
            raise ConfigError("MAX_CHOICES must be at least 1")
        try:
            parse_refusals(self.account_refusals)
        except ValueError as exc:
            raise ConfigError(f"ACCOUNT_REFUSALS: {exc}") from None
        if self.account_budget_hour <= 0:
            raise ConfigError("ACCOUNT_BUDGET_HOUR must be positive")
        if self.passthrough_max_tokens < 1 or self.responses_max_chain < 1:
            raise ConfigError("PASSTHROUGH_MAX_TOKENS and RESPONSES_MAX_CHAIN must be at least 1")

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
        """Settings from the environment, with ``overrides`` (same names) on top."""
        merged: dict[str, Any] = dict(os.environ)
        merged.update(overrides or {})
        return cls.from_mapping(merged)
