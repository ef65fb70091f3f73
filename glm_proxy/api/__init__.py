"""HTTP API: one blueprint per endpoint family."""

from __future__ import annotations

from flask import Flask


def register_blueprints(app: Flask) -> None:
    from glm_proxy.api import chat, health, models, tokens

    for module in (health, models, tokens, chat):
        app.register_blueprint(module.bp)
