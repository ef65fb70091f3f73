"""Application services: the layer between the thin views and the upstream client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import current_app

if TYPE_CHECKING:
    from glm_proxy.access.auth import Authenticator
    from glm_proxy.access.limits import KeyLimits
    from glm_proxy.attachments.service import AttachmentService
    from glm_proxy.background.janitor import Janitor
    from glm_proxy.config import Settings
    from glm_proxy.pool.core import AccountPool
    from glm_proxy.pool.operations import PoolOperations
    from glm_proxy.protocol.model_table import ModelTable
    from glm_proxy.store.base import Store
    from glm_proxy.store.journal import Journal
    from glm_proxy.upstream.client import UpstreamClient


@dataclass
class Services:
    """Everything a request needs, built once per app by ``create_app``."""

    settings: Settings
    store: Store
    upstream: UpstreamClient
    pool: AccountPool
    operations: PoolOperations  # what operators ask of the pool (admin API, token rotation)
    janitor: Janitor
    models: ModelTable
    auth: Authenticator  # who is calling (``glm_proxy.access.auth``)
    limits: KeyLimits  # per-key rate/concurrency limits and usage (``glm_proxy.access.limits``)
    attachments: AttachmentService | None = None  # attachment uploader, when configured
    journal: Journal | None = None  # conversations not yet confirmed deleted (crash safety)


def services() -> Services:
    """This app's services: the one place request code reaches into the Flask app."""
    return current_app.extensions["glm_services"]
