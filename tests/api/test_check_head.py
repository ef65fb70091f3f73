"""``check_head`` walks the WSGI environ once; it must judge as werkzeug's ``request.headers`` does.

The reference below is the straightforward version over ``request.headers``
(what the limits are defined against): same count, same first field over the
size limit, same messages, for environs with body headers, empty ones, CGI
keys and the ``HTTP_CONTENT_*`` duplicates some servers add.
"""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from glm_proxy.http.request_guard import HeadersTooLarge, check_head


def reference(request, settings) -> None:
    if len(request.headers) > settings.max_headers:
        raise HeadersTooLarge(
            f"The request has {len(request.headers)} header fields; the limit is "
            f"{settings.max_headers} (MAX_HEADERS)."
        )
    for name, value in request.headers.items():
        size = len(name) + len(value) + 2
        if size > settings.max_header_size:
            raise HeadersTooLarge(
                f"The header field {name!r} is {size} bytes; the limit is "
                f"{settings.max_header_size} (MAX_HEADER_SIZE).",
                param=name,
            )


def outcome(check, request, settings):
    try:
        check(request, settings)
    except HeadersTooLarge as exc:
        return (exc.message, exc.param)
    return None


def random_environ(rng: random.Random) -> dict:
    headers = {
        f"X-{'Long-' * rng.randint(0, 3)}H{i}": "v" * rng.choice((0, 1, 10, 60, 200))
        for i in range(rng.randint(0, 12))
    }
    builder = EnvironBuilder(
        path="/v1/chat/completions",
        method=rng.choice(("GET", "POST")),
        headers=headers,
        data=b"{}" if rng.random() < 0.5 else None,
        content_type=rng.choice((None, "application/json")),
    )
    environ = builder.get_environ()
    if rng.random() < 0.3:
        environ["HTTP_CONTENT_TYPE"] = "text/plain"  # a duplicate werkzeug does not list
    if rng.random() < 0.3:
        environ["CONTENT_LENGTH"] = ""  # an empty CGI key werkzeug does not list
    environ["RAW_URI"] = "/v1/chat/completions"
    return environ


@pytest.mark.parametrize("seed", range(40))
def test_one_pass_judges_like_werkzeug_headers(seed):
    rng = random.Random(seed)
    environ = random_environ(rng)
    settings = SimpleNamespace(
        max_url_length=8192,
        max_headers=rng.randint(1, 14),
        max_header_size=rng.choice((16, 40, 80, 300)),
    )
    request = Request(environ)
    assert outcome(check_head, request, settings) == outcome(reference, request, settings)


def test_the_first_field_over_the_limit_is_named():
    environ = EnvironBuilder(
        path="/", headers={"X-Small": "a", "X-Big-One": "b" * 100, "X-Bigger": "c" * 200}
    ).get_environ()
    settings = SimpleNamespace(max_url_length=8192, max_headers=50, max_header_size=64)
    with pytest.raises(HeadersTooLarge) as caught:
        check_head(Request(environ), settings)
    assert caught.value.param == "X-Big-One"
    assert "111 bytes" in caught.value.message
