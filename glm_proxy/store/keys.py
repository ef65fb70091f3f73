"""Every store key name, in one place.

Keys are plain strings chosen by the callers (the Redis store adds
``REDIS_PREFIX``). Spelling them here keeps the layout documented in the
README ("Redis layout") in one module, and makes a typo in one caller a
missing name instead of a silently separate key. The strings themselves are
part of the stored data: changing one orphans what a previous version wrote.

``<fp>`` is an account fingerprint (its identity), ``<q>`` a waiting line (a
hash of a candidate set), ``<name>`` an API key's name.

This module imports nothing from the project, so anything may import it.
"""

from __future__ import annotations

# -- the store itself -------------------------------------------------------------------


def lock(name: str) -> str:
    """Where the Redis store keeps the lock ``Store.lock(name)``."""
    return f"lock:{name}"


# -- accounts: tokens and cookies -------------------------------------------------------


def access_token(fp: str) -> str:
    """The cached access token of an account (expires with ``GLM_ACCESS_TOKEN_TTL``)."""
    return f"at:{fp}"


def refresh_lock(fp: str) -> str:
    """The name of the single-flight refresh lock (a ``Store.lock`` name, see ``lock``)."""
    return f"refresh:{fp}"


def rotated_token(fp: str) -> str:
    """The newest refresh token the upstream issued (``FOLLOW_TOKEN_ROTATION``)."""
    return f"rot:{fp}"


def configured_token(fp: str) -> str:
    """The fingerprint of the token the account was last configured with."""
    return f"cfgtok:{fp}"


def cookies(fp: str) -> str:
    """Browser cookies set for an account through the admin API."""
    return f"ck:{fp}"


# -- accounts: leases, health, waiting lines --------------------------------------------


def health(fp: str) -> str:
    """The account's health hash (state, failures, cooldown, served)."""
    return f"health:{fp}"


def lease(fp: str) -> str:
    """The account's lease slot set: lease id -> expiry (ms)."""
    return f"lease:{fp}"


LRU = "lru"  # sorted set: fingerprint -> last lease time (ms)
WAKE_CHANNEL = "wake"  # pub/sub: a lease was released somewhere


def queue(name: str) -> str:
    """A waiting line: ticket -> arrival number."""
    return f"queue:{name}"


def queue_alive(name: str) -> str:
    """A waiting line's liveness: ticket -> lapse time (ms)."""
    return f"queue:{name}:alive"


def queue_seq(name: str) -> str:
    """A waiting line's arrival counter."""
    return f"queue:{name}:seq"


def queue_owner(name: str) -> str:
    """Who waits in a line: ticket -> "<stride> <caller>" (``store.fairness``)."""
    return f"queue:{name}:owner"


def queue_fair(name: str) -> str:
    """A line's round robin across callers: ``v`` (its clock), ``p:<caller>`` (next turn)."""
    return f"queue:{name}:fair"


# -- accounts: care (budgets, credits) --------------------------------------------------


def spend(fp: str) -> str:
    """The account's answer start times (ms) of the last day: member -> start (sorted set)."""
    return f"spend:{fp}"


def gap(fp: str) -> str:
    """The earliest start (epoch ms) of the account's next answer (``ACCOUNT_MIN_GAP``)."""
    return f"gap:{fp}"


def credits(fp: str) -> str:
    """The account's credits as last read (hash: left_score, left_token, checked_at, ...)."""
    return f"credits:{fp}"


def credits_due(fp: str) -> str:
    """Set while a credit read of the account is not due (one read per interval everywhere)."""
    return f"credits:{fp}:due"


def daily_claim(fp: str, day: int) -> str:
    """Set once the account's login points of the upstream's ``day`` were claimed."""
    return f"claim:{fp}:{day}"


# -- conversations ----------------------------------------------------------------------


def conversation(conversation_id: str) -> str:
    """Which account owns a kept conversation (JSON)."""
    return f"conv:{conversation_id}"


def conversation_sweep(conversation_id: str) -> str:
    """What the sweeper needs to delete a kept conversation upstream (JSON)."""
    return f"sweep:conv:{conversation_id}"


SWEEP_IDLE = "sweep:idle"  # sorted set: kept conversation id -> last use (epoch s)
SWEEPER_ROUND = "sweeper:round"  # which process runs the current sweep round


def journal_entry(conversation_id: str) -> str:
    """A conversation in flight or awaiting its delete: the crash-safe journal (JSON)."""
    return f"journal:conv:{conversation_id}"


def journal_claim(conversation_id: str) -> str:
    """Held while one process deletes a journalled conversation (expires on its own)."""
    return f"journal:claim:{conversation_id}"


JOURNAL_DUE = "journal:due"  # sorted set: journalled conversation id -> when to look (epoch s)
JOURNAL_ROUND = "journal:round"  # which process runs the current recovery round

# -- API keys: limits and usage ---------------------------------------------------------


def key_slots(name: str) -> str:
    """A key's requests in flight: member -> expiry (ms)."""
    return f"keyslots:{name}"


def rpm(name: str, minute: int) -> str:
    """A key's request count in one minute (epoch minutes)."""
    return f"rpm:{name}:{minute}"


def usage(name: str, bucket: int) -> str:
    """A key's usage counters in one 10-minute bucket."""
    return f"usage:{name}:{bucket}"


# -- Responses API ----------------------------------------------------------------------


def response(response_id: str) -> str:
    """A stored response (``store: true``)."""
    return f"response:{response_id}"


def response_live(response_id: str) -> str:
    """The snapshot and owner of a response still being generated."""
    return f"response:{response_id}:live"


RESPONSE_CANCEL_CHANNEL = "responses:cancel"  # pub/sub: cancel a response running elsewhere
RESPONSES_AGE = "responses:age"  # sorted set: stored response id -> when stored (epoch s)
RESPONSES_TOTAL = "responses:bytes"  # bytes of every stored response (global cap)


def response_size(response_id: str) -> str:
    """``<owner>\t<bytes>`` of a stored response: what its removal gives back."""
    return f"response:{response_id}:size"


def responses_bytes(owner: str) -> str:
    """Bytes of stored responses one caller holds (``RESPONSES_KEY_QUOTA``)."""
    return f"responses:bytes:{owner}"


# -- uploads, video jobs, catalogue -----------------------------------------------------


def upload(fp: str, sha256: str) -> str:
    """The upstream record of a file already uploaded for an account."""
    return f"upl:{fp}:{sha256}"


def upload_lock(fp: str, sha256: str) -> str:
    """The lock that makes concurrent uploads of one file one upload."""
    return f"upl:{fp}:{sha256}:lock"


VIDEO_JOB_PREFIX = "vjob:"


def video_job(job_id: str) -> str:
    """An asynchronous video job (JSON)."""
    return VIDEO_JOB_PREFIX + job_id


def video_job_stop(job_id: str) -> str:
    """Set when a video job was cancelled."""
    return f"{VIDEO_JOB_PREFIX}{job_id}:stop"


def video_job_alive(job_id: str) -> str:
    """Refreshed while a process is still working on a video job."""
    return f"{VIDEO_JOB_PREFIX}{job_id}:alive"


MODEL_CATALOGUE = "catalogue:models"  # the upstream's model list, cached
