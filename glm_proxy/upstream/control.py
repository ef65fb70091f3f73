"""The 2026 management calls: server clock, stop, delete with fallbacks, model catalogue.

Functions over an ``UpstreamClient`` (like ``media.py``), so the core client
stays about tokens, signing and streams. Every call goes through the client's
transport, headers and envelope handling.

Deleting has three candidate calls and no agreement on which one the upstream
still honours (upstream-protocol.md §15.1): ``bulk`` (``bulk_delete``, what the
2026 browser uses, even for one id), ``mainchat`` (single delete of the 2026
bundle) and ``legacy`` (the 2025 path). ``GLM_DELETE_METHODS`` orders them; the
first that answers with a success envelope wins. A reply saying the
conversation does not exist counts as done (concurrent cleanups race).
"""

from __future__ import annotations

import logging
from typing import Any

from glm_proxy.accounts import Account
from glm_proxy.errors import GLMProxyError, UpstreamProtocolError
from glm_proxy.observability.metrics import CLOCK_SYNCS, CONVERSATION_DELETE_CALLS, labelled
from glm_proxy.upstream.envelope import unwrap

log = logging.getLogger(__name__)

NOT_FOUND_HINTS = ("不存在", "not found", "not exist")


def sync_clock(client, account: Account | None = None) -> float:
    """Ask the server for its time and keep ``offset = server + rtt/2 - local`` (ms).

    Raises our upstream errors when the call fails; the caller decides to fall
    back to the local clock.
    """
    s = client.settings
    started = client._clock()
    resp = client._send(
        "GET",
        client.url(s.glm_time_path),
        timeout=(s.glm_connect_timeout, s.glm_request_timeout),
        account=account,
        headers=client.headers(token=None, signed=True, content_type=None, account=account),
    )
    result = unwrap(resp.status_code, client._read_capped(resp), s.glm_busy_codes)
    ended = client._clock()
    value = result.get(s.glm_time_field) if isinstance(result, dict) else result
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise UpstreamProtocolError(f"the server time reply has no number at {s.glm_time_field}")
    rtt_ms = (ended - started) * 1000
    client.clock_offset_ms = float(value) + rtt_ms / 2 - ended * 1000
    client.clock_synced_at = ended
    return client.clock_offset_ms


def ensure_clock(client, account: Account | None = None) -> None:
    """Re-sync the server clock when due; a failure keeps the local clock (logged once)."""
    s = client.settings
    if not s.glm_time_sync:
        return
    synced = client.clock_synced_at
    now = client._clock()
    if synced is not None and now - synced < s.glm_time_sync_interval:
        return
    if not client._local_flight.acquire(blocking=False):
        return  # another greenlet is syncing; sign with the current offset meanwhile
    try:
        offset = sync_clock(client, account)
        labelled(CLOCK_SYNCS, "ok").inc()
        log.debug("server clock offset %.0f ms", offset)
    except GLMProxyError as exc:
        labelled(CLOCK_SYNCS, "failed").inc()
        client.clock_synced_at = now  # try again after the interval, not on every call
        log.warning("server time sync failed, signing with the local clock: %s", exc.message)
    finally:
        client._local_flight.release()


def stop_stream(client, account: Account, history_id: str) -> None:
    """``POST stop_stream {"history_id"}``: the upstream stops writing that answer."""
    client.call(
        account,
        "POST",
        client.settings.glm_stop_path,
        json={"history_id": history_id},
        referer=f"{client.settings.glm_origin}/main/alltoolsdetail",
    )


def _delete_call(client, account: Account, method: str, assistant_id: str, ids: list[str]) -> None:
    s = client.settings
    referer = f"{s.glm_origin}/main/alltoolsdetail"
    if method == "bulk":
        body: dict[str, Any] = {"conversation_ids": ids}
        if s.glm_bulk_delete_assistant:
            body["assistant_id"] = assistant_id
        client.call(account, "POST", s.glm_bulk_delete_path, json=body, referer=referer)
        return
    path = s.glm_mainchat_delete_path if method == "mainchat" else s.glm_delete_path
    for conversation_id in ids:
        try:
            client.call(
                account,
                "POST",
                path,
                json={"assistant_id": assistant_id, "conversation_id": conversation_id},
                referer=referer,
            )
        except GLMProxyError as exc:
            if not any(hint in exc.message for hint in NOT_FOUND_HINTS):
                raise


def delete_conversations(client, account: Account, assistant_id: str, ids: list[str]) -> str:
    """Delete ``ids`` by the configured calls in order; returns the call that worked.

    Each outcome is counted (``glm_proxy_conversation_delete_calls_total``).
    Raises the last error when every call failed.
    """
    last: GLMProxyError | None = None
    for method in client.settings.glm_delete_methods:
        try:
            _delete_call(client, account, method, assistant_id, ids)
        except GLMProxyError as exc:
            labelled(CONVERSATION_DELETE_CALLS, method, "failed").inc()
            log.info(
                "delete via %s failed for %d conversation(s) of %s: %s",
                method,
                len(ids),
                account,
                exc.message,
            )
            last = exc
            continue
        labelled(CONVERSATION_DELETE_CALLS, method, "ok").inc()
        return method
    raise last or UpstreamProtocolError("no delete method configured (GLM_DELETE_METHODS)")


def fetch_catalogue(client, account: Account) -> dict[str, Any]:
    """The upstream's model catalogue ``{"default": {...}, "models": [...]}``."""
    s = client.settings
    result = client.call(account, "GET", s.glm_catalogue_path, data=None)
    if not isinstance(result, dict) or not isinstance(result.get("models"), list):
        raise UpstreamProtocolError("the model catalogue reply has no models list")
    return result


def catalogue_models(result: dict[str, Any]) -> list[dict[str, Any]]:
    """``[{"selected_model", "display_name", "efforts": [...]}]`` from a catalogue reply."""
    models = []
    for entry in result.get("models") or ():
        if not isinstance(entry, dict):
            continue
        name = entry.get("selected_model")
        if not isinstance(name, str) or not name:
            continue
        efforts = [
            e.get("am_effort") or e.get("effort")
            for e in entry.get("reasoning_efforts") or ()
            if isinstance(e, dict)
        ]
        models.append(
            {
                "selected_model": name,
                "display_name": entry.get("display_name") or name,
                "efforts": [e for e in efforts if isinstance(e, str)],
            }
        )
    return models
