"""Upstream file upload and the video API (protocol notes §7, §9).

Kept out of ``client.py`` so the core client stays about tokens, signing and
streams. Everything here goes through the same ``UpstreamClient``: its
session, headers, envelope handling and refresh-once-on-401.

Uploads stream: the multipart body is a file-like object that reads the
spooled attachment in chunks, with a known length, so ``requests`` sends a
``Content-Length`` and never builds the 100 MB body in memory (its own
``files=`` support would). A fresh body is built for each attempt, so the
retry after an access-token refresh sends the whole file again.
"""

from __future__ import annotations

from typing import IO, Any

from glm_proxy.accounts import Account
from glm_proxy.errors import UpstreamProtocolError
from glm_proxy.ids import uuid4_hex
from glm_proxy.protocol.profiles import parse_pairs
from glm_proxy.upstream.envelope import unwrap

UPLOAD_CHUNK = 64 * 1024


class MultipartFile:
    """A one-field ``multipart/form-data`` body read lazily from ``fileobj``.

    ``requests`` asks for ``len()`` (-> ``Content-Length``) and then calls
    ``read(n)`` until it gets ``b""``.
    """

    def __init__(
        self,
        fileobj: IO[bytes],
        size: int,
        filename: str,
        content_type: str,
        field: str = "file",
        fields: dict[str, str] | None = None,
    ) -> None:
        self.boundary = "----glmproxy" + uuid4_hex()
        safe_name = (
            filename.replace("\\", "_").replace('"', "'").replace("\r", "").replace("\n", "")
        )
        plain = "".join(
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            for name, value in (fields or {}).items()
        )
        self._head = (
            plain + f"--{self.boundary}\r\n"
            f'Content-Disposition: form-data; name="{field}"; filename="{safe_name}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        self._tail = f"\r\n--{self.boundary}--\r\n".encode()
        self._file = fileobj
        self._size = size
        self._stage = 0  # 0 head, 1 file, 2 tail, 3 done
        self._pending = b""
        fileobj.seek(0)

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return len(self._head) + self._size + len(self._tail)

    def read(self, size: int = -1) -> bytes:
        size = UPLOAD_CHUNK if size is None or size < 0 else max(size, 1)
        out = bytearray(self._pending)
        self._pending = b""
        while len(out) < size and self._stage < 3:
            if self._stage == 0:
                out += self._head
                self._stage = 1
            elif self._stage == 1:
                chunk = self._file.read(size - len(out))
                if chunk:
                    out += chunk
                else:
                    self._stage = 2
            else:
                out += self._tail
                self._stage = 3
        if len(out) > size:
            self._pending = bytes(out[size:])
            del out[size:]
        return bytes(out)


def _upload(
    client,
    account: Account,
    path: str,
    fileobj: IO[bytes],
    size: int,
    filename: str,
    content_type: str,
    referer: str,
    *,
    signed: bool = False,
    fields: dict[str, str] | None = None,
) -> dict[str, Any]:
    s = client.settings

    def attempt(token: str) -> Any:
        body = MultipartFile(fileobj, size, filename, content_type, fields=fields)
        headers = client.headers(
            token=token,
            signed=signed,
            referer=referer,
            content_type=body.content_type,
            account=account,
        )
        resp = client._send(  # same package: the one transport
            "POST",
            client.url(path),
            timeout=(s.glm_connect_timeout, s.glm_media_timeout),
            account=account,
            headers=headers,
            data=body,
        )
        return unwrap(resp.status_code, client._read_capped(resp), s.glm_busy_codes)

    result = client._with_access(account, attempt)
    if not isinstance(result, dict):
        raise UpstreamProtocolError("the upstream upload returned no file record")
    return result


def upload_file(
    client,
    account: Account,
    fileobj: IO[bytes],
    size: int,
    filename: str,
    content_type: str,
    assistant_id: str | None = None,
) -> dict[str, Any]:
    """Upload a chat attachment; the record has ``file_id``, ``file_url``, ``source_id``, ...

    Images come back with non-zero ``width``/``height``.
    """
    s = client.settings
    assistant = assistant_id or s.glm_assistant_id
    fields = {
        name: value.replace("{assistant_id}", assistant)
        for name, value in parse_pairs(s.glm_upload_fields).items()
    }
    record = _upload(
        client,
        account,
        s.glm_upload_path,
        fileobj,
        size,
        filename,
        content_type,
        referer=s.glm_origin + "/",
        signed=s.glm_upload_signed,
        fields=fields,
    )
    if not record.get("file_id") and not record.get("file_url"):
        raise UpstreamProtocolError("the upstream upload returned no file_id/file_url")
    return record


def video_referer(client) -> str:
    return client.settings.glm_origin + "/video"


def upload_video_frame(
    client, account: Account, fileobj: IO[bytes], size: int, filename: str, content_type: str
) -> str:
    """Upload a first-frame image for video generation; returns its ``source_id``."""
    record = _upload(
        client,
        account,
        client.settings.glm_video_upload_path,
        fileobj,
        size,
        filename,
        content_type,
        referer=video_referer(client),
    )
    source_id = record.get("source_id")
    if not source_id:
        raise UpstreamProtocolError("the upstream frame upload returned no source_id")
    return str(source_id)


def create_video(
    client,
    account: Account,
    prompt: str,
    *,
    source_id: str | None = None,
    options: dict[str, str] | None = None,
    conversation_id: str = "",
) -> dict[str, Any]:
    """Start a generation task; returns ``{"chat_id", "conversation_id"}``."""
    extra = {"emotional_atmosphere": "", "mirror_mode": "", "video_style": ""}
    extra.update(options or {})
    body: dict[str, Any] = {
        "conversation_id": conversation_id,
        "prompt": prompt,
        "advanced_parameter_extra": extra,
    }
    if source_id:
        body["source_list"] = [source_id]
    result = client.call(
        account,
        "POST",
        client.settings.glm_video_create_path,
        json=body,
        signed=True,
        referer=video_referer(client),
        timeout=client.settings.glm_media_timeout,
    )
    if not isinstance(result, dict) or not result.get("chat_id"):
        raise UpstreamProtocolError("the upstream video API returned no chat_id")
    return result


def video_status(client, account: Account, chat_id: str) -> dict[str, Any]:
    """One status poll: ``status`` (init/processing/finished/other), ``msg``, URLs."""
    result = client.call(
        account,
        "GET",
        client.settings.glm_video_status_path.format(chat_id=chat_id),
        signed=True,
        referer=video_referer(client),
        timeout=client.settings.glm_media_timeout,
    )
    if not isinstance(result, dict):
        raise UpstreamProtocolError("the upstream video status had no result")
    return result


def composite_video(client, account: Account, chat_id: str, key: str, audio_id: str) -> str:
    """Mux a background track into a finished video; returns the new video URL."""
    result = client.call(
        account,
        "POST",
        client.settings.glm_video_composite_path,
        json={"chat_id": chat_id, "key": key, "audio_id": audio_id},
        signed=True,
        referer=video_referer(client),
        timeout=client.settings.glm_media_timeout,
    )
    url = result.get("url") if isinstance(result, dict) else None
    if not url:
        raise UpstreamProtocolError("the upstream composite_video returned no url")
    return str(url)


def delete_video(client, account: Account, chat_id: str) -> None:
    """Delete the task record (unsigned, like the web app)."""
    client.call(
        account,
        "DELETE",
        client.settings.glm_video_delete_path.format(chat_id=chat_id),
        signed=False,
        referer=video_referer(client),
    )
