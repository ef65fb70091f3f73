"""Who the upstream thinks is calling: device id, browser cookies, client hints.

From datacenter IPs the 2026 upstream's WAF answers a bare refresh token with
HTTP 400; the browser's whole cookie header, the JWT's ``device_id`` and a
browser user agent pass (upstream-protocol.md §15.2). Everything here is pure:
the account's cookie jar is text the operator pasted, the device id is derived
from the token, the client hints from the user agent, so they always agree.

Cookies are secrets exactly like tokens: nothing in this module logs them, and
:func:`describe_cookies` is the only view of a jar meant for humans.
"""

from __future__ import annotations

import base64
import hashlib
import re

import orjson

from glm_proxy.accounts import fingerprint
from glm_proxy.ids import uuid4_hex

# Cookies the web app keeps equal to the tokens; we keep them in sync on every request.
ACCESS_COOKIE = "chatglm_token"
REFRESH_COOKIE = "chatglm_refresh_token"
_COOKIE_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def parse_cookies(text: str) -> dict[str, str]:
    """A jar from a ``Cookie:`` header value or a Netscape ``cookies.txt``.

    Netscape lines are ``domain  flag  path  secure  expiry  name  value``
    (tab-separated); only chatglm.cn cookies are kept. A header is
    ``name=value; name2=value2`` (a leading ``Cookie:`` is allowed).

    Raises:
        ValueError: the text is neither (the message never contains cookie values).
    """
    text = text.strip()
    if not text:
        return {}
    jar: dict[str, str] = {}
    lines = [line for line in text.splitlines() if line.strip()]
    netscape = any(line.count("\t") >= 6 for line in lines)
    if netscape:
        for line in lines:
            if line.startswith("#HttpOnly_"):
                line = line[len("#HttpOnly_") :]
            elif line.startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) < 7:
                continue
            domain, name, value = fields[0].lstrip("."), fields[5], fields[6].strip()
            if domain.endswith("chatglm.cn") and _COOKIE_NAME.match(name):
                jar[name] = value
        if not jar:
            raise ValueError("the cookies.txt holds no chatglm.cn cookie")
        return jar
    if text.lower().startswith("cookie:"):
        text = text[7:]
    for item in text.replace("\n", ";").split(";"):
        name, sep, value = item.strip().partition("=")
        if not item.strip():
            continue
        if not sep or not _COOKIE_NAME.match(name.strip()):
            raise ValueError("expected a Cookie header (name=value; ...) or a Netscape cookies.txt")
        jar[name.strip()] = value.strip()
    return jar


def cookie_header(jar: dict[str, str], access_token: str | None, refresh_token: str) -> str:
    """The ``Cookie`` header for one request; token cookies follow the current tokens.

    The web app keeps ``chatglm_token`` equal to the bearer and
    ``chatglm_refresh_token`` to the newest refresh token, so a rotation never
    leaves a stale copy in the jar.
    """
    if not jar:
        return ""
    values = dict(jar)
    values[REFRESH_COOKIE] = refresh_token
    if access_token:
        values[ACCESS_COOKIE] = access_token
    return "; ".join(f"{name}={value}" for name, value in values.items())


def describe_cookies(jar: dict[str, str]) -> dict[str, object]:
    """What an operator may see of a jar: cookie names and a fingerprint, no values."""
    if not jar:
        return {"configured": False}
    names = sorted(jar)
    secret = ";".join(f"{n}={jar[n]}" for n in names)
    return {"configured": True, "names": names, "fingerprint": fingerprint(secret)}


def jwt_claim(token: str, claim: str) -> str | None:
    """A string claim from a JWT's payload, without verifying it (we are not the issuer)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        data = orjson.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, orjson.JSONDecodeError):
        return None
    value = data.get(claim) if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None


def is_guest_token(token: str) -> bool:
    """True when the token is a JWT whose payload says ``is_guest: true`` (a visitor's token)."""
    parts = token.split(".")
    if len(parts) != 3:
        return False
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        data = orjson.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, orjson.JSONDecodeError):
        return False
    return isinstance(data, dict) and data.get("is_guest") is True


def stable_device_id(refresh_token: str, account_id: str) -> str:
    """The account's device id: the token's ``device_id`` claim, else a 32-hex id derived
    from the account's identity (stable across restarts and rotations)."""
    claim = jwt_claim(refresh_token, "device_id")
    if claim:
        return claim
    return hashlib.sha256(f"glm-proxy-device:{account_id}".encode()).hexdigest()[:32]


class DeviceIds:
    """``X-Device-Id`` per strategy (``jwt_claim``, ``fixed``, ``per_request``, ``rotate``)."""

    def __init__(self, strategy: str, fixed: str = "", rotate_every: int = 8) -> None:
        self.strategy = strategy
        self.fixed = fixed
        self.rotate_every = max(1, rotate_every)
        self._count = 0
        self._current = uuid4_hex()

    def for_request(self, refresh_token: str | None, account_id: str | None) -> str:
        if self.strategy == "fixed" and self.fixed:
            return self.fixed
        if self.strategy == "jwt_claim" and refresh_token:
            return stable_device_id(refresh_token, account_id or fingerprint(refresh_token))
        if self.strategy == "rotate":
            self._count += 1
            if self._count % self.rotate_every == 0:
                self._current = uuid4_hex()
            return self._current
        return uuid4_hex()


_CHROMIUM = re.compile(r"Chrome/(\d+)")
_EDGE = re.compile(r"Edg/(\d+)")


def client_hints(user_agent: str, override: str = "") -> dict[str, str]:
    """``sec-ch-ua*`` headers that agree with the user agent (Firefox/Safari send none)."""
    platform = (
        "Windows" if "Windows" in user_agent else "macOS" if "Macintosh" in user_agent else "Linux"
    )
    chrome = _CHROMIUM.search(user_agent)
    if override:
        brands = override
    elif chrome is None or "Firefox/" in user_agent:
        return {}
    else:
        version = chrome.group(1)
        edge = _EDGE.search(user_agent)
        brand = (
            f'"Microsoft Edge";v="{edge.group(1)}"' if edge else f'"Google Chrome";v="{version}"'
        )
        brands = f'"Chromium";v="{version}", "Not_A Brand";v="24", {brand}'
    return {
        "Sec-Ch-Ua": brands,
        "Sec-Ch-Ua-Mobile": "?0",
        "Sec-Ch-Ua-Platform": f'"{platform}"',
    }
