"""Per-fetch deadline and per-request attachment caps, against the real server.

A server dripping bytes must not keep a fetch alive past FETCH_TOTAL_TIMEOUT
(the read timeout only bounds the silence between two reads); a request may
not attach more than MAX_ATTACHMENTS distinct URLs or MAX_ATTACHMENT_BYTES.
"""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from glm_proxy.attachments import FetchError, FetchGuard, FetchLimits, fetch
from glm_proxy.attachments.guard import AllowList
from tests.conftest import ProxyServer, start_proxy, stop_proxy
from tests.support.fileserver import (
    FileServer,
    file_server_fixture,  # noqa: F401 - the file_server fixture
    pdf_bytes,
)
from tests.support.waiting import wait_until

TOTAL = 2.0
FILE_CAP = 400 * 1024
BUDGET = 1024 * 1024


@pytest.fixture(scope="module")
def capped(simulator, tmp_path_factory) -> Iterator[ProxyServer]:
    server = start_proxy(
        simulator,
        tmp_path_factory.mktemp("attach-limits"),
        FETCH_ALLOW_HOSTS="127.0.0.1",
        FETCH_READ_TIMEOUT="5",
        FETCH_TOTAL_TIMEOUT=str(TOTAL),
        MAX_FILE_SIZE=str(FILE_CAP),
        MAX_ATTACHMENTS="3",
        MAX_ATTACHMENT_BYTES=str(BUDGET),
    )
    yield server
    stop_proxy(server)


def ask(server: ProxyServer, token: str, parts: list[dict]):
    sdk = openai.OpenAI(base_url=server.v1, api_key=token, max_retries=0, timeout=30)
    messages = [{"role": "user", "content": [{"type": "text", "text": "read"}, *parts]}]
    return sdk.chat.completions.create(model="glm-4", messages=messages)


def file_part(url: str) -> dict:
    return {"type": "file", "file_url": {"url": url}}


def uploads_of(simulator, token: str) -> list[dict]:
    return [u for u in simulator.state()["uploads"] if u["account"] == token]


def test_a_dripping_server_is_cut_at_the_total_deadline(capped, file_server, simulator, token):
    url = file_server.url("/drip?bytes=200&every=0.1")  # 20 s if let run
    before = len(file_server.drip_sent)
    with pytest.raises(openai.BadRequestError) as info:
        ask(capped, token, [{"type": "image_url", "image_url": {"url": url}}])
    error = info.value.body
    assert "FETCH_TOTAL_TIMEOUT" in error["message"]
    assert error["code"] == "invalid_url"
    assert error["param"] == "messages[0].content"
    wait_until(lambda: len(file_server.drip_sent) > before, 10, "the drip's end")
    assert file_server.drip_sent[-1] < 60  # hung up at the deadline, long before the 200 bytes
    assert uploads_of(simulator, token) == []


def test_fetch_deadline_holds_without_gevent_too(file_server):
    """In a plain thread (no gevent timer) the per-chunk check still ends the fetch."""
    limits = FetchLimits(max_size=FILE_CAP, connect_timeout=2, read_timeout=5, total_timeout=1)
    with pytest.raises(FetchError, match="FETCH_TOTAL_TIMEOUT"):  # not the 5 s drip's end
        fetch(
            file_server.url("/drip?bytes=100&every=0.05"),
            limits,
            FetchGuard(AllowList.parse(["127.0.0.1"])),
        )


def test_too_many_attachments_are_refused_before_any_fetch(capped, file_server, token):
    urls = [
        file_server.add(f"/many-{i}.pdf", pdf_bytes(f"doc {i}"), "application/pdf")
        for i in range(4)
    ]
    with pytest.raises(openai.BadRequestError) as info:
        ask(capped, token, [file_part(u) for u in urls])
    error = info.value.body
    assert error["code"] == "too_many_attachments"
    assert "MAX_ATTACHMENTS" in error["message"] and "3" in error["message"]
    assert [file_server.hit_count(f"/many-{i}.pdf") for i in range(4)] == [0, 0, 0, 0]


def test_the_same_url_twice_counts_once(capped, file_server, token):
    url = file_server.add("/twice.pdf", pdf_bytes("twice"), "application/pdf")
    others = [
        file_server.add(f"/other-{i}.pdf", pdf_bytes(f"o{i}"), "application/pdf") for i in range(2)
    ]
    done = ask(capped, token, [file_part(url), file_part(url), *map(file_part, others)])
    assert done.choices[0].message.content


def test_attachments_over_the_request_budget_are_413(
    capped, file_server: FileServer, simulator, token
):
    size = 380 * 1024  # each under MAX_FILE_SIZE, three over MAX_ATTACHMENT_BYTES
    urls = [
        file_server.add(f"/big-{i}.pdf", pdf_bytes(f"big {i}", pad=size), "application/pdf")
        for i in range(3)
    ]
    with pytest.raises(openai.APIStatusError) as info:
        ask(capped, token, [file_part(u) for u in urls])
    assert info.value.status_code == 413
    error = info.value.body
    assert error["code"] == "attachments_too_large"
    assert "MAX_ATTACHMENT_BYTES" in error["message"]
    assert "big-2.pdf" in error["message"]
    assert uploads_of(simulator, token) == []  # nothing went upstream


def test_one_file_over_max_file_size_still_names_that_limit(capped, file_server, token):
    url = file_server.add("/huge.pdf", pdf_bytes("huge", pad=FILE_CAP + 10), "application/pdf")
    with pytest.raises(openai.APIStatusError) as info:
        ask(capped, token, [file_part(url)])
    assert info.value.status_code == 413
    assert "MAX_FILE_SIZE" in info.value.body["message"]
