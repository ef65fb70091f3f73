"""Documents and images in chat, end to end: official SDK -> gunicorn proxy -> simulator.

Files come from a local file server (the ``media_proxy`` allows 127.0.0.1 via
FETCH_ALLOW_HOSTS) or inline as data URLs; assertions look at what the
simulator received (uploads and the stream request's content items).
"""

from __future__ import annotations

import base64
import hashlib
import time

import openai
import pytest

from tests.support.fileserver import (  # noqa: F401 - fixtures file_server, media_proxy
    MEDIA_MAX_FILE_SIZE,
    file_server_fixture,
    image_bytes,
    media_proxy_fixture,
    pdf_bytes,
)

TEXT = "第一行 first line\nsecond line: glm-proxy attachment test\n".encode()
SAMPLES = {
    "png": (image_bytes("PNG", (320, 240)), "image/png", "image"),
    "jpeg": (image_bytes("JPEG", (300, 200)), "image/jpeg", "image"),
    "webp": (image_bytes("WEBP", (200, 300)), "image/webp", "image"),
    "pdf": (pdf_bytes("glm"), "application/pdf", "file"),
    "txt": (TEXT, "text/plain", "file"),
}


@pytest.fixture
def mclient(media_proxy, token):
    return openai.OpenAI(base_url=media_proxy.v1, api_key=token, max_retries=0, timeout=30)


def part_for(kind: str, url: str, filename: str | None = None) -> dict:
    if kind == "image":
        return {"type": "image_url", "image_url": {"url": url}}
    if url.startswith("data:"):
        return {"type": "file", "file": {"file_data": url, "filename": filename or "doc"}}
    return {"type": "file", "file_url": {"url": url}}


def ask(client, parts: list[dict], text: str = "What is in this file?", history=()):
    messages = [*history, {"role": "user", "content": [{"type": "text", "text": text}, *parts]}]
    return client.chat.completions.create(model="glm-4", messages=messages), messages


def uploads_of(simulator, token: str) -> list[dict]:
    return [u for u in simulator.state()["uploads"] if u["account"] == token]


def stream_items(simulator, token: str) -> list[list[dict]]:
    """The content items of each stream request this account made, oldest first."""
    out = []
    for entry in simulator.requests_log("/assistant/stream"):
        if entry.get("account") == token and entry.get("stream"):
            out.append([c["item"] for c in entry["stream"]["content"]])
    return out


def data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


@pytest.mark.parametrize("name", sorted(SAMPLES))
@pytest.mark.parametrize("how", ["url", "data_url"])
def test_attachment_is_sniffed_uploaded_and_referenced(
    name, how, mclient, simulator, token, file_server
):
    data, mime, kind = SAMPLES[name]
    if how == "url":
        # A misleading path: classification must come from the bytes.
        url = file_server.add(f"/{how}/{name}/download", data, "application/octet-stream")
    else:
        url = data_url(data, "application/octet-stream")
    completion, _ = ask(mclient, [part_for(kind, url)])
    assert completion.choices[0].message.content

    (upload,) = uploads_of(simulator, token)
    assert upload["sha256"] == hashlib.sha256(data).hexdigest()
    assert upload["size"] == len(data)
    assert upload["content_type"] == mime
    extension = {"jpeg": "jpg"}.get(name, name)
    assert upload["filename"].endswith("." + extension)

    (items,) = stream_items(simulator, token)
    by_type = {item["type"]: item for item in items}
    assert set(by_type) == {"text", kind}
    (record,) = by_type[kind][kind]
    if kind == "image":
        assert (record["width"], record["height"]) == (upload["width"], upload["height"])
        assert record["image_url"] == upload["file_url"]
    else:
        assert upload["width"] is None and "width" not in record
    assert record["file_id"]
    assert simulator.wait_deleted(token)["conversations_deleted"]


def test_openai_file_part_with_bare_base64_and_misleading_image_part(mclient, simulator, token):
    """``file_data`` without the data: prefix; a PDF sent as an image_url part is a document."""
    pdf = pdf_bytes("bare")
    parts = [
        {
            "type": "file",
            "file": {"file_data": base64.b64encode(TEXT).decode(), "filename": "notes.md"},
        },
        {"type": "image_url", "image_url": data_url(pdf, "image/png")},
    ]
    ask(mclient, parts)
    names = {u["filename"] for u in uploads_of(simulator, token)}
    assert "notes.md" in names and len(names) == 2
    assert [n for n in names if n != "notes.md"][0].endswith(".pdf")
    (items,) = stream_items(simulator, token)
    (files,) = [i["file"] for i in items if i["type"] == "file"]
    assert len(files) == 2 and not [i for i in items if i["type"] == "image"]


