"""The environment every benchmark starts its gunicorn with (no gevent here: threaded
benchmarks import it too)."""

from __future__ import annotations

import os


def proxy_env(proxy_port: int, sim_port: int, **settings: str) -> dict[str, str]:
    """The environment of a benchmark's gunicorn: this one, the proxy on 127.0.0.1 in front of
    the simulator, quiet logs, no Redis, plus ``settings``."""
    return {
        **os.environ,
        "PORT": str(proxy_port),
        "HOST": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
        "GLM_BASE_URL": f"http://127.0.0.1:{sim_port}/chatglm",
        "REDIS_URL": "",
        **settings,
    }
