"""HTTP API: one blueprint per endpoint family."""

from __future__ import annotations

from flask import Flask


def register_blueprints(app: Flask) -> None:
    from glm_proxy.api import (
        admin,
        anthropic,
        chat,
        health,
        images,
        models,
        responses,
        tokens,
        videos,
    )

    for module in (health, models, tokens, chat, anthropic, responses, images, videos, admin):
        app.register_blueprint(module.bp)
