"""The crash-safe journal of upstream conversations ("no trace left", even after a crash).

Every conversation the proxy creates upstream is written here as soon as its
id is known (before the answer's first byte goes to the client), with the
account, the creation time and the lease of the answer that owns it. The entry
is removed when its delete is confirmed, or when the conversation becomes a
kept one (which has its own record, ``pool.conversations``). What a dead
worker or replica leaves behind is found by the recovery sweep
(``background.recovery``): an entry whose owner can no longer be working on it.

Two homes, one interface:

- ``StoreJournal``: in the shared store (Redis), so every worker and replica
  sees every entry; an entry is orphaned once its lease has expired (a dead
  process stops renewing it within ``LEASE_TTL``).
- ``FileJournal``: with the in-memory store (one worker), a SQLite file in
  ``DATA_DIR`` (``journal.sqlite3``, WAL), so the worker gunicorn starts after
  a crash finds what the dead one left. Leases live in the dead worker's
  memory, so each process also beats in the file every third of ``LEASE_TTL``:
  an entry of another process is orphaned once that process stopped beating
  (several single-worker instances may share one directory).

``due`` is when the sweep may look at an entry at all: a fresh entry becomes
due when its lease could first have expired; an entry the janitor deletes
(the answer ended) is held like a lease, ``LEASE_TTL`` ahead and renewed
until the delete ends; a failed delete becomes due after a backoff.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import orjson

from glm_proxy.ids import uuid4_hex
from glm_proxy.store import keys
from glm_proxy.store.base import Store

log = logging.getLogger(__name__)

FILE_NAME = "journal.sqlite3"
FOREVER = 1e12  # a due time no round reaches: the admin listing reads every entry


@dataclass
class Entry:
    """One upstream conversation the proxy created and has not confirmed deleted."""

    conversation_id: str
    account: str  # the account's fingerprint
    assistant_id: str
    created: float  # epoch seconds
    lease: str = ""  # the id of the owning lease (a member of ``lease:<account>``)
    owner: str = ""  # the process (journal instance) that wrote it
    due: float = 0.0  # when the recovery sweep may look at it (epoch seconds)
    attempts: int = 0  # deletes the sweep tried
    last_error: str = ""
    token: str = ""  # the refresh token, only for an account the server does not hold

    def to_json(self) -> str:
        return orjson.dumps(self).decode()  # orjson writes a dataclass's fields in order

    @classmethod
    def from_json(cls, raw: str | bytes) -> Entry:
        data = orjson.loads(raw)
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def public(self) -> dict:
        """The admin API's view: no secret."""
        data = asdict(self)
        data.pop("token", None)
        data["passthrough"] = bool(self.token)
        return data


class Journal:
    """The operations both homes offer (see the module doc)."""

    backend = "abstract"

    def __init__(self, store: Store, lease_ttl: float) -> None:
        self.store = store
        self.lease_ttl = lease_ttl
        self.instance = uuid4_hex()

    def _lease_expiry(self, entry: Entry) -> float | None:
        """When the entry's lease expires (epoch s) if it is still held in ``store``."""
        if not entry.lease:
            return None
        score = self.store.zscore(keys.lease(entry.account), entry.lease)
        return None if score is None else score / 1000

    def alive_until(self, entry: Entry, now: float) -> float | None:
        """Until when the entry's owner may still be working on it; None when orphaned."""
        expiry = self._lease_expiry(entry)
        return expiry if expiry is not None and expiry > now else None

    def beat(self) -> None:
        """This process is alive (only the file journal needs it)."""

    def record(self, entry: Entry) -> None:
        raise NotImplementedError

    def hand_over(self, ids: Iterable[str], until: float) -> None:
        """Let the sweep look at these entries only from ``until`` (existing ones only).

        The answer ended and the janitor deletes them, or their answer still runs.
        """
        raise NotImplementedError

    def remove(self, *ids: str) -> None:
        raise NotImplementedError

    def due(self, now: float, limit: int = 100) -> list[Entry]:
        raise NotImplementedError

    def claim(self, conversation_id: str, now: float, hold: float) -> bool:
        """Take an entry for one delete try; one process wins, the hold expires on its own."""
        raise NotImplementedError

    def reschedule(self, entry: Entry) -> None:
        """Write the entry back (new ``due``, attempts, error) and drop the claim."""
        raise NotImplementedError

    def entries(self, limit: int = 1000) -> list[Entry]:
        return self.due(FOREVER, limit)

    def close(self) -> None:
        return None


