"""The environment every benchmark starts its gunicorn with, and one streamed answer through
it (no gevent here: threaded benchmarks and tests import it too)."""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import tempfile

import requests

PROFILE_OF_ERA = {"E3": "2026", "E2": "2025"}  # the simulator's era -> the proxy's GLM_PROTOCOL


def add_era_option(parser: argparse.ArgumentParser) -> None:
    """``--era``: the upstream protocol the simulator speaks, for a benchmark of an older tree."""
    parser.add_argument(
        "--era",
        default="E3",
        choices=tuple(PROFILE_OF_ERA),
        help="upstream protocol the simulator speaks (E2: the 2025 one, for trees before 2026)",
    )


def proxy_env(proxy_port: int, sim_port: int, **settings: str) -> dict[str, str]:
    """The environment of a benchmark's gunicorn: this one, the proxy on 127.0.0.1 in front of
    the simulator, quiet logs, no Redis, plus ``settings``.

    ``DATA_DIR`` is a new empty directory (removed at exit): the conversation journal of an
    earlier run's killed worker would otherwise be recovered during this one, and its
    deletes counted as this run's work.
    """
    data_dir = tempfile.mkdtemp(prefix="glm-bench-data-")
    atexit.register(shutil.rmtree, data_dir, True)
    return {
        **os.environ,
        "PORT": str(proxy_port),
        "HOST": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
        "GLM_BASE_URL": f"http://127.0.0.1:{sim_port}/chatglm",
        "REDIS_URL": "",
        "DATA_DIR": data_dir,
        **settings,
    }


def stream_answer(
    base: str, token: str, prompt: str, *, timeout: float = 30, http=requests
) -> tuple[int, bytes]:
    """One streamed Chat Completions answer from the proxy at ``base``: status and whole body."""
    with http.post(
        f"{base}/v1/chat/completions",
        json={"model": "glm-4", "stream": True, "messages": [{"role": "user", "content": prompt}]},
        headers={"Authorization": f"Bearer {token}"},
        stream=True,
        timeout=timeout,
    ) as resp:
        return resp.status_code, b"".join(resp.iter_content(chunk_size=None))
