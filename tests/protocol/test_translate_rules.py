"""The translator's merge rule, lifecycle, state machine and errors."""

from __future__ import annotations

import pytest

from glm_proxy.errors import UpstreamError, UpstreamProtocolError
from glm_proxy.protocol.events import (
    ConversationStarted,
    Finished,
    TextDelta,
)
from glm_proxy.protocol.translate import Phase, Translator, translate_all
from glm_proxy.protocol.translate._segments import merge_value
from glm_proxy.protocol.translate._state import TRANSITIONS, PhaseMachine, Trigger
from tests.support.translate_scripts import (
    Part,
    _event,
    _part,
)

# -- merge rule ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("held", "new", "authoritative", "expected"),
    [
        ("", "abc", False, "abc"),  # first value
        ("abc", "abcdef", False, "abcdef"),  # cumulative snapshot
        ("abc", "abc", False, "abc"),  # unchanged
        ("abcdef", "abc", False, "abcdefabc"),  # a delta equal to the start of the text
        ("abc", "def", False, "abcdef"),  # delta
        ("abc", "xyz", True, "xyz"),  # finish frame is authoritative
        ("abcdef", "abc", True, "abc"),  # ... even when shorter
        ("abc", "", True, "abc"),  # an empty finish frame never wipes text
    ],
)
def test_merge_value(held: str, new: str, authoritative: bool, expected: str) -> None:
    assert merge_value(held, new, authoritative) == expected


def test_merge_value_ignores_a_stale_repeat_of_a_finished_item() -> None:
    assert merge_value("abcdef", "abc", False, finished=True) == "abcdef"
    assert merge_value("abcdef", "gh", False, finished=True) == "abcdefgh"


def test_every_event_shape_repeating_finished_parts_is_a_no_op() -> None:
    t = Translator()
    p = Part("t", [])
    done = _part(p, [{"type": "text", "text": "完整"}], "finish")
    assert t.feed(_event([done]))[-1] == TextDelta("完整")
    assert t.feed(_event([done])) == []
    assert t.feed(_event([done])) == []


def test_parts_without_logic_id_fall_back_to_id_and_position() -> None:
    t = Translator()
    a = {"id": "p1", "content": [{"type": "text", "text": "一"}], "status": "finish"}
    b = {"id": "p1", "content": [{"type": "text", "text": "二"}], "status": "init"}
    deltas = t.feed(_event([a, b]))
    deltas += t.feed(_event([a, {**b, "content": [{"type": "text", "text": "二二"}]}]))
    deltas += t.finish()
    assert "".join(d.text for d in deltas if isinstance(d, TextDelta)) == "一\n\n二二"


# -- lifecycle, state machine, errors --------------------------------------------


def test_conversation_started_once_at_first_event_with_id() -> None:
    t = Translator()
    assert t.feed({"status": "init", "parts": []}) == []
    assert t.conversation_id is None
    out = t.feed({"id": "m1", "conversation_id": "c1", "status": "init", "parts": []})
    assert out == [ConversationStarted("c1", "m1")]
    assert (t.conversation_id, t.message_id) == ("c1", "m1")
    assert t.feed({"id": "m2", "conversation_id": "c2", "status": "init"}) == []


def test_non_dict_event_raises_and_leaves_state_unchanged() -> None:
    t = Translator()
    for bad in ([], "x", None, 3):
        with pytest.raises(UpstreamProtocolError):
            t.feed(bad)  # type: ignore[arg-type]
    assert t.phase is Phase.IDLE
    assert t.feed(_event([]))


@pytest.mark.parametrize(
    "event",
    [
        {"status": "init", "parts": {"a": 1}},
        {"status": "init", "parts": ["x"]},
        {"status": "init", "parts": [{"content": "text"}]},
        {"status": "finish", "parts": [{"content": [1]}]},
    ],
)
def test_malformed_parts_raise_before_any_state_change(event: dict) -> None:
    t = Translator()
    with pytest.raises(UpstreamProtocolError):
        t.feed(event)
    assert t.phase is Phase.IDLE and not t.finished


def test_events_after_finish_are_ignored() -> None:
    t = Translator()
    t.feed(_event([]))
    p = Part("t", [])
    out = t.feed(
        {**_event([_part(p, [{"type": "text", "text": "好"}], "finish")]), "status": "finish"}
    )
    assert out[-2:] == [TextDelta("好"), Finished("stop")]
    assert t.finished
    assert t.feed(_event([_part(p, [{"type": "text", "text": "好多了"}], "init")])) == []
    assert t.feed({**_event([]), "status": "error", "error": {"err_msg": "x"}}) == []
    assert t.finish() == []
    assert t.finish() == []


def test_feed_after_finish_call_is_illegal() -> None:
    t = Translator()
    assert t.finish() == [Finished("stop")]
    assert t.phase is Phase.CLOSED
    with pytest.raises(UpstreamProtocolError):
        t.feed(_event([]))
    assert t.phase is Phase.CLOSED


def test_unknown_top_level_status_keeps_streaming() -> None:
    t = Translator()
    t.feed({**_event([]), "status": "processing"})
    assert t.phase is Phase.STREAMING


def test_transition_table_is_total_for_live_phases_and_illegal_moves_keep_state() -> None:
    for phase in (Phase.IDLE, Phase.STREAMING, Phase.DONE, Phase.FAILED):
        assert set(TRANSITIONS[phase]) == set(Trigger)
    machine = PhaseMachine()
    machine.transition(Trigger.CLOSE)
    for trigger in (Trigger.INIT, Trigger.FINISH, Trigger.INTERVENE, Trigger.ERROR):
        with pytest.raises(UpstreamProtocolError):
            machine.transition(trigger)
        assert machine.phase is Phase.CLOSED


def test_error_without_details() -> None:
    with pytest.raises(UpstreamError, match="without details"):
        translate_all([{"status": "error"}])
