"""gunicorn's settings and the other variables read outside the app's request path.

``gunicorn.conf.py`` builds ``Settings`` and takes its values from here, so the
server's variables are declared, parsed and documented like every other one.
``PROMETHEUS_MULTIPROC_DIR`` is read by prometheus_client itself; it is declared
here so the table documents it and the app asks ``Settings`` whether it is set.
The doctor's token and cookies are read here too, for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from glm_proxy.config.parsing import setting


@dataclass(frozen=True)
class GunicornSettings:
    """The HTTP server: where it listens, its connections and its timeouts."""

    host: str = setting("HOST", "0.0.0.0", str, "Address to listen on.")
    port: int = setting("PORT", 8000, int, "Port to listen on.")
    worker_connections: int = setting(
        "WORKER_CONNECTIONS",
        2000,
        int,
        "Concurrent connections per gevent worker; at 90% the longest waits for a request "
        "head are closed.",
    )
    gunicorn_timeout: int = setting(
        "GUNICORN_TIMEOUT", 120, int, "Seconds before a frozen worker is restarted."
    )
    graceful_timeout: int = setting(
        "GRACEFUL_TIMEOUT", 120, int, "On SIGTERM, seconds in-flight streams get to finish."
    )
    keepalive: int = setting(
        "KEEPALIVE", 75, int, "HTTP keep-alive seconds (longer than typical load balancers')."
    )
    gc_interval: float = setting(
        "GC_INTERVAL",
        0.05,
        float,
        "Seconds between the worker's collections of young objects: short pauses on a clock "
        "instead of long ones when CPython's counters decide; 0 leaves the pace to CPython.",
    )
    forwarded_allow_ips: str = setting(
        "FORWARDED_ALLOW_IPS", "127.0.0.1", str, "Proxies trusted for `X-Forwarded-*`."
    )
    prometheus_multiproc_dir: str = setting(
        "PROMETHEUS_MULTIPROC_DIR",
        "",
        str,
        "With several workers: an empty writable directory, so `/metrics` aggregates all "
        "workers (read by prometheus_client itself as well).",
    )


@dataclass(frozen=True)
class DoctorSettings:
    """``python -m glm_proxy doctor``: the account it checks."""

    doctor_refresh_token: str = setting(
        "GLM_REFRESH_TOKEN",
        "",
        str,
        "`doctor` only: the refresh token to check (asked for when empty).",
    )
    doctor_cookies: str = setting(
        "GLM_COOKIES",
        "",
        str,
        "`doctor` only: browser cookies for the checked account (a `Cookie:` header value "
        "or a Netscape cookies.txt path).",
    )