def test_multi_turn_keeps_an_earlier_document_and_uploads_it_once(
    mclient, simulator, token, file_server
):
    pdf = pdf_bytes("turns", pad=200_000)
    url = file_server.add("/turns/report.pdf", pdf, "application/pdf")
    picture = image_bytes("PNG", (64, 64))
    first, messages = ask(mclient, [part_for("file", url)], "Summarise the report.")
    history = [*messages, {"role": "assistant", "content": first.choices[0].message.content}]
    second, messages = ask(mclient, [], "And the second page?", history)
    history = [*messages, {"role": "assistant", "content": second.choices[0].message.content}]
    ask(mclient, [part_for("image", data_url(picture, "image/png"))], "Compare with this", history)

    uploads = uploads_of(simulator, token)
    assert sorted(u["sha256"] for u in uploads) == sorted(
        hashlib.sha256(d).hexdigest() for d in (pdf, picture)
    )  # the PDF was uploaded once, though it was sent three times
    assert file_server.hit_count("/turns/report.pdf") == 3
    turns = stream_items(simulator, token)
    assert len(turns) == 3
    file_ids = [[r["file_id"] for i in t if i["type"] == "file" for r in i["file"]] for t in turns]
    assert file_ids[0] == file_ids[1] == file_ids[2] and len(file_ids[0]) == 1
    assert [i["type"] for i in turns[2]] == ["text", "file", "image"]


def test_size_limit_stops_the_download_early(mclient, simulator, token, file_server):
    before = len(file_server.endless_sent)
    with pytest.raises(openai.APIStatusError) as info:
        ask(mclient, [part_for("file", file_server.url("/endless"))])
    assert info.value.status_code == 413
    assert "larger than the limit" in info.value.message
    assert info.value.body["code"] == "payload_too_large"
    deadline = time.monotonic() + 10
    while len(file_server.endless_sent) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    sent = file_server.endless_sent[-1]
    # The server could have sent gigabytes in its 60 s; the proxy hung up near the limit
    # (plus what the socket buffers absorbed).
    assert MEDIA_MAX_FILE_SIZE < sent < 12 * MEDIA_MAX_FILE_SIZE
    assert uploads_of(simulator, token) == []


def test_size_limit_for_data_urls_and_declared_length(mclient, simulator, token, file_server):
    big = b"%PDF-1.4\n" + b"0" * MEDIA_MAX_FILE_SIZE
    with pytest.raises(openai.APIStatusError) as info:
        ask(mclient, [part_for("file", data_url(big, "application/pdf"), "big.pdf")])
    assert info.value.status_code == 413
    url = file_server.add("/declared/big.pdf", big, "application/pdf")
    with pytest.raises(openai.APIStatusError) as info:
        ask(mclient, [part_for("file", url)])
    assert info.value.status_code == 413 and "big.pdf" in info.value.message
    assert uploads_of(simulator, token) == []


def test_private_addresses_are_refused_by_default(client, simulator, token, file_server):
    """The default proxy has no FETCH_ALLOW_HOSTS: 127.0.0.1 is off limits."""
    url = file_server.add("/private/secret.png", image_bytes("PNG"), "image/png")
    with pytest.raises(openai.BadRequestError) as info:
        ask(client, [part_for("image", url)])
    assert info.value.body["code"] == "url_not_allowed"
    assert "127.0.0.1" in info.value.message and "loopback" in info.value.message
    assert info.value.body["param"] == "messages[0].content"
    assert file_server.hit_count("/private/secret.png") == 0
    assert uploads_of(simulator, token) == []


def test_unreachable_and_failing_urls_are_400s_naming_the_url(mclient, file_server):
    from tests.conftest import free_port

    dead = f"http://127.0.0.1:{free_port()}/missing/report.pdf"
    with pytest.raises(openai.BadRequestError) as info:
        ask(mclient, [part_for("file", dead)])
    assert dead in info.value.message and "unreachable" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        ask(mclient, [part_for("file", file_server.url("/status/403"))])
    assert "/status/403" in info.value.message and "HTTP 403" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        ask(mclient, [part_for("file", "file:///etc/passwd")])
    assert "Unsupported attachment URL" in info.value.message


def test_streamed_chat_with_an_image(mclient, simulator, token, file_server):
    url = file_server.add("/stream/cat.webp", image_bytes("WEBP"), "image/webp")
    chunks = list(
        mclient.chat.completions.create(
            model="glm-4",
            stream=True,
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "describe"}, part_for("image", url)],
                }
            ],
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    (items,) = stream_items(simulator, token)
    assert [i["type"] for i in items] == ["text", "image"]


def test_a_retry_on_another_account_does_not_fetch_the_file_again(
    media_proxy, simulator, file_server, token
):
    """Attachments are fetched once per answer, before any account is leased: the
    attempts on the second account and back on the first reuse the same bytes."""
    other = token + "-b"
    url = file_server.add("/retry/report.pdf", pdf_bytes("retry"), "application/pdf")
    simulator.fault(token, "http_500", count=1)
    simulator.fault(other, "http_500", count=1)
    client = openai.OpenAI(
        base_url=media_proxy.v1, api_key=f"{token},{other}", max_retries=0, timeout=30
    )
    completion, _ = ask(client, [part_for("file", url)])
    assert completion.choices[0].message.content
    assert file_server.hit_count("/retry/report.pdf") == 1
    attempts = [
        r for r in simulator.requests_log("/assistant/stream") if r.get("account") in (token, other)
    ]
    assert len(attempts) == 3  # failed on one account, failed on the other, then answered
    assert len(uploads_of(simulator, token)) == 1 and len(uploads_of(simulator, other)) == 1
