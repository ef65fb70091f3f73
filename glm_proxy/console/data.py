"""What the console keeps: its accounts and keys, usage per hour, the latest requests.

Two backends behind one interface: SQLite in ``DATA_DIR`` (the default single
instance: durable across restarts, nothing to install) and Redis (with
``REDIS_URL``: shared by every worker and replica). Accounts and keys from the
environment and files are not kept here; they stay where the operator wrote them.

A console account holds its refresh token and cookies (secrets, like the Redis
``rot:`` entries); a console key only its SHA-256 digest. With ``STORE_SECRET_KEY``
set, an account's record is sealed (Fernet) in both backends, exactly as the
store seals its own secret-bearing values; records written before the key was set
are still read, and sealed on their next write.
"""

from __future__ import annotations

import hashlib
import json
import logging
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from glm_proxy.access.keys import ApiKey

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

log = logging.getLogger(__name__)

USAGE_FIELDS = ("requests", "errors", "prompt_tokens", "completion_tokens", "total_tokens")
USAGE_DAYS = 35  # hourly usage buckets are kept this long
ACTIVITY_SIZE = 500  # the latest requests kept


@dataclass
class ConsoleKey:
    """A team key made in the console; ``digest`` is the hex SHA-256 of the secret."""

    name: str
    digest: str = field(repr=False)
    created_at: float = 0.0
    rpm: int | None = None
    max_concurrent: int | None = None
    models: list[str] | None = None
    accounts: list[str] | None = None
    expires_at: float | None = None

    @property
    def fingerprint(self) -> str:
        """The first 12 hex digits of the digest: what ``accounts.fingerprint`` gives for it."""
        return self.digest[:12]

    def api_key(self) -> ApiKey:
        return ApiKey(
            self.name,
            bytes.fromhex(self.digest),
            rpm=self.rpm,
            max_concurrent=self.max_concurrent,
            models=frozenset(self.models) if self.models is not None else None,
            accounts=frozenset(self.accounts) if self.accounts is not None else None,
            expires_at=self.expires_at,
        )

    @staticmethod
    def digest_of(secret: str) -> str:
        return hashlib.sha256(secret.encode("utf-8")).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConsoleKey:
        given: dict[str, Any] = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**given)


@dataclass
class ConsoleAccount:
    """A pool account added in the console (its token and cookies are secrets)."""

    fingerprint: str
    refresh_token: str = field(repr=False)
    name: str = ""
    max_streams: int = 1
    cookies: str = field(default="", repr=False)
    created_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConsoleAccount:
        given: dict[str, Any] = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**given)


class AccountCodec:
    """An account record as a backend stores it: JSON, sealed when a cipher is given."""

    def __init__(self, cipher: MultiFernet | None = None) -> None:
        self.cipher = cipher

    def encode(self, account: ConsoleAccount) -> str:
        body = json.dumps(account.to_dict())
        if self.cipher is None:
            return body
        return self.cipher.encrypt(body.encode("utf-8")).decode("ascii")

    def decode(self, body: str) -> ConsoleAccount | None:
        """The account, or None for a sealed record no configured key opens."""
        if not body.startswith("{"):  # sealed (a Fernet token never starts with "{")
            if self.cipher is None:
                log.warning("a sealed console account is skipped: STORE_SECRET_KEY is not set")
                return None
            from cryptography.fernet import InvalidToken

            try:
                body = self.cipher.decrypt(body.encode("ascii")).decode("utf-8")
            except InvalidToken:
                log.warning("a sealed console account could not be opened (key changed?)")
                return None
        return ConsoleAccount.from_dict(json.loads(body))

    def decode_all(self, bodies: list[str]) -> list[ConsoleAccount]:
        return [a for a in map(self.decode, bodies) if a is not None]


@dataclass
class Activity:
    """One finished API request, as the Activity page lists it: never its content."""

    at: float
    key: str
    model: str
    status: int
    duration: float
    account: str
    path: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Activity:
        given: dict[str, Any] = {k: data.get(k) for k in cls.__dataclass_fields__}
        return cls(**given)


@dataclass
class UsageRow:
    """The counters of one key and model in one hour (``hour``: epoch hours)."""

    hour: int
    key: str
    model: str
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ConsoleData(ABC):
    """The console's durable data; every method is safe to call from any greenlet."""

    backend = "abstract"

    @abstractmethod
    def version(self) -> str:
        """Changes whenever keys or accounts change (other processes poll it)."""

    @abstractmethod
    def list_keys(self) -> list[ConsoleKey]: ...

    @abstractmethod
    def put_key(self, key: ConsoleKey) -> None: ...

    @abstractmethod
    def delete_key(self, name: str) -> bool: ...

    @abstractmethod
    def list_accounts(self) -> list[ConsoleAccount]: ...

    @abstractmethod
    def put_account(self, account: ConsoleAccount) -> None: ...

    @abstractmethod
    def delete_account(self, fp: str) -> bool: ...

    @abstractmethod
    def record(self, activity: Activity, amounts: dict[str, int]) -> None:
        """Add one request to its hour's counters and to the activity ring."""

    @abstractmethod
    def activity(self, limit: int = 100) -> list[Activity]:
        """The latest requests, newest first."""

    @abstractmethod
    def usage(self, since_hour: int) -> list[UsageRow]:
        """Every hourly row from ``since_hour`` on."""

    def hourly_totals(self, since_hour: int) -> list[UsageRow]:
        """One row per hour (every key and model together; ``key`` and ``model`` are "*")."""
        per: dict[int, UsageRow] = {}
        for row in self.usage(since_hour):
            total = per.setdefault(row.hour, UsageRow(row.hour, "*", "*"))
            for name in USAGE_FIELDS:
                setattr(total, name, getattr(total, name) + getattr(row, name))
        return sorted(per.values(), key=lambda row: row.hour)

    def close(self) -> None:
        return None


def open_data(settings, store) -> ConsoleData:
    """Redis when the store is Redis (shared by every process), else SQLite in ``DATA_DIR``."""
    codec = AccountCodec(_cipher(settings))
    if store.shares_across_processes:
        from glm_proxy.console.redis_data import RedisData

        return RedisData(store.client, store.prefix, codec)
    from glm_proxy.console.sqlite_data import SqliteData

    return SqliteData(settings.data_dir, codec)


def _cipher(settings) -> MultiFernet | None:
    secret = getattr(settings, "store_secret_key", "")
    if not secret:
        return None
    from glm_proxy.store.secrets import make_cipher

    return make_cipher(secret)  # already validated when the store was made
