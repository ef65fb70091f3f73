"""Request signing of the chatglm.cn web API (X-Timestamp / X-Nonce / X-Sign).

Pure functions: the clock and the nonce are passed in, so the worked example of
the protocol notes is a unit test.
"""

from __future__ import annotations

import hashlib


def check_digit_timestamp(ms: int) -> str:
    """The millisecond timestamp with its second-to-last digit replaced by a check digit.

    The digit is (sum of all digits except the second-to-last) mod 10, which is
    what the web app sends; the value stays within 100 ms of the real time.
    """
    digits = str(ms)
    if len(digits) < 2:
        return digits
    total = sum(int(d) for d in digits) - int(digits[-2])
    return f"{digits[:-2]}{total % 10}{digits[-1]}"


def sign(timestamp: str, nonce: str, secret: str) -> str:
    """``md5("<timestamp>-<nonce>-<secret>")`` as lowercase hex."""
    return hashlib.md5(f"{timestamp}-{nonce}-{secret}".encode("ascii")).hexdigest()


def signature_headers(
    now_ms: int, nonce: str, secret: str, *, check_digit: bool = True
) -> dict[str, str]:
    """The three signature headers for one request."""
    timestamp = check_digit_timestamp(now_ms) if check_digit else str(now_ms)
    return {"X-Timestamp": timestamp, "X-Nonce": nonce, "X-Sign": sign(timestamp, nonce, secret)}
