"""gunicorn settings, following the platforms' conventions (Render, Heroku, a VPS).

Start with: ``gunicorn -c gunicorn.conf.py wsgi:app``. Every value comes from
the parsed ``Settings`` (``glm_proxy/config/gunicorn.py``), so a bad variable
stops the server with a message naming it, and docs/configuration.md lists them.
"""

from glm_proxy.config import Settings

_settings = Settings.from_env()

bind = f"{_settings.host}:{_settings.port}"
# gunicorn's gevent worker plus a request-head timeout (REQUEST_HEAD_TIMEOUT), a 400 for
# non-HTTP bytes and shedding of idle connections near WORKER_CONNECTIONS: see
# glm_proxy/serving/worker.py.
worker_class = "glm_proxy.serving.worker.HeadTimeoutWorker"
workers = _settings.web_concurrency
# One gevent worker holds thousands of idle-ish streams; each is a greenlet.
worker_connections = _settings.worker_connections
# gevent workers heartbeat from their own loop, so this only catches a frozen
# worker; long streams are fine.
timeout = _settings.gunicorn_timeout
# On SIGTERM, in-flight streams get this long to finish.
graceful_timeout = _settings.graceful_timeout
keepalive = _settings.keepalive
# Several instances on one host must not share a control socket.
control_socket_disable = True
accesslog = None
errorlog = "-"
loglevel = _settings.log_level.lower()
forwarded_allow_ips = _settings.forwarded_allow_ips
# The app is built in each worker after gevent patched the standard library.
preload_app = False


# -- request limits ----------------------------------------------------------------
# gunicorn's own limits sit above the app's (MAX_URL_LENGTH, MAX_HEADERS,
# MAX_HEADER_SIZE), so an oversize head reaches the app and is refused there
# with an error object in the route's shape. What gunicorn still refuses itself
# (past these, or framing it cannot parse) gets a JSON page too: see
# glm_proxy/http/wire_errors.py and the README's "Limits".
limit_request_line = 8190  # gunicorn's largest finite request line (0 would mean unlimited)
limit_request_fields = _settings.max_headers + 28
limit_request_field_size = _settings.max_header_size + 1024


def _json_error_pages() -> None:
    from glm_proxy.http import wire_errors

    wire_errors.install()


_json_error_pages()


def on_starting(server):
    """Refuse to start several workers that would each keep private state."""
    from glm_proxy.config import ConfigError

    settings = Settings.from_env({"WEB_CONCURRENCY": str(server.cfg.workers)})
    if server.cfg.workers > 1 and settings.store_backend != "redis":
        raise ConfigError(
            f"{server.cfg.workers} workers need shared state: set REDIS_URL (or run one "
            "worker). With the in-memory store each worker would keep its own leases, "
            "token cache and conversation map, and accounts would be double-booked."
        )


def post_worker_init(worker):
    """On SIGTERM, end open answers cleanly before ``graceful_timeout`` runs out.

    gunicorn's own handler stops accepting; ours also starts
    ``glm_proxy.background.shutdown`` (queued requests get 503 + Retry-After,
    streams end with a retry-able error event and their conversations are
    deleted, ``SHUTDOWN_MARGIN`` seconds before the worker would be killed).
    """
    import signal

    import gevent

    from glm_proxy.background import shutdown

    extensions = getattr(worker.wsgi, "extensions", {})
    settings = extensions.get("glm_settings")
    margin = settings.shutdown_margin if settings is not None else 5.0
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(sig, frame):
        gevent.spawn(shutdown.begin, worker.cfg.graceful_timeout, margin)
        if callable(previous):
            previous(sig, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
    # The cyclic collector on a clock (GC_INTERVAL), the startup objects frozen:
    # see glm_proxy/serving/collector.py.
    from glm_proxy.serving import collector

    collector.start(_settings.gc_interval)


def worker_exit(server, worker):
    """Let background conversation deletions finish before the worker goes away.

    Then the frozen startup objects go back to the collector: left frozen they
    are torn down after the modules they need, which prints tracebacks.
    """
    try:
        from wsgi import app

        app.extensions["glm_services"].janitor.join(timeout=10)
    except Exception:  # noqa: BLE001
        pass
    from glm_proxy.serving import collector

    collector.unfreeze()


def child_exit(server, worker):
    """In Prometheus multi-process mode, drop a dead worker's live gauges."""
    if _settings.prometheus_multiproc_dir:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
