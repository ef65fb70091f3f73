"""The team console: ``/console``, a web page for the pool, the keys and the usage.

On only when ``ADMIN_KEY`` is set (otherwise ``/console`` is a 404). ``init_app``
wires it into the app with three small hooks: the blueprint, a key source for
the authenticator (keys made in the console authenticate like file keys, with
their own limits, models and accounts) and the registry that joins accounts
made in the console to the pool. It also records, for every ``/v1/`` request
but successful reads, the usage history and the activity line the pages show.

Modules: ``data`` (records and the storage interface; ``sqlite_data``,
``redis_data``), ``registry`` (keys and accounts live in every process),
``session`` (sign-in, cookies, CSRF), ``usage`` (history), ``charts`` (SVG),
``pool_view`` (the one adapter over the pool), ``views`` and ``manage`` (pages).
"""

from __future__ import annotations

import logging
import sqlite3

from flask import Flask, Response, request

from glm_proxy.config import ConfigError

log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    """Mount the console when ``ADMIN_KEY`` is set."""
    settings = app.extensions["glm_settings"]
    if not settings.admin_key:
        return
    from glm_proxy.console import manage, views  # noqa: F401 - manage adds its routes to bp
    from glm_proxy.console.data import open_data
    from glm_proxy.console.registry import ConsoleRegistry
    from glm_proxy.console.session import Sessions
    from glm_proxy.console.state import Console
    from glm_proxy.console.usage import record_request
    from glm_proxy.http.plumbing import request_record

    store, pool = app.extensions["glm_store"], app.extensions["glm_pool"]
    data = open_data(settings, store)
    if data.backend == "sqlite":
        try:
            data.version()
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"DATA_DIR: cannot keep the console's data in {settings.data_dir!r} ({exc}); "
                "make it a writable directory, or empty to keep the data in memory"
            ) from None
    registry = ConsoleRegistry(data, pool)
    registry.maybe_refresh(force=True)
    app.extensions["glm_auth"].key_sources.append(registry)
    upstream = app.extensions["glm_upstream"]
    if settings.follow_token_rotation:
        follow_file = upstream.on_rotation

        def follow(account, new_token: str) -> None:
            if follow_file is not None:
                follow_file(account, new_token)
            registry.follow_rotation(account, new_token)

        upstream.on_rotation = follow
    app.extensions["glm_console"] = Console(data, registry, Sessions(settings, store))
    app.register_blueprint(views.bp)

    @app.before_request
    def _follow_console() -> None:
        registry.maybe_refresh()

    @app.after_request
    def _count(response: Response) -> Response:
        path, status = request.path, response.status_code
        # Successful reads (model lists, job polls) would drown the answers: not counted.
        if path.startswith("/v1/") and (request.method != "GET" or status >= 400):
            record = request_record()
            response.call_on_close(lambda: record_request(data, record, status, path))
        return response

    log.info("console at /console (%s data)", data.backend)
