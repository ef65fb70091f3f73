"""What one stream's parsing keeps of a long answer, and what it costs per answer.

Not collected by pytest. Run from the repository root:

    python tests/bench/bench_parse_memory.py [--chars 300000] [--sentences 60]

In process, no server: the simulator's ``long`` answer (its 2026 frames, in the
``current`` and ``delta`` shapes) goes through ``SSEDecoder``, ``SnapshotParser``
and ``Translator`` the way the producer drives them (8 KiB reads; the event let go
once translated). After each event it prints nothing; at the end, per shape: the
most ``tracemalloc`` saw held between two events (what a producer waiting for a
client that stopped reading keeps, besides the queued deltas), the size of one
copy of the answer text for scale, and the best of five timings of the whole answer.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from glm_proxy.protocol.events import TextDelta  # noqa: E402
from glm_proxy.protocol.snapshots import SnapshotParser  # noqa: E402
from glm_proxy.protocol.sse import SSEDecoder  # noqa: E402
from glm_proxy.protocol.translate import Translator  # noqa: E402
from tests.simulator.events import Envelope, encode_event, iter_events  # noqa: E402
from tests.simulator.scripts import Context, sc_long  # noqa: E402

READ = 8192  # bytes per upstream read, as UpstreamClient.iter_stream


def reads(shape: str, chars: int, sentences: int) -> list[bytes]:
    ctx = Context("p", 1, "m" * 24, "http://127.0.0.1", {"n": str(sentences), "chars": str(chars)})
    env = Envelope("m" * 24, "c" * 24, "a" * 24, "2026-01-01 00:00:00", e3=True)
    stream = b"".join(encode_event(e, True) for e in iter_events(sc_long(ctx), env, shape))
    return [stream[i : i + READ] for i in range(0, len(stream), READ)]


def run(chunks: list[bytes], measure: bool) -> tuple[int, str]:
    """Feed one answer; the most held between events (0 unless ``measure``), and the
    size in memory of one copy of the answer text it gave (its deltas are counted, not
    kept: a str takes 1, 2 or 4 bytes a character, by its widest character)."""
    base = tracemalloc.get_traced_memory()[0] if measure else 0
    decoder, parser, translator = SSEDecoder(), SnapshotParser(), Translator()
    worst = chars = 0
    widest = "\0"
    for chunk in chunks:
        for event in decoder.feed(chunk):
            parsed = parser.feed(event.raw)
            growth = parser.growth
            if growth is None:
                deltas = translator.feed(parsed)
            else:  # as the producer does: the event built only if needed, then let go
                deltas = translator.feed_grown(parser.current, growth)
                parser.release()
            if measure:
                for delta in deltas:
                    if isinstance(delta, TextDelta) and delta.text:
                        chars, widest = chars + len(delta.text), max(widest, max(delta.text))
            event.raw = b""
            del parsed, growth, deltas
            if measure:  # after the deltas are gone: what waits is the queue's, not ours
                gc.collect()
                worst = max(worst, tracemalloc.get_traced_memory()[0] - base)
    for delta in translator.finish():
        if isinstance(delta, TextDelta) and delta.text:
            chars, widest = chars + len(delta.text), max(widest, max(delta.text))
    return worst, widest * chars


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chars", type=int, default=300_000)
    parser.add_argument("--sentences", type=int, default=60, help="snapshots per answer")
    args = parser.parse_args()
    for shape in ("current", "delta"):
        chunks = reads(shape, args.chars, args.sentences)
        tracemalloc.start()
        worst, copy = run(chunks, measure=True)
        tracemalloc.stop()
        chars, text = len(copy), sys.getsizeof(copy)
        best = min(_timed(chunks) for _ in range(5))
        print(
            f"{shape:8s}: held at most {worst / 1024:7.0f} KiB between events "
            f"(one copy of the {chars}-character answer is {text / 1024:.0f} KiB); "
            f"{best * 1000:6.1f} ms per answer"
        )


def _timed(chunks: list[bytes]) -> float:
    started = time.perf_counter()
    run(chunks, measure=False)
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
