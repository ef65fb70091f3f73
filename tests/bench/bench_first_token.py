"""Where a one-stream first token's time goes: straight, through a null relay, through the proxy.

Not collected by pytest. Run from the repository root:

    python tests/bench/bench_first_token.py [--requests 150] [--header-wait SECONDS]

Starts the simulator (2026 protocol), a null TCP relay in front of it
(``_null_relay.py``: the floor any extra hop adds on this machine) and the
proxy with timestamps on its request path (``_gunicorn_timed.py``), then sends
one short streamed answer at a time, in turn straight to the simulator,
through the relay and through the proxy. Prints the first-token p50 of each
and the proxy's timeline: medians, in ms from the moment the client starts
the request, on one clock for the client and the worker (``perf_counter_ns``).

Everything stays on 127.0.0.1.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench._proxy_env import proxy_env  # noqa: E402
from tests.bench.bench_core import first_token_and_head, first_token_direct  # noqa: E402
from tests.bench.bench_stream import access_token, session  # noqa: E402
from tests.conftest import free_port, wait_http  # noqa: E402

PROMPT = "first [[sim:long n=3 chars=150 delay=0.01 chunk=0]]"  # first text 10 ms after the head
QUIET = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": ROOT}


def start_simulator_and_relay() -> tuple[subprocess.Popen, subprocess.Popen, int, int]:
    """The simulator (2026 protocol) and the null relay in front of it, on free ports."""
    sim_port, relay_port = free_port(), free_port()
    sim = subprocess.Popen(
        [sys.executable, "-m", "tests.simulator", "--host", "127.0.0.1", "--port", str(sim_port)]
        + ["--chunk-size", "0", "--era", "E3"],
        **QUIET,
    )
    relay = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("_null_relay.py"))]
        + [str(relay_port), str(sim_port)],
        **QUIET,
    )
    return sim, relay, sim_port, relay_port


def start(timeline: str, header_wait: str) -> tuple[list[subprocess.Popen], str, str, str]:
    sim, relay, sim_port, relay_port = start_simulator_and_relay()
    proxy_port = free_port()
    env = proxy_env(proxy_port, sim_port, GLM_PROTOCOL="2026", GLM_PROXY_TIMELINE=timeline)
    if header_wait:
        env["STREAM_HEADER_WAIT"] = header_wait
    config = str(Path(__file__).with_name("_gunicorn_timed.py"))
    proxy = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", config, "wsgi:app"], env=env, **QUIET
    )
    bases = (f"http://127.0.0.1:{p}" for p in (sim_port, relay_port, proxy_port))
    return [sim, relay, proxy], *bases


def timeline_medians(path: str, client: list[tuple[int, int, int]]) -> list[tuple[str, float]]:
    """Each proxy request's marks, matched to the client request they fall in, as medians."""
    rows = []
    with open(path) as lines:
        for line in lines:
            rows.append({k: int(v) for k, v in (pair.split("=") for pair in line.split())})
    offsets: dict[str, list[float]] = {}
    for started, head, first in client:
        (row,) = [r for r in rows if started <= r["request_at_the_app"] <= first] or [None]
        if row is None:
            continue
        client_marks = [("client_has_parsed_the_head", head), ("client_has_the_first_token", first)]
        for label, at in [*row.items(), *client_marks]:
            offsets.setdefault(label, []).append((at - started) / 1e6)
    medians = [(label.replace("_", " "), statistics.median(v)) for label, v in offsets.items()]
    return sorted(medians, key=lambda item: item[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=150)
    parser.add_argument(
        "--header-wait",
        default="",
        help="the proxy's STREAM_HEADER_WAIT (0: the head goes out before the upstream answers)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        timeline = os.path.join(tmp, "timeline.txt")
        processes, sim, relay, proxy = start(timeline, args.header_wait)
        try:
            wait_http(f"{sim}/_sim/health", proc=processes[0])
            wait_http(f"{proxy}/ping", proc=processes[2])
            http = session(4)
            token = "first-token-bench"
            access = access_token(http, sim, token)
            for _ in range(5):  # warm: connections, caches, the account's token
                first_token_direct(http, relay, access, PROMPT)
                first_token_and_head(http, proxy, token, PROMPT)
            direct, relayed, proxied, client = [], [], [], []
            for _ in range(args.requests):
                direct.append(first_token_direct(http, sim, access, PROMPT) * 1000)
                time.sleep(0.02)
                relayed.append(first_token_direct(http, relay, access, PROMPT) * 1000)
                time.sleep(0.02)
                started = time.perf_counter_ns()
                head, seconds = first_token_and_head(http, proxy, token, PROMPT)
                proxied.append(seconds * 1000)
                client.append((started, started + int(head * 1e9), started + int(seconds * 1e9)))
                time.sleep(0.02)
            d, r, p = (statistics.median(v) for v in (direct, relayed, proxied))
            print(f"first token, one stream, {args.requests} requests each, p50 in ms:")
            print(f"  straight from the simulator {d:6.2f}")
            print(f"  through a null relay        {r:6.2f}  (+{r - d:.2f})")
            print(f"  through the proxy           {p:6.2f}  (+{p - d:.2f})")
            print("the proxy's timeline, ms from the client's start (medians):")
            for label, at in timeline_medians(timeline, client):
                print(f"  {label:<28} {at:6.2f}")
        finally:
            processes[2].send_signal(2)
            for process in processes[:2]:
                process.terminate()
            for process in processes:
                process.wait(timeout=60)


if __name__ == "__main__":
    main()
