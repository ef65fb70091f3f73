"""Bytes for the files the simulator serves, and pixel sizes of the ones it receives.

Generated images are real (Pillow) and deterministic per name, so a proxy that downloads
and re-encodes them (e.g. base64 `b64_json` answers, video first frames) gets valid data.
"""

from __future__ import annotations

import functools
import hashlib
import io

from PIL import Image, UnidentifiedImageError

GENERATED_SIZE = (64, 48)


@functools.lru_cache(maxsize=256)
def generated_image(name: str) -> tuple[bytes, str]:
    """A small PNG (or JPEG for .jpg/.jpeg names) whose colours derive from the name."""
    digest = hashlib.sha256(name.encode()).digest()
    image = Image.new("RGB", GENERATED_SIZE, tuple(digest[:3]))
    stripe = Image.new("RGB", (GENERATED_SIZE[0], GENERATED_SIZE[1] // 4), tuple(digest[3:6]))
    image.paste(stripe, (0, 0))
    buf = io.BytesIO()
    if name.lower().endswith((".jpg", ".jpeg")):
        image.save(buf, format="JPEG", quality=80)
        return buf.getvalue(), "image/jpeg"
    image.save(buf, format="PNG", optimize=False)
    return buf.getvalue(), "image/png"


def fake_mp4(name: str) -> bytes:
    """Not a playable video, but starts with a plausible `ftyp` box and is unique per name."""
    ftyp = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
    return ftyp + b"\x00\x00\x00\x28free" + hashlib.sha256(name.encode()).digest()


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) if Pillow recognises `data` as an image, else None (a document)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError):
        return None
