"""``check_value_count``: a body's JSON values counted before the one-call parse.

The count must agree with the parsed document (every value, keys excluded),
the cheap bound must never be below it, ordinary bodies must not be scanned,
and a scan must pause for other requests and stop at the first value over.
"""

from __future__ import annotations

import random

import orjson
import pytest

from glm_proxy.errors import InvalidRequest
from glm_proxy.http import json_budget
from glm_proxy.http.json_budget import BOUND_STEP, PAUSE_EVERY, check_value_count, value_bound


def values_in(document) -> int:
    """The reference count: the parsed document's values (an object's keys are not values)."""
    if isinstance(document, dict):
        return 1 + sum(values_in(v) for v in document.values())
    if isinstance(document, list):
        return 1 + sum(values_in(v) for v in document)
    return 1


def random_document(rng: random.Random, depth: int = 0):
    kind = rng.choice("dlsnbz" if depth < 4 else "snbz")
    if kind == "d":
        return {f"k{i},:[": random_document(rng, depth + 1) for i in range(rng.randint(0, 4))}
    if kind == "l":
        return [random_document(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if kind == "s":
        return rng.choice(["", "a,b:c[d", "plain", "é, [x]: y"])
    if kind == "n":
        return rng.choice([0, -1.5, 10**15])
    return rng.choice([True, False, None])


@pytest.mark.parametrize("seed", range(60))
def test_the_bound_holds_and_the_scan_counts_exactly(seed):
    document = random_document(random.Random(seed))
    raw = orjson.dumps(document)
    exact = values_in(document)
    assert value_bound(raw) >= exact
    check_value_count(raw, exact, 10**9, lambda: None)  # exactly at the limit: accepted
    with pytest.raises(InvalidRequest) as caught:  # one under: the scan runs and refuses
        check_value_count(raw, exact - 1, 10**9, lambda: None)
    assert caught.value.code == "too_many_values"


def test_an_ordinary_body_is_not_scanned(monkeypatch):
    def scan(_raw):
        raise AssertionError("scanned")

    monkeypatch.setattr(json_budget.ijson, "basic_parse", scan)
    body = {"model": "glm-4", "messages": [{"role": "user", "content": "hi"}] * 100}
    check_value_count(orjson.dumps(body), 1_000_000, 5000, lambda: None)


def test_prose_full_of_commas_is_counted_and_accepted():
    text = "one, two: [three], " * 300_000  # 1,200,000 commas, colons and brackets in a string
    raw = orjson.dumps({"model": "glm-4", "messages": [{"role": "user", "content": text}]})
    assert value_bound(raw) > 1_000_000
    check_value_count(raw, 1_000_000, 5000, lambda: None)


def test_many_values_are_refused_pausing_on_the_way_and_stopping_at_the_limit():
    raw = orjson.dumps({"model": "glm-4", "metadata": [{}] * 300_000})
    pauses: list[int] = []
    with pytest.raises(InvalidRequest) as caught:
        check_value_count(raw, 100_000, 5000, lambda: pauses.append(1))
    assert caught.value.code == "too_many_values"
    assert caught.value.status == 400
    assert "MAX_JSON_VALUES" in caught.value.message and "100000" in caught.value.message
    assert len(pauses) == 100_000 // PAUSE_EVERY  # paused while counting, stopped at the limit


@pytest.mark.parametrize("field", ["messages", "input"])
def test_a_long_message_list_is_named_as_such(field):
    raw = orjson.dumps({"model": "glm-4", field: [{"role": "user", "content": "x"}] * 600_000})
    with pytest.raises(InvalidRequest) as caught:
        check_value_count(raw, 1_000_000, 5000, lambda: None)
    error = caught.value
    assert (error.code, error.param) == ("too_many_messages", field)
    assert "MAX_MESSAGES" in error.message


def test_nested_lists_are_not_messages():
    # 6,000 items, but inside one message: the value limit applies, not MAX_MESSAGES.
    raw = orjson.dumps({"messages": [{"role": "user", "content": [{"type": "text"}] * 6000}]})
    check_value_count(raw, 50_000, 5000, lambda: None)
    with pytest.raises(InvalidRequest) as caught:
        check_value_count(raw, 10_000, 5000, lambda: None)
    assert caught.value.code == "too_many_values"


@pytest.mark.parametrize(
    "raw", [b"[" + b"," * 50, b'{"a":' + b":" * 50, b"\xff" * 50 + b",," * 10, b"[1]]" + b"," * 10]
)
def test_malformed_json_is_left_to_the_parser(raw):
    assert value_bound(raw) > 2  # scanned
    check_value_count(raw, 2, 1, lambda: None)  # no error here: the parser's message says why


def test_a_large_body_is_bounded_piece_by_piece_with_pauses_between():
    text = "x" * (BOUND_STEP - 100)
    raw = orjson.dumps({"messages": [{"role": "user", "content": text}] * 3})  # ~3 pieces
    pauses: list[int] = []
    check_value_count(raw, 1_000, 5000, lambda: pauses.append(1))
    assert len(pauses) == len(raw) // BOUND_STEP  # one between each two pieces, no scan
    pieces = range(0, len(raw), BOUND_STEP)
    assert value_bound(raw) == 1 + sum(value_bound(raw, s, s + BOUND_STEP) - 1 for s in pieces)
