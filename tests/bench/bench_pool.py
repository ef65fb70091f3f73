"""Scheduling overhead of the account pool: memory store vs Redis.

Not collected by pytest. Run from the repository root:

    python tests/bench/bench_pool.py [--clients 50] [--accounts 10] [--hold 0.02]
                                     [--seconds 10] [--redis-url redis://...] [--pools 2]

``--clients`` greenlets each loop: lease one of ``--accounts`` accounts, hold
it ``--hold`` seconds (a stand-in for streaming an answer), release it. With
more clients than accounts most time is spent waiting in line, so the figures
that matter are:

- queue wait: time inside ``AccountPool.lease`` (waiting + the lease step), p50/p99;
- acquire: one ``Store.lease_acquire`` call (the atomic step: Python under a
  mutex, or one Lua script round trip), p50/p99;
- utilisation: share of account-time spent holding a lease (1.0 = no account
  ever idle while someone waits), and leases per second;
- violations: times an account was held by more than one client (must be 0).

For Redis the benchmark starts a private ``redis-server`` on a free port
unless ``--redis-url`` is given, and splits the clients over ``--pools``
separate pool instances (separate connections, woken through pub/sub) to
mimic several workers.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from glm_proxy.accounts import Account  # noqa: E402
from glm_proxy.config import Settings  # noqa: E402
from glm_proxy.pool import AccountPool, PoolEntry  # noqa: E402
from glm_proxy.store.base import Store  # noqa: E402
from glm_proxy.store.memory import MemoryStore  # noqa: E402
from tests.conftest import free_port  # noqa: E402


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


class TimedStore:
    """Wraps a store to time every lease step."""

    def __init__(self, inner: Store, samples: list[float]) -> None:
        self._inner = inner
        self._samples = samples

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    @property
    def shares_across_processes(self) -> bool:
        return self._inner.shares_across_processes

    def lease_acquire(self, request):
        started = time.perf_counter()
        try:
            return self._inner.lease_acquire(request)
        finally:
            self._samples.append(time.perf_counter() - started)


def run(stores: list[Store], args: argparse.Namespace) -> dict:
    settings = Settings.from_mapping(
        {"QUEUE_TIMEOUT": "120", "QUEUE_MAX": "10000", "LEASE_TTL": "30"}
    )
    accounts = [Account.from_token(f"bench-{uuid.uuid4().hex}") for _ in range(args.accounts)]
    acquire_times: list[float] = []
    pools = []
    for store in stores:
        entries = [PoolEntry(a) for a in accounts]
        pool = AccountPool(settings, TimedStore(store, acquire_times), entries)
        pool.listen()
        pools.append(pool)
    waits: list[float] = []
    held = Counter()
    violations = 0
    hold_total = 0.0
    stop_at = time.monotonic() + args.seconds

    def client(n: int) -> None:
        nonlocal violations, hold_total
        pool = pools[n % len(pools)]
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            lease = pool.lease(accounts)
            waits.append(time.perf_counter() - started)
            fp = lease.account.fingerprint
            held[fp] += 1
            if held[fp] > 1:
                violations += 1
            began = time.perf_counter()
            gevent.sleep(args.hold)
            hold_total += time.perf_counter() - began
            held[fp] -= 1
            lease.release()

    began = time.monotonic()
    gevent.joinall([gevent.spawn(client, n) for n in range(args.clients)], raise_error=True)
    elapsed = time.monotonic() - began
    return {
        "leases": len(waits),
        "per_second": len(waits) / elapsed,
        "wait_p50": percentile(waits, 50),
        "wait_p99": percentile(waits, 99),
        "acquire_p50": percentile(acquire_times, 50),
        "acquire_p99": percentile(acquire_times, 99),
        "acquire_calls": len(acquire_times),
        "utilisation": hold_total / (args.accounts * elapsed),
        "violations": violations,
    }


def start_redis() -> tuple[str, subprocess.Popen | None]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server not found: install it or pass --redis-url")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    for _ in range(100):
        try:
            redis.Redis(port=port).ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    return f"redis://127.0.0.1:{port}/0", proc


def show(name: str, r: dict, args: argparse.Namespace) -> None:
    ms = 1000
    ideal = args.hold * (args.clients / args.accounts - 1)
    print(
        f"{name:<16} leases={r['leases']:>6} ({r['per_second']:7.1f}/s)  "
        f"queue wait p50={r['wait_p50'] * ms:7.1f}ms p99={r['wait_p99'] * ms:7.1f}ms "
        f"(ideal ~{ideal * ms:.0f}ms)  "
        f"acquire p50={r['acquire_p50'] * ms:6.3f}ms p99={r['acquire_p99'] * ms:6.3f}ms "
        f"[{r['acquire_calls']} calls]  utilisation={r['utilisation']:.2f}  "
        f"violations={r['violations']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--accounts", type=int, default=10)
    parser.add_argument("--hold", type=float, default=0.02, help="seconds a lease is held")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--pools", type=int, default=2, help="pool instances sharing Redis")
    args = parser.parse_args()
    print(
        f"{args.clients} clients, {args.accounts} accounts, hold {args.hold * 1000:.0f}ms, "
        f"{args.seconds:.0f}s per run"
    )
    show("memory", run([MemoryStore()], args), args)

    from glm_proxy.store.redis import RedisStore

    url, proc = (args.redis_url, None) if args.redis_url else start_redis()
    prefix = f"bench{uuid.uuid4().hex[:6]}:"
    try:
        stores = [RedisStore.from_url(url, prefix=prefix) for _ in range(max(1, args.pools))]
        show("redis x1 pool", run(stores[:1], args), args)
        if len(stores) > 1:
            show(f"redis x{len(stores)} pools", run(stores, args), args)
        client = stores[0].client
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
