"""Soak: does pacing keep accounts below the upstream's verification threshold?

Not collected by pytest. Run from the repository root:

    python tests/bench/bench_pacing.py [--accounts 4] [--n 6] [--window 12] [--load 2]

The simulator shows its HTML access-verification page to an account after
``--n`` answers within ``--window`` seconds (time scaled down: the window
stands for the upstream's hour) and keeps showing it for an hour. The proxy
gets ``--load`` times what the pool may answer (accounts x n per window),
offered at an even rate for one window, twice:

- pacing on: ``ACCOUNT_MAX_PER_HOUR=n`` with the hour scaled to the window
  (``ACCOUNT_BUDGET_HOUR``, a few percent longer than the simulator's window:
  the margin an operator keeps below a limit they only know roughly);
- pacing off: no budgets.

It prints, per run: answers served, clean 429s (each with ``Retry-After`` and
an OpenAI error object), other failures, verification pages the simulator
served, and how many accounts it challenged.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.conftest import (  # noqa: E402
    launch_simulator,
    start_proxy,
    stop_proxy,
    stop_simulator,
)


def one_request(base: str, key: str, index: int) -> tuple[str, bool]:
    """(outcome, clean): outcome is the status code or the error kind."""
    try:
        resp = requests.post(
            f"{base}/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "glm-5.3", "messages": [{"role": "user", "content": f"q{index}"}]},
            timeout=60,
        )
    except requests.RequestException as exc:
        return type(exc).__name__, False
    if resp.status_code != 429:
        return str(resp.status_code), resp.status_code == 200
    try:
        error = resp.json()["error"]
        clean = bool(resp.headers.get("Retry-After")) and error["type"] == "rate_limit_error"
    except (ValueError, KeyError, TypeError):
        clean = False
    return "429", clean


def run(sim, args, pacing: bool) -> dict:
    tokens = [f"rt-{uuid.uuid4().hex}" for _ in range(args.accounts)]
    key = f"sk-bench-{uuid.uuid4().hex}"
    env = {"ACCOUNTS": ",".join(tokens), "API_KEYS": f"bench:{key}", "QUEUE_TIMEOUT": "2"}
    if pacing:
        env |= {
            "ACCOUNT_MAX_PER_HOUR": str(args.n),
            "ACCOUNT_BUDGET_HOUR": str(args.window * (1 + args.margin)),
        }
    total = int(args.accounts * args.n * args.load)
    interval = args.window / total
    with tempfile.TemporaryDirectory() as tmp:
        proxy = start_proxy(sim, Path(tmp), LOG_LEVEL="WARNING", **env)
        try:
            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=64) as pool:
                futures = []
                for i in range(total):
                    delay = started + i * interval - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    futures.append(pool.submit(one_request, proxy.base, key, i))
                results = [f.result() for f in futures]
            elapsed = time.monotonic() - started
        finally:
            stop_proxy(proxy)
    state = sim.state()
    care = {k: v for k, v in state["care"].items() if k in tokens}
    pages = sum(
        1
        for r in state["requests"]
        if r["path"].endswith("/assistant/stream")
        and r.get("account") in tokens
        and (r.get("stream") or {}).get("refused")
    )
    outcomes = Counter(outcome for outcome, _ in results)
    return {
        "offered": total,
        "seconds": round(elapsed, 1),
        "served": outcomes.get("200", 0),
        "429": outcomes.get("429", 0),
        "429_clean": sum(1 for outcome, clean in results if outcome == "429" and clean),
        "other": {k: v for k, v in outcomes.items() if k not in ("200", "429")},
        "verification_pages": pages,
        "accounts_challenged": sum(1 for record in care.values() if record["challenges"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=4)
    parser.add_argument("--n", type=int, default=6, help="answers per account per window")
    parser.add_argument("--window", type=float, default=12.0, help="seconds standing for an hour")
    parser.add_argument("--load", type=float, default=2.0, help="offered / allowed")
    parser.add_argument("--margin", type=float, default=0.05, help="budget window margin")
    args = parser.parse_args()
    sim = launch_simulator("2026")
    try:
        sim.config(verify_after=args.n, verify_window=args.window, verify_hold=3600.0, delay=0.0)
        print(
            f"{args.accounts} accounts, verification after {args.n} answers per account per "
            f"{args.window:g}s, {args.load:g}x load offered over one window"
        )
        for pacing in (True, False):
            figures = run(sim, args, pacing)
            print(f"pacing {'on ' if pacing else 'off'}: {figures}")
    finally:
        stop_simulator(sim)


if __name__ == "__main__":
    main()
