"""Team API keys: parsing ``API_KEYS``/``API_KEYS_FILE`` entries and matching a credential.

Keys are only held as SHA-256 digests (a key file may contain
``name:sha256:<hex>`` instead of the key itself: ``python -m glm_proxy.access.auth
hash <key>`` prints it) and compared in constant time against every configured
key. Who is calling, given these keys, is ``glm_proxy.access.auth``.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from dataclasses import dataclass, field
from typing import Protocol

from glm_proxy.config import ConfigError, Settings, read_setting_file

KEY_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
HASHED = re.compile(r"^sha256:([0-9a-fA-F]{64})$")
TOKEN_TEXT = re.compile(r"[\x21-\x7e]+")  # printable ASCII: every JWT and API key


# -- API keys ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str
    digest: bytes = field(repr=False)  # SHA-256 of the key
    weight: float = 1.0  # ``weight=N`` after the key: N turns to others' one in the line
    # Set only for keys made in the console (glm_proxy.console); file keys keep the defaults.
    rpm: int | None = None
    max_concurrent: int | None = None
    models: frozenset[str] | None = None
    accounts: frozenset[str] | None = None  # fingerprints; None: the whole pool
    expires_at: float | None = None  # epoch seconds


class KeySource(Protocol):
    """More keys besides the configured ones (the console's); ``bool()`` says it has any."""

    def __bool__(self) -> bool: ...

    def match(self, credential: str) -> ApiKey | None: ...

    def claims(self, credential: str) -> bool:
        """The credential is shaped like this source's keys: never sent upstream as a token."""
        ...


def hash_key(key: str) -> str:
    """The form of a key that may be written to API_KEYS_FILE instead of the key."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def parse_key_entry(text: str, source: str) -> ApiKey | None:
    """``name:key`` or ``name:sha256:<hex>``, optionally followed by ``weight=N``; None for
    blank and ``#`` comment lines."""
    text = text.strip()
    if not text or text.startswith("#"):
        return None
    name, sep, secret = text.partition(":")
    name, secret = name.strip(), secret.strip()
    if not sep or not secret:
        raise ConfigError(f"{source}: entries are `name:key` (an entry has no `:`)")
    secret, *options = secret.split()
    weight = parse_weight(options, name, source)
    if not KEY_NAME.match(name):
        raise ConfigError(
            f"{source}: key name {name!r} must be 1-64 characters of letters, digits, _.@-"
        )
    hashed = HASHED.match(secret)
    if hashed:
        return ApiKey(name, bytes.fromhex(hashed.group(1)), weight)
    if not TOKEN_TEXT.fullmatch(secret):
        raise ConfigError(
            f"{source}: the key of {name!r} must be printable ASCII without spaces "
            "(no client could send anything else in a header)"
        )
    return ApiKey(name, hashlib.sha256(secret.encode("utf-8")).digest(), weight)


def parse_weight(options: list[str], name: str, source: str) -> float:
    """The ``weight=N`` option of a key entry (1 without it): a number from 0.01 to 1000."""
    weight = 1.0
    for option in options:
        label, sep, value = option.partition("=")
        try:
            weight = float(value) if sep and label == "weight" else math.nan
        except ValueError:
            weight = math.nan
        if not 0.01 <= weight <= 1000:
            raise ConfigError(
                f"{source}: the key of {name!r} must be printable ASCII without spaces; "
                "after it only `weight=N` may follow (N from 0.01 to 1000: that key's "
                "share of turns when keys wait for accounts)"
            )
    return weight


def load_keys(settings: Settings) -> tuple[ApiKey, ...]:
    keys = [parse_key_entry(item, "API_KEYS") for item in settings.api_keys]
    if settings.api_keys_file:
        lines = read_setting_file(settings.api_keys_file, "API_KEYS_FILE")
        keys += [parse_key_entry(line, "API_KEYS_FILE") for line in lines]
    found = [k for k in keys if k is not None]
    names = [k.name for k in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"API keys: duplicate key names {', '.join(duplicates)}")
    return tuple(found)


class KeyRing:
    """The configured team keys, matched in constant time."""

    def __init__(self, keys: tuple[ApiKey, ...]) -> None:
        self.keys = keys

    def __bool__(self) -> bool:
        return bool(self.keys)

    @property
    def names(self) -> list[str]:
        return [k.name for k in self.keys]

    def match(self, credential: str) -> ApiKey | None:
        """The key ``credential`` is; every key is compared so timing reveals nothing."""
        digest = hashlib.sha256(credential.encode("utf-8")).digest()
        found = None
        for key in self.keys:
            if hmac.compare_digest(digest, key.digest):
                found = key
        return found
