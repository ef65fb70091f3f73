"""Deletes that tell the truth: a missing delete *path* is not a deleted conversation.

The README's "Try it" once paired a 2025 simulator with the 2026 server: every
delete route but the legacy one answered HTTP 404 "not found", which counted as
"conversation already deleted", so every conversation stayed alive while the
metrics said ``ok``. Here the server runs against simulators of both eras and
against a legacy delete that answers success and deletes nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest
import requests

from glm_proxy.upstream.control import delete_outcome
from glm_proxy.upstream.envelope import classify_failure
from tests.conftest import (
    ROOT,
    ProxyServer,
    Simulator,
    free_port,
    launch_simulator,
    start_proxy,
    stop_proxy,
    stop_simulator,
    wait_http,
)
from tests.support.doctor import doctor, lines

ADMIN = "admin-secret"


@pytest.mark.parametrize(
    ("http", "body", "outcome"),
    [
        (404, b'{"status": 404, "message": "not found"}', "unconfirmed"),  # no such path
        (404, b"<html>404 Not Found</html>", "unconfirmed"),
        (405, b'{"status": 405, "message": "method not allowed"}', "unconfirmed"),
        (404, b'{"status": 404, "message": "conversation not found"}', "unconfirmed"),  # doubt
        (
            200,
            b'{"status": 404, "message": "conversation \xe4\xb8\x8d\xe5\xad\x98\xe5\x9c\xa8"}',
            "gone",
        ),
        (200, b'{"status": 404, "message": "conversation not found"}', "gone"),
        (200, b'{"status": 404, "message": "not found"}', "unconfirmed"),  # not found: what?
        (200, b'{"status": 500, "message": "database error"}', "failed"),
        (500, b'{"status": 500, "message": "internal server error"}', "failed"),
    ],
)
def test_a_failed_delete_call_is_classified_by_status_code_and_message(http, body, outcome):
    assert delete_outcome(classify_failure(http, body)) == outcome


def metric(proxy, name: str) -> dict[str, float]:
    found = {}
    auth = {"Authorization": f"Bearer {ADMIN}"}
    for line in requests.get(f"{proxy.base}/metrics", headers=auth, timeout=5).text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line.rsplit(" ", 1)
            found[labels[len(name) :]] = float(value)
    return found


def wait_for(check, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def ask(proxy, token: str) -> str:
    resp = requests.post(
        f"{proxy.v1}/chat/completions",
        headers={"Authorization": f"Bearer {token}"},
        json={"model": "glm-4", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    return resp.json()["id"]


@pytest.fixture(scope="module")
def sim_2025():
    sim = launch_simulator("2025")
    yield sim
    stop_simulator(sim)


@pytest.fixture(scope="module")
def sim_2026():
    sim = launch_simulator("2026")
    yield sim
    stop_simulator(sim)


def test_a_2026_server_on_a_2025_upstream_falls_back_to_the_path_that_exists(sim_2025, tmp_path):
    sim_2025.profile = "2026"  # the server's default profile, the upstream of 2025
    proxy = start_proxy(sim_2025, tmp_path, GLM_TIME_SYNC="false", GLM_MODEL_CATALOGUE="false")
    try:
        token = "rt-" + uuid.uuid4().hex
        ask(proxy, token)
        account = sim_2025.wait_deleted(token)
        assert account["conversations_deleted"] and not account["conversations_alive"]
        calls = wait_for(
            lambda: (
                (m := metric(proxy, "glm_proxy_conversation_delete_calls_total")).get(
                    '{method="legacy",outcome="ok"}'
                )
                and m
            )
        )
        assert calls['{method="bulk",outcome="unconfirmed"}'] == 1
        assert calls['{method="mainchat",outcome="unconfirmed"}'] == 1
        assert '{method="mainchat",outcome="ok"}' not in calls
        assert metric(proxy, "glm_proxy_conversation_deletes_total") == {'{result="deleted"}': 1}
    finally:
        stop_proxy(proxy)
        sim_2025.profile = "2025"


def test_a_delete_no_path_confirms_counts_as_unconfirmed_and_stays_journalled(sim_2026, tmp_path):
    sim_2026.config(legacy_delete="404")
    proxy = start_proxy(
        sim_2026, tmp_path, GLM_DELETE_METHODS="legacy", ADMIN_KEY=ADMIN, SWEEP_INTERVAL="0"
    )
    try:
        token = "rt-" + uuid.uuid4().hex
        conversation = ask(proxy, token)
        deletes = wait_for(lambda: metric(proxy, "glm_proxy_conversation_deletes_total"))
        assert deletes == {'{result="unconfirmed"}': 1}
        assert sim_2026.account(token)["conversations_alive"] == [conversation]
        journal = requests.get(
            f"{proxy.base}/admin/journal",
            headers={"Authorization": f"Bearer {ADMIN}"},
            timeout=5,
        ).json()["data"]
        assert [e["conversation_id"] for e in journal] == [conversation]
        assert token not in str(journal)
    except AssertionError:
        print(proxy.logs())
        raise
    finally:
        stop_proxy(proxy)
        sim_2026.config(legacy_delete="works")


def test_doctor_confirms_the_delete_in_the_conversation_list(sim_2026):
    token = "rt-" + uuid.uuid4().hex
    result = doctor(sim_2026, token)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "confirmed: the conversation is no longer listed" in lines(result)["delete"]


def test_doctor_fails_a_delete_that_answers_success_but_deletes_nothing(sim_2026):
    sim_2026.config(legacy_delete="noop")
    try:
        token = "rt-" + uuid.uuid4().hex
        result = doctor(sim_2026, token, GLM_DELETE_METHODS="legacy")
        step = lines(result)["delete"]
        assert result.returncode == 1, result.stdout
        assert "FAILED" in step and "still in the account's conversation list" in step
        assert sim_2026.account(token)["conversations_alive"]
    finally:
        sim_2026.config(legacy_delete="works")


def test_doctor_on_a_2025_upstream_names_the_path_that_worked(sim_2025):
    sim_2025.profile = "2026"
    try:
        token = "rt-" + uuid.uuid4().hex
        result = doctor(sim_2025, token, GLM_TIME_SYNC="false", GLM_MODEL_CATALOGUE="false")
        step = lines(result)["delete"]
        assert " OK" in step and "via legacy" in step and "not confirmed" in step, result.stdout
        account = sim_2025.account(token)
        assert account["conversations_deleted"] and not account["conversations_alive"]
    finally:
        sim_2025.profile = "2025"


def test_try_it_as_the_readme_writes_it_leaves_no_trace_and_no_warning(tmp_path):
    """``python -m tests.simulator`` and the server, both on their defaults (README "Try it")."""
    port = free_port()
    sim_proc = subprocess.Popen(
        [sys.executable, "-m", "tests.simulator", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sim = Simulator(f"http://127.0.0.1:{port}", sim_proc)
    proxy_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GLM_", "REDIS"))}
    env.update(
        GLM_BASE_URL=sim.glm_base_url,
        PORT=str(proxy_port),
        HOST="127.0.0.1",
        DATA_DIR=str(tmp_path / "data"),
    )
    log_path = tmp_path / "proxy.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    proxy = ProxyServer(f"http://127.0.0.1:{proxy_port}", proc, log_path)
    try:
        wait_http(f"{sim.base}/_sim/state", proc=sim_proc)
        wait_http(f"{proxy.base}/ping", proc=proc)
        resp = requests.post(
            f"{proxy.v1}/chat/completions",
            headers={"Authorization": "Bearer anything"},
            json={
                "model": "glm-4-think",
                "messages": [{"role": "user", "content": "hi [[sim:think]]"}],
            },
            timeout=30,
        )
        assert resp.status_code == 200, resp.text
        account = sim.wait_deleted("anything")
        assert account["conversations_deleted"] == [resp.json()["id"]]
        assert wait_for(lambda: metric(proxy, "glm_proxy_conversation_deletes_total"))
        assert "WARNING" not in proxy.logs() and "ERROR" not in proxy.logs(), proxy.logs()
    finally:
        stop_proxy(proxy)
        stop_simulator(sim)
