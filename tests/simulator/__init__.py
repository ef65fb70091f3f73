"""A stand-in for chatglm.cn (E2 protocol, /work/shared/upstream-protocol.md) for tests.

Run it:  python -m tests.simulator --host 127.0.0.1 --port 8001   (prints one
"simulator listening on http://HOST:PORT" line; `--port 0` picks a free port). Any refresh
token works unless it starts with "dead-" or was killed via the control API.

Pick a scenario by putting `[[sim:NAME key=value ...]]` in the user text (the LAST one in
the text wins): text, slow, think, search, search_late, code, image, multi, intervene, error,
long, unknown_types, draw, noimage; common keys: shape=all|current|delta, delay=S, wait=S,
chunk=N; long takes n=N (and chars=N: that many characters in all). Exact answer texts are
constants in `scripts.py`.

Era: `--era E3` (the default, matching the server's default `GLM_PROTOCOL=2026`) or
`--era E2` (2025); the `era` config key switches it too. E3 is the 2026 protocol (spec
§15.7): 2026 framing (`data:  `, lifecycle frames, one part per frame, empty
`tool_calls` containers), the server-side tool loop (`tools` scenario, `finish` marker), HTTP
429 `10061` for a second stream, `mainchat-api` deletes/list/stop (`stop_stream` ends an answer
with `10024`), `productivity-api/file/chat_upload`, drawings as single-image frames plus the
`one_to_more_finish` sentinel, the model catalogue (`selected_model` is checked), `cur_ts`, and
switches `waf`, `clock_skew_ms`/`max_skew_ms`, `require_device_match`, `legacy_delete`,
`e3_final_finish`. E3 faults: `busy_10061`, `queue_10062`, `waf_40012`.

Control API (tests only): GET /_sim/state, POST /_sim/reset, POST /_sim/config,
POST /_sim/faults {"token","kind","count","seconds"}, POST /_sim/tokens/dead {"token"}.

`create_app` is imported lazily so that `python -m tests.simulator` can monkey-patch with
gevent before Flask (and the rest of the stack) is imported.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(name)
