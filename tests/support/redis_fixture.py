"""A private, throw-away Redis for the tests.

``redis_server`` starts ``redis-server`` on a free port (no persistence) once
per session, shared by every module that imports the fixture; with
``TEST_REDIS_URL`` set it uses that server instead. When the binary is missing
the Redis tests are skipped, except in CI (``CI=true``), where a missing Redis
is a failure. ``redis_url`` gives each test its own database number and key
prefix, deleted afterwards. Import both fixtures into a test module:
``from tests.support.redis_fixture import redis_server, redis_url  # noqa: F401``.
``private_redis`` is a server of the test's own that it may stop and restart.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import free_port

_databases = itertools.cycle(range(1, 16))


@dataclass
class RedisServer:
    base: str  # redis://host:port
    proc: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"{self.base}/{db}"


_shared: list[RedisServer] = []  # one server however many modules import the fixture


def spawn_redis(binary: str, port: int, workdir) -> subprocess.Popen:
    """Start ``redis-server`` on 127.0.0.1:``port`` (no persistence) and wait until it answers.

    Also used directly by tests that stop and restart their own server (Redis outages).
    """
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    try:
        while True:
            try:
                client.ping()
                return proc
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    pytest.fail(f"redis-server did not start on port {port}")
                time.sleep(0.05)
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    if _shared:
        yield _shared[0]
        return
    external = os.environ.get("TEST_REDIS_URL", "").rstrip("/")
    if external:
        _shared.append(
            RedisServer(external.rsplit("/", 1)[0] if external.count("/") > 2 else external)
        )
        yield _shared[0]
        return
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("redis-server is not installed (CI must install it: see .ci/run)")
        pytest.skip("redis-server is not installed")
    port = free_port()
    proc = spawn_redis(binary, port, tmp_path_factory.mktemp("redis"))
    _shared.append(RedisServer(f"redis://127.0.0.1:{port}", proc))
    yield _shared[0]
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@dataclass
class PrivateRedis:
    """A redis-server of one test's own, which the test may stop and start again (outages)."""

    binary: str
    port: int
    workdir: object
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = spawn_redis(self.binary, self.port, self.workdir)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def private_redis(tmp_path) -> Iterator[PrivateRedis]:
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("redis-server is not installed (CI must install it: see .ci/run)")
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(binary, free_port(), tmp_path)
    server.start()
    yield server
    server.stop()


@dataclass
class RedisTarget:
    """Where one test keeps its state: a URL (with its own db) and a key prefix."""

    url: str
    prefix: str

    def env(self) -> dict[str, str]:
        return {"REDIS_URL": self.url, "REDIS_PREFIX": self.prefix}

    def client(self):
        import redis

        return redis.Redis.from_url(self.url, decode_responses=True)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[RedisTarget]:
    target = RedisTarget(redis_server.url(next(_databases)), f"t{uuid.uuid4().hex[:8]}:")
    yield target
    client = target.client()
    keys = list(client.scan_iter(match=target.prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()
