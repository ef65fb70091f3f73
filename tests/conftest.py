"""Shared fixtures: the upstream simulator and the real proxy server, both as processes.

The proxy is started exactly as in production (``gunicorn -c gunicorn.conf.py
wsgi:app``, gevent worker), pointed at the simulator through GLM_BASE_URL.
Each test uses fresh refresh tokens, so simulator accounts never leak state
between tests.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent

# The upstream protocol profile (GLM_PROTOCOL) each simulator/proxy pair speaks: the
# simulator runs era E3 for "2026" and E2 for "2025". Tests in these modules run against
# both profiles (the `profile` fixture is parametrised); every other test uses the default.
PROFILES = ("2026", "2025")
DEFAULT_PROFILE = "2026"
BOTH_PROFILE_MODULES = frozenset(
    {
        "test_chat",
        "test_anthropic",
        "test_images",
        "test_attachments",
        "test_pool",
        "test_disconnect",
        "test_protocol_2026",
        "test_warm_path",
    }
)
ERAS = {"2026": "E3", "2025": "E2"}


# Sans-IO and policy tests: no server, no simulator, no network. `pytest -m unit` runs
# them alone in seconds; every other test talks to real processes.
UNIT_MODULES = frozenset(
    {
        "test_check_head",
        "test_collector",
        "test_formats_anthropic",
        "test_formats_openai",
        "test_identity",
        "test_json_budget",
        "test_lease_heartbeat",
        "test_multi_choices",
        "test_no_cycles",
        "test_parsers_controls",
        "test_pool_health",
        "test_pool_scheduling",
        "test_readme_links",
        "test_prompt",
        "test_protocol_units",
        "test_pump",
        "test_responses_input",
        "test_retry_policy",
        "test_schema_narrowing",
        "test_signing_envelope",
        "test_sse",
        "test_store_keys",
        "test_tool_prompt",
        "test_toolcalls",
        "test_toolcalls_filter",
        "test_translate",
        "test_translate_2026",
        "test_translate_rules",
        "test_translate_shortcuts",
        "test_video_jobs",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.module is not None and item.module.__name__.rsplit(".", 1)[-1] in UNIT_MODULES:
            item.add_marker(pytest.mark.unit)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "profile" not in metafunc.fixturenames:
        return
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    profiles = PROFILES if module in BOTH_PROFILE_MODULES else (DEFAULT_PROFILE,)
    marker = metafunc.definition.get_closest_marker("profiles")
    if marker is not None:
        profiles = tuple(marker.args)
    metafunc.parametrize("profile", profiles, indirect=True, scope="session")


@pytest.fixture(scope="session")
def profile(request) -> str:
    """The protocol profile of this test's simulator and proxy ("2026" or "2025")."""
    return getattr(request, "param", DEFAULT_PROFILE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited early with {proc.returncode}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up in {timeout}s")


class Simulator:
    def __init__(self, base: str, proc: subprocess.Popen, profile: str = DEFAULT_PROFILE) -> None:
        self.base = base
        self.proc = proc
        self.profile = profile

    @property
    def glm_base_url(self) -> str:
        return f"{self.base}/chatglm"

    def state(self) -> dict:
        return requests.get(f"{self.base}/_sim/state", timeout=5).json()

    def account(self, token: str) -> dict:
        accounts = self.state()["accounts"]
        if isinstance(accounts, dict):
            for key, value in accounts.items():
                if key == token or value.get("refresh_token") == token:
                    return value
        else:
            for value in accounts:
                if value.get("refresh_token") == token:
                    return value
        return {}

    def fault(self, token: str, kind: str, count: int = 1, seconds: float = 0) -> None:
        resp = requests.post(
            f"{self.base}/_sim/faults",
            json={"token": token, "kind": kind, "count": count, "seconds": seconds},
            timeout=5,
        )
        resp.raise_for_status()

    def config(self, **values) -> dict:
        resp = requests.post(f"{self.base}/_sim/config", json=values, timeout=5)
        resp.raise_for_status()
        return resp.json()

    def requests_log(self, path_suffix: str = "") -> list[dict]:
        """The last few hundred calls (a capped log): for what a call carried, never to count."""
        return [r for r in self.state()["requests"] if r["path"].endswith(path_suffix)]

    def request_count(self, path_suffix: str = "") -> int:
        """Every call ever made to paths ending in `path_suffix` (uncapped, unlike the log)."""
        counts = self.state()["request_counts"]
        return sum(n for path, n in counts.items() if path.endswith(path_suffix))

    def wait_deleted(self, token: str, timeout: float = 10.0) -> dict:
        """Wait until the account has no live conversation left; return its state."""
        deadline = time.monotonic() + timeout
        account = self.account(token)
        while time.monotonic() < deadline:
            account = self.account(token)
            if account and not account.get("conversations_alive"):
                return account
            time.sleep(0.1)
        return account


def launch_simulator(profile: str = DEFAULT_PROFILE, *args: str) -> Simulator:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.simulator",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--era",
            ERAS[profile],
            *args,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/_sim/state", proc=proc)
    return Simulator(base, proc, profile)


def stop_simulator(sim: Simulator) -> None:
    sim.proc.terminate()
    sim.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def simulator(profile: str) -> Iterator[Simulator]:
    sim = launch_simulator(profile)
    yield sim
    stop_simulator(sim)


class ProxyServer:
    def __init__(self, base: str, proc: subprocess.Popen, log_path: Path) -> None:
        self.base = base
        self.proc = proc
        self.log_path = log_path

    @property
    def v1(self) -> str:
        return f"{self.base}/v1"

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_proxy(simulator: Simulator, tmp_dir: Path, **env_overrides: str) -> ProxyServer:
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "GLM_BASE_URL": simulator.glm_base_url,
        "GLM_PROTOCOL": simulator.profile,
        "GLM_RETRY_BACKOFF": "0.05",
        "KEEPALIVE_INTERVAL": "1",
        "STREAM_HEADER_WAIT": "2",
        "LOG_LEVEL": "INFO",
        "REDIS_URL": "",
        "DATA_DIR": str(tmp_dir / f"data-{port}"),  # durable data of this server only
    }
    env.update(env_overrides)
    log_path = tmp_dir / f"proxy-{port}.log"
    log_file = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/ping", proc=proc)
    return ProxyServer(base, proc, log_path)


def stop_proxy(server: ProxyServer) -> None:
    server.proc.send_signal(signal.SIGINT)  # quick shutdown: idle keep-alive sockets don't wait
    try:
        server.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.proc.kill()


@pytest.fixture(scope="session")
def proxy(simulator: Simulator, tmp_path_factory) -> Iterator[ProxyServer]:
    server = start_proxy(simulator, tmp_path_factory.mktemp("proxy"))
    yield server
    stop_proxy(server)


@pytest.fixture
def token() -> str:
    """A fresh refresh token: a new simulator account for this test."""
    return "rt-" + uuid.uuid4().hex


@pytest.fixture
def client(proxy: ProxyServer, token: str):
    import openai

    return openai.OpenAI(base_url=proxy.v1, api_key=token, max_retries=0, timeout=30)


from tests.support.raw_upstream import certificate, refused_url, serve  # noqa: E402, F401 - fixtures for the transport tests