class StoreJournal(Journal):
    """The journal in the shared store: ``journal:conv:<id>`` plus the ``journal:due`` index."""

    backend = "store"

    def record(self, entry: Entry) -> None:
        entry.owner = entry.owner or self.instance
        # The index first: a crash between the two leaves an index entry that the sweep
        # drops (it is due only later), never a record no sweep can find.
        self.store.zadd(keys.JOURNAL_DUE, {entry.conversation_id: entry.due})
        self.store.set(keys.journal_entry(entry.conversation_id), entry.to_json())

    def hand_over(self, ids: Iterable[str], until: float) -> None:
        self.store.zadd(keys.JOURNAL_DUE, dict.fromkeys(ids, until), only_existing=True)

    def remove(self, *ids: str) -> None:
        if not ids:
            return
        self.store.zrem(keys.JOURNAL_DUE, *ids)
        self.store.delete(
            *(keys.journal_entry(i) for i in ids), *(keys.journal_claim(i) for i in ids)
        )

    def due(self, now: float, limit: int = 100) -> list[Entry]:
        found = []
        for conversation_id in self.store.zrange_by_score(keys.JOURNAL_DUE, now, limit):
            raw = self.store.get(keys.journal_entry(conversation_id))
            if raw:
                entry = Entry.from_json(raw)
                entry.due = self.store.zscore(keys.JOURNAL_DUE, conversation_id) or entry.due
                found.append(entry)
            else:  # written half (the index first): nothing to delete with
                self.store.zrem(keys.JOURNAL_DUE, conversation_id)
        return found

    def claim(self, conversation_id: str, now: float, hold: float) -> bool:
        return self.store.set_if_absent(keys.journal_claim(conversation_id), self.instance, hold)

    def reschedule(self, entry: Entry) -> None:
        self.store.set(keys.journal_entry(entry.conversation_id), entry.to_json())
        self.store.zadd(keys.JOURNAL_DUE, {entry.conversation_id: entry.due})
        self.store.delete(keys.journal_claim(entry.conversation_id))


SCHEMA = (
    "CREATE TABLE IF NOT EXISTS journal (id TEXT PRIMARY KEY, due REAL NOT NULL, data TEXT)",
    "CREATE INDEX IF NOT EXISTS journal_due ON journal (due)",
    "CREATE TABLE IF NOT EXISTS owners (id TEXT PRIMARY KEY, beat REAL NOT NULL)",
)


class FileJournal(Journal):
    """The journal in a SQLite file (the in-memory store's single worker)."""

    backend = "file"

    def __init__(self, store: Store, lease_ttl: float, path: str) -> None:
        super().__init__(store, lease_ttl)
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout = 5000")
        if path != ":memory:":
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")  # survives a process crash
        for statement in SCHEMA:
            self._db.execute(statement)
        self.beat()

    def _run(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    def beat(self) -> None:
        now = time.time()
        self._run("INSERT OR REPLACE INTO owners (id, beat) VALUES (?, ?)", (self.instance, now))
        self._run("DELETE FROM owners WHERE beat < ?", (now - 7 * 86400,))

    def alive_until(self, entry: Entry, now: float) -> float | None:
        if entry.owner == self.instance:
            return super().alive_until(entry, now)
        row = self._run("SELECT beat FROM owners WHERE id = ?", (entry.owner,)).fetchone()
        if row is None:
            return None
        until = float(row[0]) + self.lease_ttl
        return until if until > now else None

    def record(self, entry: Entry) -> None:
        entry.owner = entry.owner or self.instance
        self._run(
            "INSERT OR REPLACE INTO journal (id, due, data) VALUES (?, ?, ?)",
            (entry.conversation_id, entry.due, entry.to_json()),
        )

    def hand_over(self, ids: Iterable[str], until: float) -> None:
        for part in _parts(ids):
            marks = ",".join("?" * len(part))
            self._run(f"UPDATE journal SET due = ? WHERE id IN ({marks})", (until, *part))

    def remove(self, *ids: str) -> None:
        for part in _parts(ids):
            marks = ",".join("?" * len(part))
            self._run(f"DELETE FROM journal WHERE id IN ({marks})", tuple(part))

    def due(self, now: float, limit: int = 100) -> list[Entry]:
        rows = self._run(
            "SELECT due, data FROM journal WHERE due <= ? ORDER BY due LIMIT ?", (now, limit)
        ).fetchall()
        found = []
        for due, data in rows:
            entry = Entry.from_json(data)
            entry.due = float(due)
            found.append(entry)
        return found

    def claim(self, conversation_id: str, now: float, hold: float) -> bool:
        cursor = self._run(
            "UPDATE journal SET due = ? WHERE id = ? AND due <= ?",
            (now + hold, conversation_id, now),
        )
        return cursor.rowcount == 1

    def reschedule(self, entry: Entry) -> None:
        self._run(
            "UPDATE journal SET due = ?, data = ? WHERE id = ?",
            (entry.due, entry.to_json(), entry.conversation_id),
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _parts(ids: Iterable[str], size: int = 500) -> Iterator[list[str]]:
    """``ids`` in lists of at most ``size``: one statement (one transaction, one write to the
    file) for a batch of ids, within SQLite's limit on parameters per statement."""
    part: list[str] = []
    for conversation_id in ids:
        part.append(conversation_id)
        if len(part) == size:
            yield part
            part = []
    if part:
        yield part


def open_file(store: Store, lease_ttl: float, data_dir: str) -> FileJournal:
    """The file journal in ``data_dir``; an in-memory one (logged) when it cannot be written."""
    path = Path(data_dir) / FILE_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)  # it may hold pass-through tokens
        os.close(fd)
        return FileJournal(store, lease_ttl, str(path))
    except (OSError, sqlite3.Error) as exc:
        log.warning(
            "DATA_DIR %s is not writable (%s): the conversation journal lives in memory, "
            "and a worker restart forgets it",
            data_dir,
            type(exc).__name__,
        )
        return FileJournal(store, lease_ttl, ":memory:")


def open_journal(settings, store: Store) -> Journal:
    """The store's journal when it is shared (Redis), else the file in ``DATA_DIR``."""
    if store.shares_across_processes:
        return StoreJournal(store, settings.lease_ttl)
    return open_file(store, settings.lease_ttl, settings.data_dir)
