"""The benchmarks' gunicorn settings still serve a stream.

``tests/bench/_gunicorn_timed.py`` and ``_gunicorn_worker_figures.py`` wrap
methods of the streaming core to stamp or time them. When a wrapped method's
signature changes, the wrapper breaks every stream, and the benchmark then
reports failures instead of figures (the worker-figures wrapper once dropped
a write's new argument). Each config is started here the way its benchmark
starts it, and one streamed answer must come through whole and be recorded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench._proxy_env import stream_answer
from tests.conftest import ROOT, Simulator, free_port, wait_http

BENCH = ROOT / "tests" / "bench"
PROMPT = "bench [[sim:long n=4 chars=80 delay=0.01 chunk=0]]"


@pytest.mark.parametrize(
    ("config", "variable"),
    [
        ("_gunicorn_timed.py", "GLM_PROXY_TIMELINE"),
        ("_gunicorn_worker_figures.py", "GLM_BENCH_WORKER_FIGURES"),
    ],
)
def test_a_benchmark_config_serves_a_stream_and_records_it(
    simulator: Simulator, tmp_path: Path, token: str, config: str, variable: str
) -> None:
    port, record = free_port(), tmp_path / "figures.txt"
    env = {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "GLM_BASE_URL": simulator.glm_base_url,
        "GLM_PROTOCOL": simulator.profile,
        "LOG_LEVEL": "WARNING",
        "REDIS_URL": "",
        variable: str(record),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(BENCH / config), "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/ping", proc=proc)
        status, body = stream_answer(base, token, PROMPT)
        assert status == 200
        assert body.endswith(b"data: [DONE]\n\n"), body[-200:]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert record.exists() and record.read_text().strip(), "the worker recorded nothing"
