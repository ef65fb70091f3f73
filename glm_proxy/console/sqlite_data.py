"""The console's data in SQLite (``DATA_DIR/console.sqlite3``): one instance, durable.

Write-ahead logging with ``synchronous=NORMAL``: a commit costs no fsync, and a
crash loses at most the last moments of usage, never a committed key or
account. The connection is opened lazily in the process that uses it (never
carried across a fork) and guarded by a lock; calls do not yield, so greenlets
never wait long on it. The file is made readable by its owner only: it holds
refresh tokens.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path

from glm_proxy.console.data import (
    ACTIVITY_SIZE,
    USAGE_DAYS,
    USAGE_FIELDS,
    AccountCodec,
    Activity,
    ConsoleAccount,
    ConsoleData,
    ConsoleKey,
    UsageRow,
)

FILE_NAME = "console.sqlite3"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS keys (name TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (fp TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS usage (
    hour INTEGER NOT NULL, key TEXT NOT NULL, model TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0, errors INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0,
    total_tokens INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, key, model)
);
CREATE TABLE IF NOT EXISTS activity (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL);
"""
TRIM_EVERY = 100  # inserts between trims of the activity ring and old usage


class SqliteData(ConsoleData):
    backend = "sqlite"

    def __init__(self, directory: str, codec: AccountCodec | None = None) -> None:
        self.codec = codec or AccountCodec()
        # An empty DATA_DIR keeps the data in memory only: gone at the next restart.
        self.path = Path(directory) / FILE_NAME if directory else None
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._inserts = 0

    def _db(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            target = ":memory:"
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                if not self.path.exists():
                    self.path.touch(mode=0o600)  # it holds refresh tokens: owner only
                target = str(self.path)
            conn = sqlite3.connect(
                target, timeout=5.0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(SCHEMA)
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def _run(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db().execute(sql, args).fetchall()

    def _write(self, statements: list[tuple[str, tuple]]) -> None:
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                for sql, args in statements:
                    db.execute(sql, args)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    _BUMP = (
        "INSERT INTO meta (k, v) VALUES ('version', '1') "
        "ON CONFLICT(k) DO UPDATE SET v = CAST(v AS INTEGER) + 1",
        (),
    )

    def version(self) -> str:
        rows = self._run("SELECT v FROM meta WHERE k = 'version'")
        return rows[0][0] if rows else "0"

    def list_keys(self) -> list[ConsoleKey]:
        rows = self._run("SELECT body FROM keys ORDER BY name")
        return [ConsoleKey.from_dict(json.loads(body)) for (body,) in rows]

    def put_key(self, key: ConsoleKey) -> None:
        body = json.dumps(key.to_dict())
        sql = "INSERT INTO keys (name, body) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET body=?"
        self._write([(sql, (key.name, body, body)), self._BUMP])

    def delete_key(self, name: str) -> bool:
        found = bool(self._run("SELECT 1 FROM keys WHERE name = ?", (name,)))
        self._write([("DELETE FROM keys WHERE name = ?", (name,)), self._BUMP])
        return found

    def list_accounts(self) -> list[ConsoleAccount]:
        rows = self._run("SELECT body FROM accounts ORDER BY rowid")
        return self.codec.decode_all([body for (body,) in rows])

    def put_account(self, account: ConsoleAccount) -> None:
        body = self.codec.encode(account)
        sql = "INSERT INTO accounts (fp, body) VALUES (?, ?) ON CONFLICT(fp) DO UPDATE SET body=?"
        self._write([(sql, (account.fingerprint, body, body)), self._BUMP])

    def delete_account(self, fp: str) -> bool:
        found = bool(self._run("SELECT 1 FROM accounts WHERE fp = ?", (fp,)))
        self._write([("DELETE FROM accounts WHERE fp = ?", (fp,)), self._BUMP])
        return found

    def record(self, activity: Activity, amounts: dict[str, int]) -> None:
        hour = int(activity.at // 3600)
        columns = ", ".join(USAGE_FIELDS)
        values = tuple(int(amounts.get(f, 0)) for f in USAGE_FIELDS)
        updates = ", ".join(f"{f} = {f} + excluded.{f}" for f in USAGE_FIELDS)
        statements = [
            (
                f"INSERT INTO usage (hour, key, model, {columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                f"ON CONFLICT(hour, key, model) DO UPDATE SET {updates}",
                (hour, activity.key, activity.model, *values),
            ),
            ("INSERT INTO activity (body) VALUES (?)", (json.dumps(activity.to_dict()),)),
        ]
        self._inserts += 1
        if self._inserts % TRIM_EVERY == 1:
            statements += [
                (
                    "DELETE FROM activity WHERE id <= (SELECT MAX(id) FROM activity) - ?",
                    (ACTIVITY_SIZE,),
                ),
                ("DELETE FROM usage WHERE hour < ?", (int(time.time() // 3600) - USAGE_DAYS * 24,)),
            ]
        self._write(statements)

    def activity(self, limit: int = 100) -> list[Activity]:
        rows = self._run("SELECT body FROM activity ORDER BY id DESC LIMIT ?", (limit,))
        return [Activity.from_dict(json.loads(body)) for (body,) in rows]

    def usage(self, since_hour: int) -> list[UsageRow]:
        rows = self._run(
            f"SELECT hour, key, model, {', '.join(USAGE_FIELDS)} FROM usage WHERE hour >= ? "
            "ORDER BY hour",
            (since_hour,),
        )
        return [UsageRow(*row) for row in rows]

    def hourly_totals(self, since_hour: int) -> list[UsageRow]:
        sums = ", ".join(f"SUM({f})" for f in USAGE_FIELDS)
        rows = self._run(
            f"SELECT hour, '*', '*', {sums} FROM usage WHERE hour >= ? GROUP BY hour ORDER BY hour",
            (since_hour,),
        )
        return [UsageRow(*row) for row in rows]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
