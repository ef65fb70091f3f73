"""What the agent CLIs' real requests cost before the upstream is asked.

Not collected by pytest. Run from the repository root:

    python tests/bench/bench_client_requests.py [--runs 50]

In process, no network: each captured request in ``tests/fixtures/clients``
(Claude Code's ~80-95 KB requests with 24-25 tools, Codex's with namespace
tools) is validated with its route's schema, mapped to the chat request and
planned (tool offer, prompt with the tool section). Prints the body size, the
prompt size and the median and 90th percentile milliseconds per request.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from glm_proxy.api.schemas.anthropic import AnthropicMessagesSchema  # noqa: E402
from glm_proxy.api.schemas.base import load  # noqa: E402
from glm_proxy.api.schemas.responses import ResponsesSchema  # noqa: E402
from glm_proxy.config import Settings  # noqa: E402
from glm_proxy.inputs import anthropic as anthropic_input  # noqa: E402
from glm_proxy.inputs import responses as responses_input  # noqa: E402
from glm_proxy.protocol.model_table import ModelTable  # noqa: E402
from glm_proxy.services.chat import plan_chat  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "clients"


def plan(capture: dict, settings: Settings, models: ModelTable):
    body = capture["body"]
    if capture["path"].startswith("/v1/messages"):
        chat = anthropic_input.to_chat_body(load(AnthropicMessagesSchema(), body))
    else:
        chat = responses_input.to_chat_body(load(ResponsesSchema(), body)).chat_body
    return plan_chat(chat, settings, models)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    settings = Settings.from_env({"LOG_LEVEL": "WARNING"})
    models = ModelTable.load(aliases=settings.model_aliases)
    print(f"{'request':<46} {'body KB':>8} {'prompt KB':>9} {'p50 ms':>7} {'p90 ms':>7}")
    for path in sorted(FIXTURES.glob("*.json")):
        capture = json.loads(path.read_text())
        if capture["method"] != "POST":
            continue
        size = len(json.dumps(capture["body"])) / 1024
        prompt = plan(capture, settings, models).prompt.text
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            plan(capture, settings, models)
            times.append((time.perf_counter() - start) * 1000)
        times.sort()
        p90 = times[int(len(times) * 0.9) - 1]
        print(
            f"{path.stem:<46} {size:>8.1f} {len(prompt) / 1024:>9.1f} "
            f"{statistics.median(times):>7.2f} {p90:>7.2f}"
        )


if __name__ == "__main__":
    main()
