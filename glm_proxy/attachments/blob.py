"""A downloaded or decoded file, held in bounded memory.

Attachments can be 100 MB. Holding one in a ``bytes`` object per request
would let a handful of concurrent uploads exhaust the worker, so content is
written into a ``SpooledTemporaryFile``: small files stay in memory, large
ones roll over to disk. The size limit is checked on every chunk *while*
writing (never after buffering everything) and the SHA-256 that keys the
upload cache is computed on the way.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO
from urllib.parse import unquote_to_bytes

from glm_proxy.errors import InvalidRequest, PayloadTooLarge

SPOOL_IN_MEMORY = 1024 * 1024  # bytes kept in RAM before the spool rolls over to disk
HEAD_SIZE = 8192  # what content sniffing looks at
DATA_URL = re.compile(r"^data:(?P<meta>[^,]*?),", re.IGNORECASE | re.DOTALL)
B64_SLICE = 4 * 64 * 1024  # characters decoded at a time (a multiple of 4)
WHITESPACE = re.compile(r"\s+")


def describe(source: str, limit: int = 120) -> str:
    """How a URL is named in messages: data URLs by type only, long URLs shortened."""
    if source[:5].lower() == "data:":
        match = DATA_URL.match(source[:512])
        meta = match.group("meta") if match else ""
        return f"data URL ({meta or 'no type'}, {len(source)} characters)"
    return source if len(source) <= limit else source[: limit - 3] + "..."


def too_large(source: str, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The attachment {describe(source)} is larger than the limit of {limit} bytes "
        f"({limit / 1024**2:.0f} MiB; MAX_FILE_SIZE)."
    )


@dataclass
class Blob:
    """File content plus what we know about it. Close it when done (``with blob:``)."""

    file: IO[bytes]
    size: int
    sha256: str
    head: bytes
    source: str  # the URL it came from (for messages)
    declared_type: str = ""  # Content-Type header or data URL media type
    filename: str | None = None

    def __enter__(self) -> Blob:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.file.close()

    def rewind(self) -> IO[bytes]:
        self.file.seek(0)
        return self.file

    def read_all(self) -> bytes:
        """The whole content; only for inputs known to be small (images to re-encode)."""
        return self.rewind().read()


def spool(
    chunks: Iterable[bytes],
    *,
    limit: int,
    source: str,
    declared_type: str = "",
    filename: str | None = None,
) -> Blob:
    """Write ``chunks`` into a spooled file, enforcing ``limit`` as they arrive.

    Raises:
        PayloadTooLarge: as soon as the running size passes ``limit``; the rest
            of the input is never read.
    """
    file = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
    digest = hashlib.sha256()
    size = 0
    head = bytearray()
    try:
        for chunk in chunks:
            if not chunk:
                continue
            size += len(chunk)
            if size > limit:
                raise too_large(source, limit)
            if len(head) < HEAD_SIZE:
                head += chunk[: HEAD_SIZE - len(head)]
            digest.update(chunk)
            file.write(chunk)
    except BaseException:
        file.close()
        raise
    file.seek(0)
    return Blob(file, size, digest.hexdigest(), bytes(head), source, declared_type, filename)


def from_bytes(
    data: bytes, *, source: str, declared_type: str = "", filename: str | None = None
) -> Blob:
    """Bytes already in memory (an uploaded form file) as a Blob."""
    return spool(
        [data],
        limit=len(data) or 1,
        source=source,
        declared_type=declared_type,
        filename=filename,
    )


def parse_data_url(url: str) -> tuple[str, bool, int]:
    """(media type, is base64, index where the payload starts) of a ``data:`` URL."""
    match = DATA_URL.match(url[: 4096 + 6])
    if not match:
        raise InvalidRequest(f"Malformed data URL: {describe(url)} (expected data:<type>,<data>).")
    params = [p.strip() for p in match.group("meta").split(";")]
    is_base64 = any(p.lower() == "base64" for p in params[1:])
    media_type = params[0].lower() if params and "/" in params[0] else ""
    return media_type, is_base64, match.end()


def decode_data_url(url: str, *, limit: int, filename: str | None = None) -> Blob:
    """A ``data:`` URL's content as a ``Blob``, decoded slice by slice.

    The encoded text is already in memory (it came in the JSON body); decoding
    in slices keeps the decoded copy out of it. The size is checked before
    decoding (from the encoded length) and again while writing.
    """
    media_type, is_base64, start = parse_data_url(url)
    if not is_base64:
        data = unquote_to_bytes(url[start:])
        if len(data) > limit:
            raise too_large(url, limit)
        return spool([data], limit=limit, source=url, declared_type=media_type, filename=filename)
    payload = url[start:]
    if WHITESPACE.search(payload):
        payload = WHITESPACE.sub("", payload)
    if "-" in payload or "_" in payload:
        payload = payload.replace("-", "+").replace("_", "/")
    if (len(payload) - payload.count("=", max(0, len(payload) - 2))) * 3 // 4 > limit:
        raise too_large(url, limit)
    if len(payload) % 4:
        payload += "=" * (-len(payload) % 4)

    def slices() -> Iterable[bytes]:
        for offset in range(0, len(payload), B64_SLICE):
            try:
                yield base64.b64decode(payload[offset : offset + B64_SLICE], validate=True)
            except (binascii.Error, ValueError):
                raise InvalidRequest(f"The {describe(url)} is not valid base64.") from None
            time.sleep(0)  # under gevent: let other requests run between slices

    return spool(slices(), limit=limit, source=url, declared_type=media_type, filename=filename)
