"""A finished answer's objects are freed by reference counting, without the collector.

Why it matters: a stream lives for seconds, long enough for its objects to
reach the collector's oldest generation. Objects in a reference cycle are
then freed only by a full collection, which walks every live object of the
worker: with a thousand open streams, pauses of 100 ms and more, each one a
late token for every stream due meanwhile. Each test below holds only a weak
reference and checks that dropping the last strong one frees the object at
once, with the collector switched off.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from glm_proxy.protocol.translate import TranslateOptions, Translator
from glm_proxy.protocol.translate._render import Renderer


@pytest.fixture
def no_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_a_translator_and_its_renderer(no_collector) -> None:
    translator = Translator(TranslateOptions())
    list(translator.finish())
    renderer = Renderer("\n\n", include_reasoning=True)
    gone, gone_renderer = weakref.ref(translator), weakref.ref(renderer)
    del translator, renderer
    assert gone() is None
    assert gone_renderer() is None


def test_a_streamed_response_objects_live_record_once_ended(no_collector) -> None:
    """The Responses API's live record subscribes a hook of its own to cancellations."""
    from types import SimpleNamespace

    from glm_proxy import create_app
    from glm_proxy.api.responses import _Live

    svc = create_app({"GLM_BASE_URL": "http://127.0.0.1:9", "TESTING": True}).extensions[
        "glm_services"
    ]
    snapshot = SimpleNamespace(response=lambda: {"id": "resp_1", "status": "in_progress"})
    turn = SimpleNamespace(response_id="resp_1", owner={}, builder=lambda settings: snapshot)
    live = _Live(svc, turn, job=object())
    live.end()
    gone = weakref.ref(live)
    del live
    assert gone() is None
