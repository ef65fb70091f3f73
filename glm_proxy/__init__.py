"""glm-proxy: an OpenAI-compatible API in front of a chatglm.cn web account."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app. ``config`` maps setting names (as environment variables) to values."""
    from glm_proxy import attachments, console, pool, store, upstream
    from glm_proxy.access import auth, limits
    from glm_proxy.api import register_blueprints
    from glm_proxy.background import recovery, sweeper
    from glm_proxy.background.janitor import Janitor
    from glm_proxy.config import Settings
    from glm_proxy.http import plumbing as web
    from glm_proxy.observability import logs
    from glm_proxy.protocol.model_table import ModelTable
    from glm_proxy.services import Services

    settings = Settings.from_env(config)
    logs.configure(settings.log_level)
    app = Flask(__name__)
    app.config["TESTING"] = bool((config or {}).get("TESTING"))
    app.extensions["glm_settings"] = settings
    store.init_app(app)
    upstream.init_app(app)
    attachments.init_app(app)
    pool.init_app(app)
    auth.init_app(app)
    limits.init_app(app)
    sweeper.init_app(app)
    recovery.init_app(app)
    web.init_app(app)
    upstream_client = app.extensions["glm_upstream"]
    app.extensions["glm_services"] = Services(
        settings=settings,
        store=app.extensions["glm_store"],
        upstream=upstream_client,
        pool=app.extensions["glm_pool"],
        operations=app.extensions["glm_pool_operations"],
        janitor=Janitor(upstream_client, journal=app.extensions["glm_journal"]),
        models=ModelTable.load(
            settings.models_file, aliases="" if settings.strict_models else settings.model_aliases
        ),
        auth=app.extensions["glm_auth"],
        limits=app.extensions["glm_limits"],
        attachments=app.extensions["glm_attachments"],
        journal=app.extensions["glm_journal"],
    )
    register_blueprints(app)
    console.init_app(app)
    return app
