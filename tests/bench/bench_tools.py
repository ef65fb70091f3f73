"""Tool-calling benchmark: the answer parser's cost, and first-token overhead with tools.

Not collected by pytest. Run from the repository root:

    python tests/bench/bench_tools.py [--events 400] [--requests 30] [--tools 0 1 10 50]

Part 1, in process (sans-IO, no network): an answer of prose plus a call
block with code in it, cut into upstream-sized text deltas, fed through
``ToolCallFilter``; prints microseconds per upstream event for plain prose
and for prose + call, with 1, 10 and 100 tools declared (the per-event cost
must not depend on how many tools the request has).

Part 2, end to end: starts the upstream simulator and the proxy (gunicorn,
one gevent worker) on free local ports and measures the time to the first
content chunk of streamed completions whose model answer is scripted plain
text, without tools and with N tools of Claude-Code-like size. Everything
stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from glm_proxy.protocol.events import Finished, TextDelta  # noqa: E402
from glm_proxy.tools.definitions import ToolConfig, check_tools  # noqa: E402
from glm_proxy.tools.filter import ToolCallFilter  # noqa: E402
from tests.conftest import (  # noqa: E402
    Simulator,
    launch_simulator,
    start_proxy,
    stop_proxy,
    stop_simulator,
)
from tests.support.tools import CODE, call_block, invoke  # noqa: E402


def make_tools(n: int) -> list[dict]:
    return [
        {
            "type": "function",
            "function": {
                "name": f"tool_{i}",
                "description": "A tool. " + "Usage notes. " * 40,
                "parameters": {
                    "type": "object",
                    "properties": {
                        f"field_{j}": {"type": "string", "description": "A field. " * 10}
                        for j in range(8)
                    }
                    | {"count": {"type": "integer"}},
                    "required": ["field_0"],
                },
            },
        }
        for i in range(n)
    ]


PROSE = "Here is what I found about the project layout and the next step. " * 20
CALL = call_block(
    invoke("tool_0", field_0="src/app.py", field_1=f"<![CDATA[{CODE * 20}]]>", count="3")
)


def parser_cost(events: int, tools: int, text: str) -> float:
    """Microseconds per upstream event to run ``text`` (in ``events`` deltas) through the filter."""
    config = ToolConfig(check_tools(make_tools(tools)))
    size = max(1, len(text) // events)
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    rounds = 20
    start = time.perf_counter()
    for _ in range(rounds):
        f = ToolCallFilter(config, final=False, new_id=lambda: "call_x")
        for piece in pieces:
            f.feed(TextDelta(piece))
        f.feed(Finished("stop"))
        f.finish()
    return (time.perf_counter() - start) / (rounds * len(pieces)) * 1e6


def first_token(
    proxy_v1: str, token: str, sim: Simulator, tools: list[dict], n: int
) -> list[float]:
    times = []
    s = requests.Session()
    body = {
        "model": "glm-4",
        "stream": True,
        "messages": [{"role": "user", "content": "Say hello."}],
    }
    if tools:
        body["tools"] = tools
    for _ in range(n):
        requests.post(
            f"{sim.base}/_sim/script",
            json={"token": token, "answers": [{"text": "Hello there, how can I help?"}]},
            timeout=5,
        ).raise_for_status()
        start = time.perf_counter()
        with s.post(
            f"{proxy_v1}/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            stream=True,
            timeout=30,
        ) as resp:
            resp.raise_for_status()
            for line in resp.iter_lines():
                if b'"content":"' in line and b'"content":""' not in line:
                    times.append(time.perf_counter() - start)
                    break
            for _ in resp.iter_lines():
                pass
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=400)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--tools", type=int, nargs="+", default=[0, 1, 10, 50])
    args = parser.parse_args()

    print(f"parser cost per upstream event ({args.events} events per answer):")
    for tools in (1, 10, 100):
        plain = parser_cost(args.events, tools, PROSE)
        called = parser_cost(args.events, tools, PROSE + CALL)
        print(
            f"  {tools:>3} tools: prose {plain:6.2f} us/event, prose + call {called:6.2f} us/event"
        )

    sim = launch_simulator()  # the default protocol profile, like the proxy's
    proxy = start_proxy(sim, Path(tempfile.mkdtemp()), LOG_LEVEL="WARNING")
    try:
        token = "rt-bench-" + uuid.uuid4().hex
        first_token(proxy.v1, token, sim, [], 3)  # warm up the account and the worker
        base = None
        print(f"time to first content chunk, p50 over {args.requests} streamed requests:")
        for n in args.tools:
            tools = make_tools(n)
            first_token(proxy.v1, token, sim, tools, 2)
            times = first_token(proxy.v1, token, sim, tools, args.requests)
            p50 = statistics.median(times) * 1000
            base = p50 if base is None else base
            size = len(str(tools)) // 1024
            print(
                f"  {n:>3} tools (~{size:>3} KiB of schemas): {p50:6.2f} ms  "
                f"(+{p50 - base:5.2f} ms vs first row)"
            )
    finally:
        stop_proxy(proxy)
        stop_simulator(sim)


if __name__ == "__main__":
    main()
