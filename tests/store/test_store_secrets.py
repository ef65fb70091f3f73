"""Encryption at rest (``STORE_SECRET_KEY``): secret-bearing store values are sealed in Redis,
read back transparently, and a bad key fails at start-up."""

from __future__ import annotations

import openai
import pytest
from cryptography.fernet import Fernet

from glm_proxy.config import ConfigError, Settings
from glm_proxy.store import MemoryStore, create_store
from glm_proxy.store.secrets import SECRET_PREFIXES, SealedStore, make_cipher
from tests.conftest import start_proxy, stop_proxy
from tests.support.redis_fixture import redis_server, redis_url  # noqa: F401


def test_secret_values_in_redis_are_not_plaintext(simulator, redis_url, tmp_path, token):  # noqa: F811
    key = Fernet.generate_key().decode()
    server = start_proxy(simulator, tmp_path, **redis_url.env(), STORE_SECRET_KEY=key)
    try:
        client = openai.OpenAI(base_url=server.v1, api_key=token, max_retries=0, timeout=30)
        kept = client.chat.completions.create(
            model="glm-4",
            messages=[{"role": "user", "content": "seal me"}],
            extra_body={"keep_conversation": True},
        )
        raw = redis_url.client()
        secret_keys = [
            k
            for k in raw.scan_iter(match=redis_url.prefix + "*")
            if k[len(redis_url.prefix) :].startswith(SECRET_PREFIXES)
        ]
        kinds = {k[len(redis_url.prefix) :].split(":", 1)[0] for k in secret_keys}
        assert {"at", "sweep"} <= kinds  # the access token and the kept conversation's record
        for name in secret_keys:
            value = raw.get(name)
            assert value.startswith("gAAAAA"), name
            assert token not in value
        # Read back transparently: the conversation continues on its account.
        again = client.chat.completions.create(
            model="glm-4",
            messages=[{"role": "user", "content": "two"}],
            extra_body={"conversation_id": kept.id},
        )
        assert "turn 2" in (again.choices[0].message.content or "")
    finally:
        stop_proxy(server)


def test_values_written_before_encryption_are_still_read():
    inner = MemoryStore()
    inner.set("rot:abc", "plain-token")
    inner.set("conv:1", "not a secret")
    store = SealedStore(inner, make_cipher(Fernet.generate_key().decode()))
    assert store.get("rot:abc") == "plain-token" and store.get("conv:1") == "not a secret"
    store.set("rot:abc", "new-token")
    assert inner.get("rot:abc").startswith("gAAAAA") and store.get("rot:abc") == "new-token"
    other = SealedStore(inner, make_cipher(Fernet.generate_key().decode()))
    assert other.get("rot:abc") is None  # a key that does not open it: missing, not garbage


def test_keys_rotate_and_bad_keys_fail_at_start():
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    inner = MemoryStore()
    SealedStore(inner, make_cipher(old)).set("ck:fp", "session=1")
    assert SealedStore(inner, make_cipher(f"{new},{old}")).get("ck:fp") == "session=1"
    with pytest.raises(ConfigError, match="STORE_SECRET_KEY"):
        create_store(Settings.from_mapping({"STORE_SECRET_KEY": "not-a-key"}))
