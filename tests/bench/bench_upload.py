"""Peak memory of the proxy while it handles a 100 MB document.

Starts the upstream simulator, a static file server (``python -m http.server``
on a temp directory holding a generated PDF) and the real proxy under
gunicorn, sends one chat completion with the document attached by URL, and
samples the RSS of the proxy's worker process every 10 ms while the request
runs (download -> spooled temp file -> streamed multipart upload).

Run: ``python -m tests.bench.bench_upload [--size-mb 100]``. Prints baseline,
peak and growth of the worker's RSS next to the document size. Bounded
memory means the growth stays far below the document size.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil
import requests

from tests.conftest import ROOT, free_port, wait_http

MB = 1024 * 1024


def write_pdf(path: Path, size: int) -> None:
    """A PDF header followed by incompressible-ish padding, written in 1 MB blocks."""
    block = os.urandom(MB)
    with path.open("wb") as out:
        out.write(b"%PDF-1.4\n%bench\n")
        written = 16
        while written < size:
            chunk = block[: min(MB, size - written)]
            out.write(chunk)
            written += len(chunk)


def start(args: list[str], env: dict | None = None, cwd: Path = ROOT) -> subprocess.Popen:
    return subprocess.Popen(
        args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def worker_of(master: subprocess.Popen) -> psutil.Process:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = psutil.Process(master.pid).children()
        if children:
            return children[0]
        time.sleep(0.05)
    raise RuntimeError("gunicorn worker not found")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    args = parser.parse_args(argv)
    size = args.size_mb * MB
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            doc = Path(tmp) / "big.pdf"
            write_pdf(doc, size)
            sim_port, files_port, proxy_port = free_port(), free_port(), free_port()
            sim = [sys.executable, "-m", "tests.simulator", "--port", str(sim_port)]
            procs.append(start([*sim, "--era", "E3"]))  # the proxy's default protocol
            procs.append(
                start(
                    [sys.executable, "-m", "http.server", str(files_port), "--bind", "127.0.0.1"],
                    cwd=Path(tmp),
                )
            )
            env = {
                **os.environ,
                "PORT": str(proxy_port),
                "HOST": "127.0.0.1",
                "GLM_BASE_URL": f"http://127.0.0.1:{sim_port}/chatglm",
                "REDIS_URL": "",
                "FETCH_ALLOW_HOSTS": "127.0.0.1",
                "MAX_FILE_SIZE": f"{args.size_mb + 10}M",
                "GLM_MEDIA_TIMEOUT": "300",
                "LOG_LEVEL": "WARNING",
            }
            proxy = start(
                [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], env=env
            )
            procs.append(proxy)
            wait_http(f"http://127.0.0.1:{sim_port}/_sim/state")
            wait_http(f"http://127.0.0.1:{files_port}/")
            wait_http(f"http://127.0.0.1:{proxy_port}/ping")
            worker = worker_of(proxy)
            token = "rt-bench-" + uuid.uuid4().hex
            # Warm up (imports, first refresh, first request) before the baseline.
            requests.post(
                f"http://127.0.0.1:{proxy_port}/v1/chat/completions",
                headers={"Authorization": f"Bearer {token}"},
                json={"model": "glm-4", "messages": [{"role": "user", "content": "hi"}]},
                timeout=30,
            ).raise_for_status()
            time.sleep(0.5)
            baseline = worker.memory_info().rss
            peak = baseline
            done = threading.Event()

            def sample() -> None:
                nonlocal peak
                while not done.is_set():
                    peak = max(peak, worker.memory_info().rss)
                    time.sleep(0.01)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            started = time.monotonic()
            resp = requests.post(
                f"http://127.0.0.1:{proxy_port}/v1/chat/completions",
                headers={"Authorization": f"Bearer {token}"},
                json={
                    "model": "glm-4",
                    "messages": [
                        {
                            "role": "user",
                            "content": [
                                {"type": "text", "text": "Summarise this document."},
                                {
                                    "type": "file",
                                    "file_url": {"url": f"http://127.0.0.1:{files_port}/big.pdf"},
                                },
                            ],
                        }
                    ],
                },
                timeout=600,
            )
            elapsed = time.monotonic() - started
            done.set()
            sampler.join()
            if resp.status_code != 200:
                raise SystemExit(f"request failed: HTTP {resp.status_code} {resp.text[:500]}")
            uploads = requests.get(f"http://127.0.0.1:{sim_port}/_sim/state", timeout=30).json()
            uploaded = [u["size"] for u in uploads["uploads"] if u["account"] == token]
            assert uploaded == [size], uploaded
            print(f"document:        {size / MB:8.1f} MiB (fetched by URL, uploaded upstream)")
            print(f"worker baseline: {baseline / MB:8.1f} MiB RSS")
            print(f"worker peak:     {peak / MB:8.1f} MiB RSS")
            print(
                f"growth:          {(peak - baseline) / MB:8.1f} MiB "
                f"({(peak - baseline) / size:.1%} of the document)"
            )
            print(f"time:            {elapsed:8.1f} s")
        finally:
            for proc in reversed(procs):
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    main()
