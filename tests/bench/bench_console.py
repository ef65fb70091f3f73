"""Time to render the console's pages with 100 accounts and 50 keys.

Not collected by pytest. Run from the repository root:

    python tests/bench/bench_console.py [--accounts 100] [--keys 50] [--renders 30]
                                        [--redis-url redis://...]

Builds the app in-process (memory store and SQLite in a temporary ``DATA_DIR``,
or Redis with ``--redis-url``), adds ``--keys`` console keys and a day of hourly
usage for each (two models), signs in and renders every page ``--renders``
times through Flask's test client, printing the median and slowest render.
No upstream is called: the pages read the pool, the store and the console's data.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from glm_proxy import create_app  # noqa: E402
from glm_proxy.console.data import Activity, ConsoleKey  # noqa: E402

PAGES = ("/console/", "/console/accounts", "/console/keys", "/console/usage", "/console/activity")


def build(accounts: int, keys: int, redis_url: str, data_dir: str):
    config = {
        "ADMIN_KEY": "bench-admin",
        "DATA_DIR": data_dir,
        "ACCOUNTS": ",".join(f"rt-bench-{n:04d} name=acct{n}" for n in range(accounts)),
        "GLM_BASE_URL": "http://127.0.0.1:9",  # never called
        "LOG_LEVEL": "WARNING",
        "REDIS_URL": redis_url,
    }
    app = create_app(config)
    console = app.extensions["glm_console"]
    now = time.time()
    for n in range(keys):
        key = ConsoleKey(f"key{n:02d}", ConsoleKey.digest_of(f"sk-glm-{n}"), now, rpm=60)
        console.data.put_key(key)
        for hour in range(24):
            for model in ("glm-4", "glm-5.3"):
                at = now - hour * 3600
                activity = Activity(at, key.name, model, 200, 0.5, "0" * 12, "/v1/chat/completions")
                console.data.record(activity, {"requests": 3, "total_tokens": 300})
    console.registry.refresh()
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--keys", type=int, default=50)
    parser.add_argument("--renders", type=int, default=30)
    parser.add_argument("--redis-url", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        app = build(args.accounts, args.keys, args.redis_url, data_dir)
        client = app.test_client()
        client.post("/console/signin", data={"admin_key": "bench-admin"})
        backend = app.extensions["glm_console"].data.backend
        print(f"{args.accounts} accounts, {args.keys} keys, console data: {backend}")
        for path in PAGES:
            times = []
            for _ in range(args.renders):
                started = time.perf_counter()
                resp = client.get(path)
                times.append(time.perf_counter() - started)
                assert resp.status_code == 200, (path, resp.status_code)
            rows = len(re.findall(r"<tr", resp.get_data(as_text=True)))
            print(
                f"{path:<20} median {statistics.median(times) * 1000:7.1f} ms   "
                f"max {max(times) * 1000:7.1f} ms   ({rows} table rows, "
                f"{len(resp.data) // 1024} KiB)"
            )


if __name__ == "__main__":
    main()
