"""All mutable simulator state behind one lock.

Tests drive the simulator from outside (HTTP control API) while hundreds of greenlets
stream, so every read-modify-write of shared state goes through `SimState` methods that
take `self.lock`. The lock is never held across a sleep or a socket write.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field, fields
from typing import Any

from .signing import DEFAULT_SECRET

DEFAULT_CONFIG: dict[str, Any] = {
    "shape": "all",  # all | current | delta (spec §6.4)
    "chunk_size": 7,  # bytes per HTTP write; 0 = one write per event
    "delay": 0.0,  # seconds between events unless a directive says otherwise
    "access_ttl": 3600.0,  # seconds an access token lives
    "rotate_refresh": False,  # issue a new refresh token on every refresh
    "rotate_invalidates_old": False,  # ...and kill the one that was presented
    "allowed_refresh_tokens": None,  # None = any token works (newcomer mode); else a list
    "sign_secret": DEFAULT_SECRET,
    "enforce_check_digit": False,
    "require_app_name": False,
    "single_stream": True,  # reject a second concurrent stream per account (status 10040)
    "zero_mode_thinks": False,  # no directive + chat_mode "zero" -> "think" scenario
    "video_polls_to_finish": 3,
    "public_base_url": None,  # base for generated file URLs; None = the request's host
    # -- 2026 ("E3", upstream-protocol.md §15.7) ------------------------------------------
    "era": "E3",  # E3 | E2: framing, endpoints, busy answer, body checks (E3: the server default)
    "e3_final_finish": True,  # send the top-level finish frame (False: just close)
    "e3_processing_frame": True,  # an empty-parts "processing" frame mid-answer
    "accept_e2_modes": True,  # E3: accept chat_mode zero/deep_research too
    "legacy_delete": "works",  # E3 legacy delete: works | noop | 404
    "waf": False,  # reject non-browser requests (no acw_tc cookie / non-browser UA): 40012
    "clock_skew_ms": 0,  # server clock = local + this (served by cur_ts)
    "max_skew_ms": None,  # reject signed calls whose X-Timestamp is further off (None: off)
    "require_device_match": False,  # X-Device-Id must equal the refresh JWT's device_id claim
    # -- account care (guests, verification page, credits: see care.py) ------------------
    "guest_prefix": "guest-",
    "guest_mode": "refuse",
    "verify_after": None,
    "verify_window": 3600.0,
    "verify_hold": 3600.0,
    "credits": None,
    "credit_cost": 100,
    "daily_credits": 20000,
    "day": 0,
}

STREAM_FAULTS = frozenset(
    {
        "http_500",
        "http_502",
        "non_sse",
        "slow_first_byte",
        "drop_mid_stream",
        "truncate_stream",
        "access_expired",
        "empty_body",
        "busy_10061",  # E3: HTTP 429 {"status": 10061} before streaming
        "queue_10062",  # E3: lifecycle frame, then last_error 10062 (peak-hour queue)
        "waf_40012",  # HTTP 400 {"status": 40012}
        "verify_page",  # the HTML access-verification page (care.py)
        "banned",
        "risk_control",
        "out_of_credits",
        "rate_429",
        "unknown_refusal",
    }
)
REFRESH_FAULTS = frozenset({"refresh_dead", "refresh_500"})
MAX_LOGGED_REQUESTS = 500


def hex24() -> str:
    """A fresh 24-hex id, the shape upstream uses for every object id."""
    return secrets.token_hex(12)


@dataclass
class Fault:
    """One queued misbehaviour, consumed by the next matching request."""

    kind: str
    seconds: float = 5.0


@dataclass
class Conversation:
    """A server-side conversation; `turns` lets native multi-turn be asserted."""

    id: str
    assistant_id: str
    turns: int = 0
    deleted: bool = False
    history: list[dict[str, str]] = field(default_factory=list)


@dataclass
class Account:
    """One chatglm account, keyed by the ORIGINAL refresh token (rotations map back here)."""

    refresh_token: str
    user_id: str
    current_refresh_token: str
    refresh_count: int = 0
    refresh_failures: int = 0
    active_streams: int = 0
    max_concurrent_streams: int = 0
    stream_count: int = 0
    streams_completed: int = 0
    streams_aborted: int = 0
    rejected_concurrent: int = 0
    conversations: dict[str, Conversation] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        convs = self.conversations.values()
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "conversations"}
        data["conversations_alive"] = [c.id for c in convs if not c.deleted]
        data["conversations_deleted"] = [c.id for c in convs if c.deleted]
        data["conversation_turns"] = {c.id: c.turns for c in convs}
        return data


class SimState:
    """Accounts, tokens, faults, uploads, video tasks and the request log."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.lock = threading.Lock()
        self.config: dict[str, Any] = {**DEFAULT_CONFIG, **(config or {})}
        self.startup_config = dict(self.config)
        self.reset()

    def reset(self) -> None:
        """Forget everything except the config."""
        with self.lock:
            self.accounts: dict[str, Account] = {}
            self.refresh_alias: dict[str, str] = {}  # any issued refresh token -> account key
            self.dead_refresh: set[str] = set()
            self.access: dict[str, tuple[str, float]] = {}  # token -> (account key, expiry)
            self.faults: dict[str, deque[Fault]] = {}
            self.conv_owner: dict[str, str] = {}  # conversation id -> account key
            self.uploads: dict[str, dict[str, Any]] = {}  # file_id -> record (+ bytes)
            self.video_uploads: dict[str, dict[str, Any]] = {}  # source_id -> record
            self.video_tasks: dict[str, dict[str, Any]] = {}
            self.requests: deque[dict[str, Any]] = deque(maxlen=MAX_LOGGED_REQUESTS)
            # The log above keeps the last few hundred calls; this count never drops one, so a
            # test can tell "no new call" from "the log was full before and after".
            self.request_counts: Counter[str] = Counter()
            self.running: dict[str, str] = {}  # history id of a running answer -> account key
            self.stop_requests: set[str] = set()  # history ids asked to stop
            self.stops: list[dict[str, Any]] = []  # every stop_stream call (introspection)
            self.care: dict[str, dict[str, Any]] = {}  # account key -> care record (care.py)

    def cfg(self, key: str) -> Any:
        return self.config.get(key, DEFAULT_CONFIG.get(key))

    # -- tokens --------------------------------------------------------------------------

    def account_key(self, refresh_token: str) -> str:
        """Map any refresh token ever issued to its account key (the original token)."""
        with self.lock:
            return self.refresh_alias.get(refresh_token, refresh_token)

    def refresh_is_dead(self, token: str) -> bool:
        allowed = self.cfg("allowed_refresh_tokens")
        with self.lock:
            key = self.refresh_alias.get(token, token)
        if allowed is not None and key not in allowed:
            return True
        return token.startswith("dead-") or token in self.dead_refresh

    def mark_dead(self, token: str) -> None:
        with self.lock:
            self.dead_refresh.add(token)

    def _account(self, key: str) -> Account:
        acc = self.accounts.get(key)
        if acc is None:
            user_id = hashlib.sha256(key.encode()).hexdigest()[:24]
            acc = Account(refresh_token=key, user_id=user_id, current_refresh_token=key)
            self.accounts[key] = acc
        return acc

    def issue_tokens(self, refresh_token: str) -> tuple[Account, str, str]:
        """A successful refresh: new access token, maybe a rotated refresh token."""
        access = f"sim-at-{uuid.uuid4().hex}"
        with self.lock:
            key = self.refresh_alias.get(refresh_token, refresh_token)
            acc = self._account(key)
            acc.refresh_count += 1
            new_refresh = refresh_token
            if self.config.get("rotate_refresh"):
                new_refresh = f"sim-rt-{uuid.uuid4().hex}"
                self.refresh_alias[new_refresh] = key
                if self.config.get("rotate_invalidates_old"):
                    self.dead_refresh.add(refresh_token)
            acc.current_refresh_token = new_refresh
            ttl = float(self.config.get("access_ttl") or 0)
            self.access[access] = (key, time.time() + ttl)
        return acc, access, new_refresh

    def count_refresh_failure(self, refresh_token: str) -> None:
        with self.lock:
            key = self.refresh_alias.get(refresh_token, refresh_token)
            self._account(key).refresh_failures += 1

    def account_for_access(self, token: str) -> Account | None:
        """The account owning a live access token, or None if unknown/expired."""
        with self.lock:
            entry = self.access.get(token)
            if entry is None:
                return None
            key, expiry = entry
            if time.time() >= expiry:
                del self.access[token]
                return None
            return self._account(key)

    def revoke_access(self, token: str) -> None:
        with self.lock:
            self.access.pop(token, None)

    # -- faults --------------------------------------------------------------------------

    def add_faults(self, token: str, kind: str, count: int, seconds: float) -> None:
        with self.lock:
            key = token if token == "*" else self.refresh_alias.get(token, token)
            queue = self.faults.setdefault(key, deque())
            queue.extend(Fault(kind, seconds) for _ in range(count))

    def pending_faults(self) -> dict[str, list[str]]:
        with self.lock:
            return {k: [f.kind for f in q] for k, q in self.faults.items() if q}

    def pop_fault(self, key: str, kinds: frozenset[str]) -> Fault | None:
        """Take the next fault of a family for this account (its own queue before "*")."""
        with self.lock:
            for qkey in (key, "*"):
                queue = self.faults.get(qkey)
                if not queue:
                    continue
                for fault in queue:
                    if fault.kind in kinds:
                        queue.remove(fault)
                        return fault
        return None

    # -- streams and conversations -------------------------------------------------------

    def try_open_stream(self, acc: Account) -> bool:
        """Claim the account's single output slot; counts attempted concurrency either way."""
        with self.lock:
            acc.max_concurrent_streams = max(acc.max_concurrent_streams, acc.active_streams + 1)
            if acc.active_streams and self.config.get("single_stream", True):
                acc.rejected_concurrent += 1
                return False
            acc.active_streams += 1
            acc.stream_count += 1
            return True

    def cancel_stream(self, acc: Account) -> None:
        """Undo `try_open_stream` for a request that turned out not to stream at all."""
        with self.lock:
            acc.active_streams -= 1
            acc.stream_count -= 1

    def close_stream(self, acc: Account, completed: bool) -> None:
        with self.lock:
            acc.active_streams -= 1
            if completed:
                acc.streams_completed += 1
            else:
                acc.streams_aborted += 1

    def start_turn(
        self, acc: Account, conversation_id: str, assistant_id: str
    ) -> Conversation | None:
        """New conversation for "", continuation for a live own id, None for anything else."""
        with self.lock:
            if not conversation_id:
                conv = Conversation(id=hex24(), assistant_id=assistant_id)
                acc.conversations[conv.id] = conv
                self.conv_owner[conv.id] = acc.refresh_token
            else:
                conv = acc.conversations.get(conversation_id)
                if conv is None or conv.deleted:
                    return None
            conv.turns += 1
            return conv

    def record_answer(self, conv: Conversation, prompt: str, answer: str) -> None:
        with self.lock:
            conv.history.append({"prompt": prompt, "answer": answer})

    def delete_conversation(self, acc: Account, conversation_id: str) -> bool:
        with self.lock:
            conv = acc.conversations.get(conversation_id)
            if conv is None or conv.deleted:
                return False
            conv.deleted = True
            return True

    def request_stop(self, acc: Account, history_id: str) -> bool:
        """stop_stream: True when that answer of this account was still running."""
        with self.lock:
            running = self.running.get(history_id) == acc.refresh_token
            if running:
                self.stop_requests.add(history_id)
            self.stops.append(
                {"account": acc.refresh_token, "history_id": history_id, "running": running}
            )
            return running

    def stop_wanted(self, history_id: str) -> bool:
        with self.lock:
            return history_id in self.stop_requests

    # -- introspection -------------------------------------------------------------------

    def log_request(self, entry: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.requests.append(entry)
            self.request_counts[entry["path"]] += 1
        return entry

    def snapshot(self) -> dict[str, Any]:
        """JSON-able view for GET /_sim/state."""
        with self.lock:
            return {
                "accounts": {k: a.summary() for k, a in self.accounts.items()},
                "uploads": [
                    {k: v for k, v in u.items() if k != "data"} for u in self.uploads.values()
                ],
                "video_uploads": [
                    {k: v for k, v in u.items() if k != "data"} for u in self.video_uploads.values()
                ],
                "video_tasks": [dict(t) for t in self.video_tasks.values()],
                "faults_pending": {k: [f.kind for f in q] for k, q in self.faults.items() if q},
                "dead_refresh_tokens": sorted(self.dead_refresh),
                "stops": list(self.stops),
                "care": {k: {**r, "answers": len(r["answers"])} for k, r in self.care.items()},
                "requests": [dict(r) for r in self.requests],
                "request_counts": dict(self.request_counts),
                "config": dict(self.config),
            }
