"""What clients add next: parts of a request the server does not know, left out and counted.

Agent CLIs and SDKs ship weekly and add tool types, content types, fields and
beta headers faster than a server learns them. The rule (docs/clients.md): a
part the server does not know must not fail a request that can be answered
correctly without it. A tool of an unknown type is left out of the offer (the
model calling fewer tools is always a valid answer), an unknown content part
or input item is left out of the prompt. Each is logged once per kind and
name (per worker) and counted in ``/metrics`` as
``glm_proxy_ignored_additions_total{kind, name}``.

The ``name`` label is what the client sent (a tool or content type), so it is
bounded: at most ``MOST_NAMES`` distinct names per kind are kept, later ones
count as ``other`` (a client cannot grow the metrics without limit), and each
name is cut to a safe alphabet and length.
"""

from __future__ import annotations

import logging
import re
import threading

from prometheus_client import Counter

from glm_proxy.observability.metrics import labelled

__all__ = ["IGNORED", "MOST_NAMES", "note_ignored"]

log = logging.getLogger(__name__)

IGNORED = Counter(
    "glm_proxy_ignored_additions_total",
    "Request parts left out because the server does not know them, by kind "
    "(tool_type, content_type, input_item) and name (bounded; 'other' past the cap).",
    ["kind", "name"],
)
MOST_NAMES = 16
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")
_seen: dict[str, set[str]] = {}
_lock = threading.Lock()


def _label(name: object) -> str:
    text = _UNSAFE.sub("_", str(name))[:48]
    return text or "none"


def note_ignored(kind: str, name: object, where: str = "") -> None:
    """Count one left-out part; the first of each (kind, name) is logged.

    ``where`` names the request parameter (``tools[4]``) for the log line.
    """
    label = _label(name)
    with _lock:
        names = _seen.setdefault(kind, set())
        first = label not in names and len(names) < MOST_NAMES
        if first:
            names.add(label)
        elif label not in names:
            label = "other"
    if first:
        log.warning(
            "left out a %s the server does not know: %r%s (logged once; counted in /metrics)",
            kind.replace("_", " "),
            label,
            f" at {where}" if where else "",
        )
    labelled(IGNORED, kind, label).inc()
