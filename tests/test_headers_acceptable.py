"""``headers_acceptable``: what the lean HTTP client may send as is (else ``requests`` decides).

Values must be ``str`` with no CR or LF anywhere and no leading whitespace
(Unicode whitespace, as ``requests``' ``\\S``); names must be non-empty
``str`` without a colon, CR, LF or leading whitespace. Checked against that
rule written as regular expressions, on random headers.
"""

from __future__ import annotations

import random
import re

from glm_proxy.upstream.transport import headers_acceptable

VALUE_RULE = re.compile(r"\A(?:\S[^\r\n]*)?\Z")
NAME_RULE = re.compile(r"\A[^:\s][^:\r\n]*\Z")
ALPHABET = ["a", "Z", "0", "-", " ", "\t", "\r", "\n", ":", "\x0b", "\xa0", "\u3000", "\x01", "é"]


def expected(headers: dict) -> bool:
    return all(
        isinstance(name, str)
        and NAME_RULE.match(name) is not None
        and isinstance(value, str)
        and VALUE_RULE.match(value) is not None
        for name, value in headers.items()
    )


def random_text(rng: random.Random, most: int) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, most)))


def test_random_headers_follow_the_rule():
    rng = random.Random(11)
    accepted = 0
    for _ in range(5000):
        headers = {
            random_text(rng, 4) or "X": random_text(rng, 6) for _ in range(rng.randint(1, 4))
        }
        if rng.random() < 0.05:
            headers["X-Bytes"] = b"value"
        assert headers_acceptable(headers, set()) == expected(headers), headers
        accepted += expected(headers)
    assert accepted > 100


def test_known_names_are_cached_only_when_acceptable():
    names: set[str] = set()
    assert headers_acceptable({"X-Good": "1"}, names)
    assert not headers_acceptable({"X Bad:": "1"}, names)
    assert names == {"X-Good"}


def test_typical_values():
    assert headers_acceptable({"Cookie": "a=1; b=2", "Empty": "", "Odd": "a\x01 b"}, set())
    assert not headers_acceptable({"X": " leading"}, set())
    assert not headers_acceptable({"X": "a\r\nInjected: 1"}, set())
    assert not headers_acceptable({"X": "trailing\n"}, set())
    assert not headers_acceptable({"X": 1}, set())
