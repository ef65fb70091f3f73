"""Sans-IO translation of upstream answer events into typed deltas.

``Translator(options).feed(event)`` takes one parsed upstream SSE event object and
returns :mod:`glm_proxy.protocol.events` deltas; ``finish()`` flushes when the stream
closed. The private modules split the work h11-style: ``_state`` (phases and
the transition table), ``_segments`` (merging the three event shapes),
``_render`` (markdown, citations, images), ``_translator`` (diffing).
"""

from glm_proxy.protocol.translate._render import SOURCES_HEADING
from glm_proxy.protocol.translate._state import Phase
from glm_proxy.protocol.translate._translator import (
    INTERVENE_PREFIX,
    TranslateOptions,
    Translator,
    translate_all,
)

__all__ = [
    "INTERVENE_PREFIX",
    "SOURCES_HEADING",
    "Phase",
    "TranslateOptions",
    "Translator",
    "translate_all",
]
