"""HTTP API: one blueprint per endpoint family."""

from __future__ import annotations

from flask import Flask


def register_blueprints(app: Flask) -> None:
    from glm_proxy.api import (
        admin,
        anthropic,
        anthropic_tokens,
        chat,
        health,
        images,
        metrics,
        models,
        responses,
        tokens,
        videos,
    )

    families = (
        health,
        models,
        tokens,
        chat,
        anthropic,
        anthropic_tokens,
        responses,
        images,
        videos,
        admin,
        metrics,
    )
    for module in families:
        app.register_blueprint(module.bp)
