"""Stored responses (``store: true``): retrieval, deletion, and the history behind them.

One store key per response, ``response:<id>`` (TTL ``RESPONSES_TTL``), holding
the ``response`` object, this turn's own items (its input and output), the id
of the response it continued (``parent``; the conversation's history is the
parent's history plus these items, rebuilt on read, at most
``RESPONSES_MAX_CHAIN`` turns deep), and the upstream conversation the answer
lives in with the account that owns it. Storing each turn by reference keeps
a long conversation's cost linear: a full copy per turn made 30 small
follow-ups of one large input cost 30 copies of it. Storing a child renews its
ancestors' TTL, so a chain expires as one. Byte quotas: ``response_quota``.
``previous_response_id``
continues that upstream conversation while it is still kept (the idle
sweeper deletes it after ``CONVERSATION_IDLE_TTL``), and replays the stored
items otherwise.

A response belongs to its caller: the team API key that created it, or, in
pass-through mode, the refresh tokens (by fingerprint) that served it. Anybody
else gets the same 404 as for an id that never existed.

While a response streams, ``response:<id>:live`` names it so that
``POST /v1/responses/<id>/cancel`` (possibly on another worker or replica)
can stop it through the store's publish/subscribe.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from glm_proxy.access.auth import Caller
from glm_proxy.accounts import fingerprint
from glm_proxy.errors import NotFound
from glm_proxy.store import keys
from glm_proxy.store.response_quota import ResponseQuota

CANCEL_CHANNEL = keys.RESPONSE_CANCEL_CHANNEL
LIVE_TTL = 3600.0


def response_key(response_id: str) -> str:
    return keys.response(response_id)


def live_key(response_id: str) -> str:
    return keys.response_live(response_id)


def owner_of(caller: Caller) -> dict[str, Any]:
    """What identifies the caller a response belongs to (no secret: names and fingerprints)."""
    if caller.key_name:
        return {"key": caller.key_name}
    return {"accounts": sorted(a.fingerprint for a in caller.accounts)}


def owner_label(owner: dict[str, Any]) -> str:
    """The caller a quota is counted for: a key's name, or a hash of the accounts."""
    if owner.get("key"):
        return "key:" + str(owner["key"])
    return "pt:" + fingerprint(",".join(owner.get("accounts") or ()))


def owned_by(owner: dict[str, Any], caller: Caller) -> bool:
    if owner.get("key") or caller.key_name:
        return owner.get("key") == caller.key_name
    mine = {a.fingerprint for a in caller.accounts}
    return bool(mine & set(owner.get("accounts") or ()))


def not_found(response_id: str, param: str | None = None) -> NotFound:
    return NotFound(
        f"Response with id '{response_id}' not found (it may have expired, been deleted, "
        "or been created with store=false).",
        param=param,
        code="response_not_found",
    )


@dataclass
class StoredResponse:
    response: dict[str, Any]
    items: list[dict[str, Any]] = field(default_factory=list)
    owner: dict[str, Any] = field(default_factory=dict)
    conversation_id: str | None = None
    account: str | None = None  # fingerprint of the account owning the conversation
    assistant_id: str | None = None
    turn: tuple[int, int] = (0, 0)  # this response's own input items: items[turn[0]:turn[1]]
    # The response this one continued; ``items`` are then this turn's only (a record
    # without a parent holds the whole history, as records written before did).
    parent: str | None = None
    depth: int = 1  # turns in the chain, this one included
    # Ids of the ancestors, nearest first: set by ``with_history``, never stored.
    chain: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        data = dict(self.__dict__)
        data.pop("chain")
        return orjson.dumps(data).decode()

    @classmethod
    def from_json(cls, raw: str) -> StoredResponse:
        data = orjson.loads(raw)
        data.pop("chain", None)
        if "turn" in data:
            data["turn"] = tuple(data["turn"])  # JSON has no tuples
        return cls(**data)

    def input_items(self) -> list[dict[str, Any]]:
        start, end = self.turn
        return self.items[start:end]


class ResponseStore:
    def __init__(self, store, settings) -> None:
        self.store = store
        self.settings = settings

    @property
    def quota(self) -> ResponseQuota:
        return ResponseQuota(self.store, self.settings)

    def save(self, record: StoredResponse, ancestors: Sequence[str] = ()) -> None:
        """Store ``record`` (its own items only), renew its ancestors' TTL, count its bytes."""
        ttl = self.settings.responses_ttl
        text = record.to_json()
        response_id = record.response["id"]
        self.store.set(response_key(response_id), text, ttl=ttl)
        for ancestor in ancestors:
            self.store.expire(response_key(ancestor), ttl)
        self.quota.added(response_id, owner_label(record.owner), len(text))

    def with_history(
        self, record: StoredResponse, caller: Caller, param: str | None = None
    ) -> StoredResponse:
        """``record`` with ``items`` holding the whole conversation, rebuilt from its parents.

        A missing ancestor (expired, evicted, deleted) is a 404: replaying half a
        conversation would answer a question the caller did not ask.
        """
        parts = [record.items]
        chain: list[str] = []
        parent = record.parent
        while parent:
            if len(chain) >= self.settings.responses_max_chain:
                break
            raw = self.store.get(response_key(parent))
            ancestor = StoredResponse.from_json(raw) if raw else None
            if ancestor is None or not owned_by(ancestor.owner, caller):
                raise NotFound(
                    f"Response '{record.response.get('id')}' continues '{parent}', which has "
                    "expired, been evicted (RESPONSES_MAX_BYTES) or been deleted.",
                    param=param,
                    code="response_not_found",
                )
            chain.append(parent)
            parts.append(ancestor.items)
            parent = ancestor.parent
        items = [item for part in reversed(parts) for item in part]
        start = len(items) - len(record.items)
        return dataclasses.replace(
            record,
            items=items,
            turn=(start + record.turn[0], start + record.turn[1]),
            chain=chain,
        )

    def load(self, response_id: str, caller: Caller, param: str | None = None) -> StoredResponse:
        """The caller's stored response, or a 404 ``response_not_found``."""
        raw = self.store.get(response_key(response_id))
        if not raw:
            raise not_found(response_id, param)
        record = StoredResponse.from_json(raw)
        if not owned_by(record.owner, caller):
            raise not_found(response_id, param)
        return record

    def delete(self, response_id: str) -> None:
        self.store.delete(response_key(response_id))
        self.quota.removed(response_id)

    # -- streams in flight -------------------------------------------------------------

    def mark_live(self, response_id: str, owner: dict[str, Any], snapshot: dict) -> None:
        value = orjson.dumps({"owner": owner, "response": snapshot}).decode()
        self.store.set(live_key(response_id), value, ttl=LIVE_TTL)

    def live(self, response_id: str, caller: Caller) -> dict[str, Any] | None:
        raw = self.store.get(live_key(response_id))
        if not raw:
            return None
        value = orjson.loads(raw)
        return value["response"] if owned_by(value["owner"], caller) else None

    def end_live(self, response_id: str) -> None:
        self.store.delete(live_key(response_id))

    def request_cancel(self, response_id: str) -> None:
        self.store.publish(CANCEL_CHANNEL, response_id)
