"""Responses API in team mode: API keys in front of a server-held account pool."""

from __future__ import annotations

import openai
import pytest

from glm_proxy.access.auth import Caller
from glm_proxy.accounts import Account, fingerprint
from glm_proxy.store.responses import owned_by, owner_of
from tests.conftest import start_proxy, stop_proxy
from tests.support.team import admin, assert_no_secrets, new_key, new_tokens, stream_entries
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def team(simulator, tmp_path_factory):
    tokens = new_tokens(2)
    keys = {"alice": new_key("alice"), "bob": new_key("bob")}
    admin_key = new_key("admin")
    server = start_proxy(
        simulator,
        tmp_path_factory.mktemp("responses-team"),
        ACCOUNTS=",".join(tokens),
        API_KEYS=",".join(f"{name}:{key}" for name, key in keys.items()),
        ADMIN_KEY=admin_key,
    )
    yield {"proxy": server, "tokens": tokens, "keys": keys, "admin": admin_key}
    stop_proxy(server)
    assert_no_secrets(server.logs(), [*tokens, *keys.values(), admin_key])


def sdk(team, name: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=team["proxy"].v1, api_key=team["keys"][name], max_retries=0, timeout=30
    )


def test_team_turns_stay_on_the_owning_account(team, simulator):
    alice = sdk(team, "alice")
    first = alice.responses.create(model="glm-4", input="team turn one marker-r1")
    second = alice.responses.create(
        model="glm-4", input="team turn two marker-r2", previous_response_id=first.id
    )
    assert "turn 2)" in second.output_text
    (one,) = stream_entries(simulator, "marker-r1")
    (two,) = stream_entries(simulator, "marker-r2")
    assert one["account"] == two["account"] and one["account"] in team["tokens"]
    assert two["body"]["conversation_id"]
    with pytest.raises(openai.NotFoundError):
        sdk(team, "bob").responses.retrieve(second.id)
    with pytest.raises(openai.NotFoundError):
        sdk(team, "bob").responses.delete(second.id)
    conversation = two["body"]["conversation_id"]
    assert conversation in simulator.account(two["account"])["conversations_alive"]
    alice.responses.delete(second.id)
    wait_until(
        lambda: conversation in simulator.account(two["account"])["conversations_deleted"],
        10,
        "the kept conversation was not deleted upstream",
    )


def test_usage_is_counted_for_the_key(team):
    before = admin(team["proxy"], team["admin"], "GET", "/usage?window=1h")["data"]
    bob_before = next(d for d in before if d["key"] == "bob")["windows"]["1h"]
    with sdk(team, "bob").responses.stream(model="glm-4", input="count me") as stream:
        stream.get_final_response()
    after = admin(team["proxy"], team["admin"], "GET", "/usage?window=1h")["data"]
    bob = next(d for d in after if d["key"] == "bob")["windows"]["1h"]
    assert bob["requests"] == bob_before["requests"] + 1
    assert bob["completion_tokens"] > bob_before["completion_tokens"]


def test_owner_rules():
    a, b = Account("rt-a", fingerprint("rt-a")), Account("rt-b", fingerprint("rt-b"))
    passthrough = owner_of(Caller(accounts=(a, b)))
    assert "rt-a" not in str(passthrough)  # fingerprints, never the token
    assert owned_by(passthrough, Caller(accounts=(b,)))
    assert not owned_by(passthrough, Caller(accounts=(Account("rt-c", fingerprint("rt-c")),)))
    team = owner_of(Caller(accounts=(a,), key_name="alice", pooled=True))
    assert owned_by(team, Caller(accounts=(a,), key_name="alice", pooled=True))
    assert not owned_by(team, Caller(accounts=(a,), key_name="bob", pooled=True))
    assert not owned_by(team, Caller(accounts=(a,)))  # a pass-through caller is not the key
    assert not owned_by(passthrough, Caller(accounts=(a,), key_name="alice", pooled=True))
