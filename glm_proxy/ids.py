"""Random ids for the request path, without ``uuid.uuid4()``'s cost.

``uuid.uuid4().hex`` builds a ``UUID`` object (an int conversion, a validation and a
formatting step) only for its 32 hex digits; a request makes several. ``uuid4_hex``
gives the same string, version and variant bits included (upstream's ids are UUID v4
with the dashes removed), from ``os.urandom`` and two byte edits.
"""

from __future__ import annotations

import os

__all__ = ["uuid4_hex"]


def uuid4_hex() -> str:
    """32 lowercase hex digits of a random UUID v4, as ``uuid.uuid4().hex`` gives them."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    return raw.hex()
