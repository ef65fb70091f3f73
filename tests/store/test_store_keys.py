"""The store key names are stored data: each must stay exactly what earlier versions wrote."""

from __future__ import annotations

import pytest

from glm_proxy.store import keys

LAYOUT = [
    (keys.lock("refresh:fp1"), "lock:refresh:fp1"),
    (keys.access_token("fp1"), "at:fp1"),
    (keys.refresh_lock("fp1"), "refresh:fp1"),
    (keys.rotated_token("fp1"), "rot:fp1"),
    (keys.configured_token("fp1"), "cfgtok:fp1"),
    (keys.cookies("fp1"), "ck:fp1"),
    (keys.health("fp1"), "health:fp1"),
    (keys.lease("fp1"), "lease:fp1"),
    (keys.LRU, "lru"),
    (keys.WAKE_CHANNEL, "wake"),
    (keys.queue("q1"), "queue:q1"),
    (keys.queue_alive("q1"), "queue:q1:alive"),
    (keys.queue_seq("q1"), "queue:q1:seq"),
    (keys.conversation("c1"), "conv:c1"),
    (keys.conversation_sweep("c1"), "sweep:conv:c1"),
    (keys.SWEEP_IDLE, "sweep:idle"),
    (keys.SWEEPER_ROUND, "sweeper:round"),
    (keys.key_slots("team"), "keyslots:team"),
    (keys.rpm("team", 29000000), "rpm:team:29000000"),
    (keys.usage("team", 2900000), "usage:team:2900000"),
    (keys.response("resp_1"), "response:resp_1"),
    (keys.response_live("resp_1"), "response:resp_1:live"),
    (keys.RESPONSE_CANCEL_CHANNEL, "responses:cancel"),
    (keys.upload("fp1", "abc"), "upl:fp1:abc"),
    (keys.upload_lock("fp1", "abc"), "upl:fp1:abc:lock"),
    (keys.video_job("video_1"), "vjob:video_1"),
    (keys.video_job_stop("video_1"), "vjob:video_1:stop"),
    (keys.video_job_alive("video_1"), "vjob:video_1:alive"),
    (keys.MODEL_CATALOGUE, "catalogue:models"),
]


@pytest.mark.parametrize(("built", "stored"), LAYOUT)
def test_key_names_are_unchanged(built: str, stored: str) -> None:
    assert built == stored
