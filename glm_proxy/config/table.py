"""The configuration table (docs/configuration.md), generated from the settings' own metadata.

The table is the one place the docs list settings with their defaults and
descriptions; ``python -m glm_proxy.config`` prints it, and a test checks that
docs/configuration.md holds exactly this text.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from glm_proxy.config.parsing import FROM_PROFILE
from glm_proxy.config.settings import Settings
from glm_proxy.protocol.profiles import PROFILES, PROTOCOLS

SIZES = {
    "MAX_REQUEST_BODY",
    "MAX_FILE_SIZE",
    "MAX_ATTACHMENT_BYTES",
    "MAX_SCHEMA_BYTES",
}  # shown in MiB


def documented_settings() -> list[tuple[str, Any, str]]:
    """(variable, default, description) for every setting; the docs table is built from it."""
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
    """The configuration table (``python -m glm_proxy.config``)."""
    lines = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for env, default, doc in documented_settings():
        shown = str(default).lower() if isinstance(default, bool) else str(default)
        if env in SIZES and isinstance(default, int):
            shown = f"{default // 1024**2}M"
        if not shown.startswith("(profile)"):
            shown = f"`{shown}`" if shown else "(empty)"
        lines.append(f"| `{env}` | {shown} | {doc} |")
    return "\n".join(lines)
