"""The CPU floor of a Python proxy hop on the core benchmark's workload: a relay that only copies.

Not collected by pytest. Run from the repository root:

    python tests/bench/bench_floor.py [--rounds 16] [--streams 32]

Starts the simulator (2026 protocol) and the null relay (``_null_relay.py``:
gevent, one ``recv`` and one ``sendall`` per read, nothing parsed) in front of
it, then runs ``bench_core.py``'s workload through the relay, ``--streams``
clients at once: each answer is 2,000 characters in 40 snapshots 10 ms apart,
then its conversation is deleted, so the relay carries the same two requests
per answer the proxy sends upstream. Prints the relay's CPU milliseconds per
completion (user + system, and user alone).

That is what any gevent proxy pays to move these bytes on this machine: the
event loop's wake-ups, the socket calls and the kernel's loopback work.
``bench_core.py``'s ``cpu/cmpl`` minus this figure is what the proxy spends on
everything else (parsing, translating, the wire format, the request path).

Everything stays on 127.0.0.1.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import psutil  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.bench_core import FAST, first_token_direct  # noqa: E402
from tests.bench.bench_first_token import start_simulator_and_relay  # noqa: E402
from tests.bench.bench_stream import (  # noqa: E402
    access_token,
    closed_loop,
    run_concurrently,
    session,
)
from tests.conftest import wait_http  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--streams", type=int, default=32)
    args = parser.parse_args()
    sim, relay, sim_port, relay_port = start_simulator_and_relay()
    try:
        sim_base, relay_base = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{relay_port}"
        wait_http(f"{sim_base}/_sim/health", proc=sim)
        time.sleep(0.5)
        k = args.streams
        http = session(k + 10)
        tokens = [f"floor-{i}-{uuid.uuid4().hex[:8]}" for i in range(k)]
        accesses = run_concurrently(
            k, lambda t: access_token(http, sim_base, t), [(t,) for t in tokens]
        )
        calls = [(http, relay_base, access, FAST) for access in accesses]
        closed_loop(first_token_direct, calls, 1, 0.4)  # warm-up: connections, code
        process = psutil.Process(relay.pid)
        before = process.cpu_times()
        closed_loop(first_token_direct, calls, args.rounds, 0.4)
        after = process.cpu_times()
        completions = k * args.rounds
        user = (after.user - before.user) * 1000 / completions
        system = (after.system - before.system) * 1000 / completions
        print(
            f"null relay, {k} streams, {completions} answers: "
            f"cpu/cmpl {user + system:.2f} ms (user {user:.2f}, system {system:.2f})"
        )
    finally:
        relay.terminate()
        sim.terminate()
        relay.wait(timeout=10)
        sim.wait(timeout=10)


if __name__ == "__main__":
    main()
