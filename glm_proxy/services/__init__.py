"""Application services: the layer between the thin views and the upstream client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app


@dataclass
class Services:
    settings: Any
    store: Any
    upstream: Any
    pool: Any
    janitor: Any
    models: Any
    attachments: Any = None  # attachment uploader, when configured


def services() -> Services:
    return current_app.extensions["glm_services"]
