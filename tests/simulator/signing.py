"""Request signing of the E2 web app (spec §3.3), seen from the server side.

The simulator has to *verify* what the proxy computes, so the check-digit rule and
the MD5 signature live here as small pure functions that the tests can pin against
the worked example of the spec.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

DEFAULT_SECRET = "8a1317a7468aa3ad86e997d08f3f31cb"


def apply_check_digit(ms: str) -> str:
    """Replace the second-to-last digit of a millisecond timestamp by its check digit.

    The check digit is (sum of all digits except the second-to-last) mod 10.
    """
    if len(ms) < 2 or not ms.isdigit():
        raise ValueError(f"not a decimal timestamp: {ms!r}")
    digits = [int(ch) for ch in ms]
    check = (sum(digits) - digits[-2]) % 10
    return f"{ms[:-2]}{check}{ms[-1]}"


def has_valid_check_digit(timestamp: str) -> bool:
    """True when `timestamp` already carries the check digit the browser would put there."""
    try:
        return apply_check_digit(timestamp) == timestamp
    except ValueError:
        return False


def compute_sign(timestamp: str, nonce: str, secret: str = DEFAULT_SECRET) -> str:
    """Lowercase hex MD5 of ``"<timestamp>-<nonce>-<secret>"``."""
    return hashlib.md5(f"{timestamp}-{nonce}-{secret}".encode()).hexdigest()


def signature_status(
    headers: Mapping[str, str], secret: str, enforce_check_digit: bool = False
) -> bool | None:
    """Judge the signature headers of one request.

    Returns None when no signature header is present at all (useful in the request log to
    tell "unsigned" from "signed wrongly"), True when valid, False otherwise.
    """
    ts = headers.get("X-Timestamp")
    nonce = headers.get("X-Nonce")
    sign = headers.get("X-Sign")
    if ts is None and nonce is None and sign is None:
        return None
    if not ts or not nonce or not sign:
        return False
    if enforce_check_digit and not has_valid_check_digit(ts):
        return False
    return compute_sign(ts, nonce, secret) == sign.lower()
