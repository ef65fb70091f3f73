"""Upstream protocol profiles: the 2025 ("E2") and 2026 ("E3") chatglm.cn web protocol as data.

``GLM_PROTOCOL`` picks one profile; every value in it is also a setting of its
own (``PROFILE_SETTINGS`` names them), and a setting that is set explicitly
wins over the profile. So the profile is only the set of defaults that belong
together, and a user can follow the next upstream change one value at a time
without a release.

Which values differ, and why (upstream-protocol.md §15):

* deletes: 2026 browsers call ``mainchat-api/conversation/bulk_delete``; the
  2025 path is kept as the last fallback;
* uploads: ``productivity-api/file/chat_upload`` (signed, ``from``/``assistant_id``
  form fields) with slimmed image/file items;
* request body: ``selected_model`` + ``chat_mode`` ``""``/``thinking``/``deep_thinking``
  + ``reasoning_effort`` instead of ``chat_mode`` ``zero``;
* identity: a stable ``X-Device-Id`` (the token's ``device_id`` claim) and the
  server clock (``operation-api/config/cur_ts``) instead of random ids and the
  local clock;
* management calls that only exist in 2026: model catalogue, ``stop_stream``,
  the account's credits (``member_info``) and the daily login points claim.

This module imports nothing from the package, so ``config`` can use it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

PROTOCOLS = ("2026", "2025")

# Mode -> "chat_mode:reasoning_effort" (the §15.3 table; "deep" effort is a guess).
MODE_MAP_2026 = "fast=:low,thinking=thinking:high,deep=deep_thinking:max,research=deep_research:"
MODE_MAP_2025 = "fast=:,thinking=zero:,deep=zero:,research=deep_research:"
# Client reasoning effort -> mode.
EFFORT_MAP_2026 = (
    "none=fast,minimal=fast,low=fast,medium=thinking,high=thinking,xhigh=deep,max=deep"
)
EFFORT_MAP_2025 = (
    "none=fast,minimal=thinking,low=thinking,medium=thinking,high=thinking,xhigh=thinking,"
    "max=thinking"
)

PROFILES: dict[str, dict[str, Any]] = {
    "2026": {
        "glm_upload_path": "/productivity-api/file/chat_upload",
        "glm_upload_signed": True,
        "glm_upload_fields": "from=chat,assistant_id={assistant_id}",
        "glm_attachment_items": "2026",
        "glm_delete_methods": ("bulk", "mainchat", "legacy"),
        "glm_send_selected_model": True,
        "glm_if_plus_model": False,
        "glm_mode_map": MODE_MAP_2026,
        "glm_effort_map": EFFORT_MAP_2026,
        "glm_stop_on_disconnect": True,
        "glm_time_sync": True,
        "glm_model_catalogue": True,
        "glm_device_id_strategy": "jwt_claim",
        "glm_exp_groups": "mainchat_server_app:exp:A",
        "glm_member_info": True,
        "glm_daily_claim": True,
    },
    "2025": {
        "glm_upload_path": "/backend-api/assistant/file_upload",
        "glm_upload_signed": False,
        "glm_upload_fields": "",
        "glm_attachment_items": "2025",
        "glm_delete_methods": ("legacy",),
        "glm_send_selected_model": False,
        "glm_if_plus_model": True,
        "glm_mode_map": MODE_MAP_2025,
        "glm_effort_map": EFFORT_MAP_2025,
        "glm_stop_on_disconnect": False,
        "glm_time_sync": False,
        "glm_model_catalogue": False,
        "glm_device_id_strategy": "per_request",
        "glm_exp_groups": "",
        "glm_member_info": False,
        "glm_daily_claim": False,
    },
}

PROFILE_SETTINGS = frozenset(PROFILES["2026"])


def parse_pairs(text: str) -> dict[str, str]:
    """``"a=1,b=2"`` -> ``{"a": "1", "b": "2"}``; raises ValueError on an item without ``=``."""
    pairs: dict[str, str] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected name=value items, got {item!r}")
        pairs[key.strip().lower()] = value.strip()
    return pairs


def parse_mode_map(text: str) -> dict[str, tuple[str, str]]:
    """``"thinking=thinking:high,..."`` -> ``{"thinking": ("thinking", "high"), ...}``."""
    table = {}
    for mode, value in parse_pairs(text).items():
        chat_mode, _, effort = value.partition(":")
        table[mode] = (chat_mode.strip(), effort.strip())
    return table


# Per-request readers of the maps: each parses a setting's text once, keyed by the text
# itself (apps with other settings live side by side in one process, in the tests), and
# shares the table read-only. A bad text raises as before (a cache keeps no errors).
@functools.lru_cache(maxsize=32)
def pairs_table(text: str) -> Mapping[str, str]:
    """``parse_pairs(text)``, parsed once per text and read-only."""
    return MappingProxyType(parse_pairs(text))


@functools.lru_cache(maxsize=32)
def mode_table(text: str) -> Mapping[str, tuple[str, str]]:
    """``parse_mode_map(text)``, parsed once per text and read-only."""
    return MappingProxyType(parse_mode_map(text))
