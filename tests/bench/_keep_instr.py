"""Instructions the gunicorn worker executes per streamed answer: a CPU figure without the noise.

Not collected by pytest. Needs valgrind (``apt-get install valgrind``). Run from
the repository root:

    python tests/bench/bench_instructions.py [--events 1 40] [--requests 20]

On a shared 2-vCPU machine one tree's CPU time per completion moves by 15%
between runs, more than most changes do. Instruction counts do not: the real
server (``gunicorn -c gunicorn.conf.py``) runs under callgrind, one client
sends answers one after another (after five to warm up), and the worker's
count for ``--requests`` more answers, less its count for none, divided by
``--requests``, is what one answer costs it. Two runs of one tree agree to
within half a percent. Each ``--events`` value is one workload: answers of
that many snapshots, 50 characters each, 5 ms apart (1: what a request costs
besides its events; 40: the core benchmark's answer).

Instructions are not time (cache misses and the kernel's share of the socket
calls are not in them), so the CPU figures of ``bench_core.py`` stay the
targets; this says which way, and by how much, a change moves the Python side.

Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench._proxy_env import (  # noqa: E402
    PROFILE_OF_ERA,
    add_era_option,
    proxy_env,
    stream_answer,
)
from tests.conftest import free_port, launch_simulator, stop_simulator, wait_http  # noqa: E402

WARM_UP = 5


def worker_instructions(events: int, answers: int, delay: float, era: str = "E3") -> int:
    """The gunicorn worker's instruction count over ``WARM_UP + answers`` answers, and its exit."""
    profile = PROFILE_OF_ERA[era]  # the proxy's GLM_PROTOCOL for that era
    sim = launch_simulator(profile, "--chunk-size", "0")
    sim_port, proxy_port = int(sim.base.rsplit(":", 1)[1]), free_port()
    out_dir = tempfile.mkdtemp(prefix="glm-callgrind-")
    env = proxy_env(
        proxy_port,
        sim_port,
        PYTHONHASHSEED="0",
        GUNICORN_TIMEOUT="600",
        GLM_PROTOCOL=profile,
    )
    proxy = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--trace-children=yes"]
        + [f"--callgrind-out-file={out_dir}/cg.%p", sys.executable, "-m", "gunicorn"]
        + ["-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{proxy_port}/ping", proc=proxy, timeout=300)
        http = requests.Session()
        prompt = f"bench [[sim:long n={events} chars={50 * events} delay={delay} chunk=0]]"
        base = f"http://127.0.0.1:{proxy_port}"
        for i in range(WARM_UP + answers):
            token = f"instructions-{i % 4}"
            status, body = stream_answer(base, token, prompt, timeout=300, http=http)
            if status != 200 or not body.endswith(b"data: [DONE]\n\n"):
                raise SystemExit(f"answer {i} failed: {status} {body[-200:]!r}")
        time.sleep(2.0)  # the janitor's batch window: the deletes belong to these answers
    finally:
        proxy.send_signal(signal.SIGINT)
        proxy.wait(timeout=300)
        stop_simulator(sim)
    counts = []
    for path in glob.glob(f"{out_dir}/cg.*"):
        text = Path(path).read_text(errors="replace")
        found = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
        if found:
            counts.append(int(found.group(1)))
    print("KEPT", out_dir)
    if len(counts) < 2:
        raise SystemExit("callgrind wrote no worker profile")
    return max(counts)  # the master only sleeps; the worker is the busy one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, nargs="+", default=[1, 40])
    parser.add_argument("--requests", type=int, default=20, help="answers measured per workload")
    parser.add_argument("--delay", type=float, default=0.005, help="seconds between snapshots")
    add_era_option(parser)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    os.chdir(ROOT)
    print("worker instructions per answer (callgrind; the difference of two runs)")
    for events in args.events:
        base = worker_instructions(events, 0, args.delay, args.era)
        more = worker_instructions(events, args.requests, args.delay, args.era)
        per_answer = (more - base) / args.requests
        print(f"  {events:>3} snapshot(s) per answer  {per_answer / 1e6:8.3f} M")


if __name__ == "__main__":
    main()
