"""The sans-IO part of one streamed answer, stage by stage, without sockets in the timing.

Not collected by pytest. Run from the repository root:

    python tests/bench/bench_pipeline.py [--repeat 300] [--snapshots 40 --chars 2000]

Starts the simulator on a free local port (the 2026 protocol), records the raw
bytes of one answer (by default the core benchmark's: 2,000 characters in 40
cumulative snapshots; ``--snapshots 200 --chars 10000`` for a long one), read
as the network delivered them, stops it, then
replays those bytes through the proxy's pipeline and prints microseconds per
answer after each stage: SSE decoding, + JSON, + the translator, + the Chat
Completions wire (chunk bytes). Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from glm_proxy.protocol.formats.openai import ChatWire  # noqa: E402
from glm_proxy.protocol.snapshots import SnapshotParser  # noqa: E402
from glm_proxy.protocol.sse import SSEDecoder  # noqa: E402
from glm_proxy.protocol.translate import TranslateOptions, Translator  # noqa: E402
from tests.conftest import launch_simulator, stop_simulator  # noqa: E402

PROMPT = "bench [[sim:long n=40 chars=2000 delay=0.01 chunk=0]]"  # bench_core's workload
STAGES = ("sse", "+json", "+translate", "+wire")


def record_answer(prompt: str = PROMPT) -> list[bytes]:
    """The network reads of one answer, straight from a fresh simulator."""
    from tests.bench.bench_stream import access_token, direct_request

    sim = launch_simulator("2026", "--chunk-size", "0")  # the 2026 protocol, as sent
    try:
        base = sim.base
        http = requests.Session()
        headers, body = direct_request(access_token(http, base, "pipeline-bench"), prompt)
        url = f"{base}/chatglm/backend-api/assistant/stream"
        with http.post(url, json=body, headers=headers, stream=True, timeout=60) as resp:
            resp.raise_for_status()
            return list(resp.iter_content(chunk_size=None))
    finally:
        stop_simulator(sim)


def replay(reads: list[bytes], stages: int) -> int:
    """Run the first ``stages`` stages over the recorded reads; returns the bytes produced."""
    decoder = SSEDecoder()
    snapshots = SnapshotParser()  # as the producer parses them
    translator = Translator(TranslateOptions())
    wire = ChatWire(model="glm-4", created=1, prompt_text="hi", response_id=lambda: "c1")
    produced = len(wire.open())
    for data in reads:
        for event in decoder.feed(data):
            if stages < 2 or not event.raw:
                continue
            obj = snapshots.feed(event.raw)  # as the producer parses and feeds (Attempt._feed)
            if stages < 3:
                continue
            growth = snapshots.growth
            if growth is None:
                deltas = translator.feed(obj)
            else:  # the event is built only if the translator asks for it
                deltas = translator.feed_grown(snapshots.current, growth)
                snapshots.release()
            for delta in deltas:
                if stages == 4:
                    produced += len(wire.feed(delta))
    if stages >= 3:
        for delta in translator.finish():
            if stages == 4:
                produced += len(wire.feed(delta))
    if stages == 4:
        produced += len(wire.finish())
    return produced


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=300)
    parser.add_argument("--snapshots", type=int, default=40, help="events of the answer")
    parser.add_argument("--chars", type=int, default=2000, help="characters of the answer")
    args = parser.parse_args()
    reads = record_answer(
        f"bench [[sim:long n={args.snapshots} chars={args.chars} delay=0.01 chunk=0]]"
    )
    print(f"one answer: {len(reads)} reads, {sum(map(len, reads))} bytes; us per answer:")
    for stages, name in enumerate(STAGES, 1):
        replay(reads, stages)  # warm-up
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(args.repeat):
                replay(reads, stages)
            best = min(best, (time.perf_counter() - started) / args.repeat)
        print(f"  {name:<11} {best * 1e6:7.0f}")


if __name__ == "__main__":
    main()
