"""First frames for video generation: any image in, a 1440-wide JPEG out.

The upstream generates 1440x960 video and the web app resizes the first frame
to width 1440 (keeping the aspect ratio) and centre-crops it to at most 960
high before uploading (notes §9). We do the same with Pillow for whatever
arrives (PNG, JPEG, WebP, GIF, with or without alpha): EXIF rotation is
applied, transparency is flattened onto white (JPEG has no alpha), and the
result is a JPEG.

The crop is taken in source pixels and resized straight to the final frame,
never through the full-height intermediate: a 10x10000 PNG (a few hundred
bytes) would otherwise be scaled to 1440x1,440,000 first, gigabytes of RAM.
"""

from __future__ import annotations

import io

from PIL import Image, ImageOps, UnidentifiedImageError

from glm_proxy.attachments.blob import Blob, describe
from glm_proxy.errors import InvalidRequest

FRAME_WIDTH = 1440
FRAME_MAX_HEIGHT = 960
MAX_PIXELS = 50_000_000  # refuse decompression bombs long before Pillow's own limit
JPEG_QUALITY = 90


def _flatten(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def frame_geometry(width: int, height: int) -> tuple[int, int, int]:
    """(scaled height, crop top, final height) for an image of ``width`` x ``height``."""
    scaled = max(1, round(height * FRAME_WIDTH / width))
    final = min(scaled, FRAME_MAX_HEIGHT)
    return scaled, (scaled - final) // 2, final


def source_box(width: int, height: int) -> tuple[float, float, float, float]:
    """The band of a ``width`` x ``height`` source that becomes the frame (left, top, right,
    bottom in source pixels): the centre crop of ``frame_geometry``, scaled back."""
    _, top, final = frame_geometry(width, height)
    per_pixel = width / FRAME_WIDTH  # source pixels per frame pixel, both directions
    return 0.0, top * per_pixel, float(width), min(float(height), (top + final) * per_pixel)


def prepare_frame(blob: Blob) -> bytes:
    """The blob's image as a JPEG of width 1440 and height <= 960 (centre crop).

    Raises:
        InvalidRequest: the content is not an image Pillow can read, or is absurdly large.
    """
    try:
        with Image.open(blob.rewind()) as opened:
            width, height = opened.size
            if width * height > MAX_PIXELS:
                raise InvalidRequest(
                    f"The first-frame image {describe(blob.source)} is too large "
                    f"({width}x{height} pixels).",
                    param="image_url",
                )
            opened.draft("RGB", (FRAME_WIDTH, 1))  # JPEG: decode at a reduced scale if it can
            image = ImageOps.exif_transpose(opened)
            image = _flatten(image)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError):
        raise InvalidRequest(
            f"The first frame {describe(blob.source)} is not an image we can read "
            "(use PNG, JPEG or WebP).",
            param="image_url",
        ) from None
    _, _, final = frame_geometry(*image.size)
    box = source_box(*image.size)
    image = image.resize((FRAME_WIDTH, final), Image.Resampling.LANCZOS, box=box)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue()
