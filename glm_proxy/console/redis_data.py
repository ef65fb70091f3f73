"""The console's data in Redis: shared by every worker and replica.

Keys (under ``REDIS_PREFIX``): ``console:keys`` and ``console:accounts``
(hashes of JSON records), ``console:version`` (a counter bumped on every
change, which the other processes poll), ``console:usage:<hour>`` (a hash of
``<key>\\t<model>\\t<counter>`` fields, kept ``USAGE_DAYS``), ``console:hour:<hour>``
(the same hour's totals over every key and model) and
``console:activity`` (a list trimmed to the latest ``ACTIVITY_SIZE``).
"""

from __future__ import annotations

import json
import time

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

KEYS, ACCOUNTS, VERSION, ACTIVITY = (
    "console:keys",
    "console:accounts",
    "console:version",
    "console:activity",
)


def usage_key(hour: int) -> str:
    return f"console:usage:{hour}"


def hour_key(hour: int) -> str:
    """The hour's totals over every key and model (what the overview's chart reads)."""
    return f"console:hour:{hour}"


class RedisData(ConsoleData):
    backend = "redis"

    def __init__(self, client, prefix: str, codec: AccountCodec | None = None) -> None:
        self.client = client
        self.prefix = prefix
        self.codec = codec or AccountCodec()

    def k(self, key: str) -> str:
        return self.prefix + key

    def version(self) -> str:
        return self.client.get(self.k(VERSION)) or "0"

    def _put(self, hash_name: str, field: str, body: str) -> None:
        pipe = self.client.pipeline()
        pipe.hset(self.k(hash_name), field, body)
        pipe.incr(self.k(VERSION))
        pipe.execute()

    def _delete(self, hash_name: str, field: str) -> bool:
        pipe = self.client.pipeline()
        pipe.hdel(self.k(hash_name), field)
        pipe.incr(self.k(VERSION))
        removed, _ = pipe.execute()
        return bool(removed)

    def list_keys(self) -> list[ConsoleKey]:
        found = self.client.hgetall(self.k(KEYS))
        return sorted(
            (ConsoleKey.from_dict(json.loads(body)) for body in found.values()),
            key=lambda key: key.name,
        )

    def put_key(self, key: ConsoleKey) -> None:
        self._put(KEYS, key.name, json.dumps(key.to_dict()))

    def delete_key(self, name: str) -> bool:
        return self._delete(KEYS, name)

    def list_accounts(self) -> list[ConsoleAccount]:
        found = self.client.hgetall(self.k(ACCOUNTS))
        accounts = self.codec.decode_all(list(found.values()))
        return sorted(accounts, key=lambda account: account.created_at)

    def put_account(self, account: ConsoleAccount) -> None:
        self._put(ACCOUNTS, account.fingerprint, self.codec.encode(account))

    def delete_account(self, fp: str) -> bool:
        return self._delete(ACCOUNTS, fp)

    def record(self, activity: Activity, amounts: dict[str, int]) -> None:
        hour = int(activity.at // 3600)
        detail, totals = self.k(usage_key(hour)), self.k(hour_key(hour))
        pipe = self.client.pipeline(transaction=False)
        for name in USAGE_FIELDS:
            if amounts.get(name):
                pipe.hincrby(detail, f"{activity.key}\t{activity.model}\t{name}", amounts[name])
                pipe.hincrby(totals, name, amounts[name])
        pipe.expire(detail, USAGE_DAYS * 86400)
        pipe.expire(totals, USAGE_DAYS * 86400)
        pipe.lpush(self.k(ACTIVITY), json.dumps(activity.to_dict()))
        pipe.ltrim(self.k(ACTIVITY), 0, ACTIVITY_SIZE - 1)
        pipe.execute()

    def activity(self, limit: int = 100) -> list[Activity]:
        bodies = self.client.lrange(self.k(ACTIVITY), 0, max(0, limit - 1))
        return [Activity.from_dict(json.loads(body)) for body in bodies]

    def usage(self, since_hour: int, until_hour: int | None = None) -> list[UsageRow]:
        last = until_hour if until_hour is not None else int(time.time() // 3600)
        hours = list(range(since_hour, last + 1))
        pipe = self.client.pipeline(transaction=False)
        for hour in hours:
            pipe.hgetall(self.k(usage_key(hour)))
        rows: list[UsageRow] = []
        for hour, fields in zip(hours, pipe.execute(), strict=True):
            found: dict[tuple[str, str], UsageRow] = {}
            for name, value in fields.items():
                key, _, rest = name.partition("\t")
                model, _, counter = rest.rpartition("\t")
                row = found.setdefault((key, model), UsageRow(hour, key, model))
                if counter in USAGE_FIELDS:
                    setattr(row, counter, int(value))
            rows.extend(found.values())
        return rows

    def hourly_totals(self, since_hour: int) -> list[UsageRow]:
        hours = list(range(since_hour, int(time.time() // 3600) + 1))
        pipe = self.client.pipeline(transaction=False)
        for hour in hours:
            pipe.hgetall(self.k(hour_key(hour)))
        rows = []
        for hour, fields in zip(hours, pipe.execute(), strict=True):
            if fields:
                counts = {name: int(fields.get(name) or 0) for name in USAGE_FIELDS}
                rows.append(UsageRow(hour, "*", "*", **counts))
        return rows
