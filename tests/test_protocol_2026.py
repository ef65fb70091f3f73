"""The 2026 protocol end to end: real proxy, official SDKs, the simulator in era E3.

Tests marked ``profiles("2026")`` are about 2026-only behaviour; the rest run
against both profiles (this module is in ``BOTH_PROFILE_MODULES``).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import anthropic
import openai
import pytest
import requests

from glm_proxy.accounts import fingerprint
from tests.conftest import start_proxy, stop_proxy
from tests.simulator.e3_scripts import TOOL_CHATTER, TOOLS_ANSWER, TOOLS_REASONING_1, TOOLS_SHORT
from tests.test_chat import last_stream_request, post, user

only_2026 = pytest.mark.profiles("2026")


def meta_of(simulator, token: str) -> dict:
    return last_stream_request(simulator, token)["body"]["meta_data"]


@only_2026
@pytest.mark.parametrize(
    ("model", "effort", "expected"),
    [
        ("glm-5.3-flash", None, ("glm-5.3-flash", "", "low")),
        ("glm-5.3", None, ("glm-5.3", "", "low")),
        ("glm-5.3-thinking", None, ("glm-5.3", "thinking", "high")),
        ("glm-5.3-deep", None, ("glm-5.3", "deep_thinking", "max")),
        ("glm-5.3-flash-thinking-silent", None, ("glm-5.3-flash", "thinking", "high")),
        ("glm-5.3", "high", ("glm-5.3", "thinking", "high")),
        ("glm-5.3", "xhigh", ("glm-5.3", "deep_thinking", "max")),
        ("glm-5.3-thinking", "low", ("glm-5.3", "", "low")),
        ("glm-4", None, ("glm-5.3-flash", "", "low")),  # an old name: the default model
        ("llama-3", None, ("glm-5.3-flash", "", "low")),  # unknown: default model (logged)
        ("gpt-4o", None, ("glm-5.3", "", "low")),  # an agent client's name: MODEL_ALIASES
    ],
)
def test_model_and_reasoning_reach_the_upstream(client, simulator, token, model, effort, expected):
    extra = {"reasoning_effort": effort} if effort else {}
    client.chat.completions.create(model=model, messages=user("hi"), **extra)
    meta = meta_of(simulator, token)
    assert (meta["selected_model"], meta["chat_mode"], meta.get("reasoning_effort")) == expected
    assert "if_plus_model" not in meta


@only_2026
def test_anthropic_thinking_selects_the_thinking_mode(proxy, simulator, token):
    client = anthropic.Anthropic(base_url=proxy.base, api_key=token, max_retries=0)
    client.messages.create(
        model="glm-5.3",
        max_tokens=2000,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "hi"}],
    )
    meta = meta_of(simulator, token)
    assert (meta["chat_mode"], meta["reasoning_effort"]) == ("thinking", "high")


def test_server_side_tool_loop_never_leaks(client, simulator, token):
    full = client.chat.completions.create(
        model="glm-5.3-thinking", messages=user("天气 [[sim:tools]]")
    )
    message = full.choices[0].message
    text = message.content
    assert text.startswith(TOOLS_SHORT + "\n\n北京今天晴 [1](https://example.com/w0)")
    # the two results the text does not cite are listed after the cited one
    assert text.endswith(
        "**Sources**\n1. [北京天气 Beijing weather](https://example.com/w0)"
        "\n2. [天气二 Weather two](https://example.org/w1)"
        "\n3. [天气三 Weather three](https://example.net/w2)"
    )
    assert message.reasoning_content.startswith(TOOLS_REASONING_1)
    assert not message.tool_calls and full.choices[0].finish_reason == "stop"
    stream = list(
        client.chat.completions.create(
            model="glm-5.3-thinking", messages=user("天气 [[sim:tools]]"), stream=True
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert streamed == text
    assert not any(c.choices[0].delta.tool_calls for c in stream if c.choices)
    for leaked in (TOOL_CHATTER, "search_query", "execute_sandbox_code", '"finish"', "tool-"):
        assert leaked not in text
    assert TOOLS_ANSWER[:4] in text


@pytest.fixture
def pooled(simulator, tmp_path):
    """A team proxy with three pool accounts; yields (server, key, tokens)."""
    tokens = ["rt-" + uuid.uuid4().hex for _ in range(3)]
    key = "sk-team-" + uuid.uuid4().hex
    server = start_proxy(
        simulator,
        tmp_path,
        ACCOUNTS=",".join(tokens),
        API_KEYS=f"team:{key}",
        QUEUE_TIMEOUT="60",
        GLM_DELETE_BATCH_WINDOW="0.5",
        # an account whose client hung up is busy upstream until the simulator notices
        GLM_RETRIES="6",
    )
    yield server, key, tokens
    stop_proxy(server)


def test_no_conversation_left_after_a_concurrent_run(pooled, simulator, profile):
    server, key, tokens = pooled
    client = openai.OpenAI(base_url=server.v1, api_key=key, max_retries=0, timeout=60)

    def ask(i: int) -> str:
        if i % 3 == 0:  # some stream and hang up half-way
            with client.chat.completions.create(
                model="glm-5.3", messages=user(f"q{i} [[sim:long n=60]]"), stream=True
            ) as stream:
                next(iter(stream))
            return "left"
        return client.chat.completions.create(model="glm-5.3", messages=user(f"q{i}")).id

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(ask, range(24)))
    assert len(results) == 24
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        accounts = [simulator.account(t) for t in tokens]
        if all(not a.get("conversations_alive") and not a.get("active_streams") for a in accounts):
            break
        time.sleep(0.2)
    created = sum(len(a["conversations_deleted"]) + len(a["conversations_alive"]) for a in accounts)
    assert created >= 24
    assert [a["conversations_alive"] for a in accounts] == [[], [], []]
    deletes = [
        r
        for r in simulator.state()["requests"]
        if "delete" in r["path"] and r.get("account") in tokens
    ]
    if profile == "2026":
        bulk = [r for r in deletes if r["path"].endswith("/bulk_delete")]
        assert bulk and len(bulk) == len(deletes)
        # batching: fewer calls than conversations (answers on one account finish together)
        assert len(bulk) < created
        wanted = 'glm_proxy_conversation_delete_calls_total{method="bulk",outcome="ok"}'
        deadline, metrics = time.monotonic() + 10, ""
        while wanted not in metrics and time.monotonic() < deadline:
            metrics = requests.get(f"{server.base}/metrics", timeout=5).text
            time.sleep(0.1)
        assert wanted in metrics
        stops = [s for s in simulator.state()["stops"] if s["account"] in tokens]
        assert stops  # the answers left half-way were stopped before their deletion
    else:
        assert deletes and all(
            r["path"].endswith("/assistant/conversation/delete") for r in deletes
        )


@only_2026
def test_delete_falls_back_when_bulk_delete_fails(simulator, tmp_path, token):
    server = start_proxy(simulator, tmp_path, GLM_BULK_DELETE_PATH="/mainchat-api/nope")
    try:
        client = openai.OpenAI(base_url=server.v1, api_key=token, max_retries=0)
        completion = client.chat.completions.create(model="glm-5.3", messages=user("hi"))
        assert simulator.wait_deleted(token)["conversations_deleted"] == [completion.id]
        paths = [r["path"] for r in simulator.requests_log() if r.get("account") in (token, None)]
        # bulk_delete answered 404 (no account: the route does not exist), then the single delete
        assert paths[-2:] == [
            "/chatglm/mainchat-api/nope",
            "/chatglm/mainchat-api/conversation/delete",
        ]
        # the counter moves once the proxy read the reply the simulator already acted on
        deadline, metrics = time.monotonic() + 10, ""
        while 'method="mainchat",outcome="ok"' not in metrics and time.monotonic() < deadline:
            metrics = requests.get(f"{server.base}/metrics", timeout=5).text
            time.sleep(0.1)
        assert 'method="bulk",outcome="failed"' in metrics
        assert 'method="mainchat",outcome="ok"' in metrics
    finally:
        stop_proxy(server)


@only_2026
def test_client_disconnect_stops_the_answer_then_deletes(proxy, simulator, token):
    resp = post(
        proxy,
        token,
        {"model": "glm-5.3", "stream": True, "messages": user("x [[sim:long n=200]]")},
        stream=True,
    )
    lines = resp.iter_lines()
    assert any(line.startswith(b"data: {") for line in lines)
    resp.close()
    account = simulator.wait_deleted(token, timeout=20)
    assert account["conversations_deleted"] and not account["conversations_alive"]
    (stop,) = [s for s in simulator.state()["stops"] if s["account"] == token]
    assert stop["running"] is True  # stopped while the upstream was still writing
    stream = last_stream_request(simulator, token)
    order = [r["path"] for r in simulator.requests_log() if r.get("account") == token]
    assert order.index("/chatglm/mainchat-api/stream/stop_stream") < order.index(
        "/chatglm/mainchat-api/conversation/bulk_delete"
    )
    assert stream["stream"]["conversation"] in account["conversations_deleted"]


@pytest.mark.parametrize("kind", ["busy_10061", "queue_10062"])
@only_2026
def test_busy_and_queue_are_retried_before_the_first_byte(client, simulator, token, kind):
    simulator.fault(token, kind)
    completion = client.chat.completions.create(model="glm-5.3", messages=user("hi"))
    assert completion.choices[0].message.content
    attempts = [r for r in simulator.requests_log("/assistant/stream") if r.get("account") == token]
    assert len(attempts) == 2


@only_2026
def test_drawing_images_from_unfinished_frames_in_number_order(client, simulator, token):
    result = client.images.generate(model="cogview-3", prompt="一只猫", n=4)
    urls = [d.url for d in result.data]
    assert len(urls) == 4
    assert [u.rsplit("_", 2)[-2] for u in urls] == ["0", "1", "2", "3"]
    assert simulator.wait_deleted(token)["conversations_deleted"]


@only_2026
def test_uploads_use_the_2026_path_fields_and_item_shape(client, simulator, token):
    png = base64.b64encode(
        bytes.fromhex(
            "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
            "1f15c4890000000d49444154789c6360000002000100ffff03000006000557bfabd40000000049454e44ae426082"
        )
    ).decode()
    client.chat.completions.create(
        model="glm-5.3",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
                ],
            }
        ],
    )
    (upload,) = [
        r for r in simulator.requests_log("/file/chat_upload") if r.get("account") == token
    ]
    assert upload["sign_valid"] is True
    assert upload["body"]["form"] == {"from": "chat", "assistant_id": "65940acff94777010aa6b796"}
    items = last_stream_request(simulator, token)["body"]["messages"][0]["content"]
    (image,) = [i for i in items if i["type"] == "image"]
    assert set(image["image"][0]) == {
        "file_name",
        "file_id",
        "image_url",
        "file_size",
        "order",
        "width",
        "height",
    }
    assert (image["image"][0]["width"], image["image"][0]["height"]) == (1, 1)


def jwt(claims: dict) -> str:
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256'})}.{part(claims)}.c2ln"


@only_2026
def test_device_id_is_the_tokens_claim_and_stable(client_for, simulator):
    device = uuid.uuid4().hex
    token = jwt({"device_id": device, "type": "refresh", "n": uuid.uuid4().hex})
    client = client_for(token)
    client.chat.completions.create(model="glm-5.3", messages=user("a"))
    client.chat.completions.create(model="glm-5.3", messages=user("b"))
    seen = {
        r["headers"].get("X-Device-Id")
        for r in simulator.requests_log()
        if r.get("account") == token
    }
    assert seen == {device}


@only_2026
def test_a_device_bound_token_needs_its_device_id(client_for, simulator, tmp_path):
    simulator.config(require_device_match=True)
    server = None
    try:
        device = uuid.uuid4().hex
        token = jwt({"device_id": device, "n": uuid.uuid4().hex})
        assert client_for(token).chat.completions.create(model="glm-5.3", messages=user("a"))
        server = start_proxy(simulator, tmp_path, GLM_DEVICE_ID_STRATEGY="per_request")
        random_ids = openai.OpenAI(
            base_url=server.v1, api_key=jwt({"device_id": device, "m": 1}), max_retries=0
        )
        with pytest.raises(openai.APIStatusError) as refused:
            random_ids.chat.completions.create(model="glm-5.3", messages=user("b"))
        assert "device id" in refused.value.message
    finally:
        simulator.config(require_device_match=False)
        if server is not None:
            stop_proxy(server)


@pytest.fixture
def client_for(proxy):
    return lambda token: openai.OpenAI(base_url=proxy.v1, api_key=token, max_retries=0, timeout=30)


@pytest.fixture
def waf(simulator):
    simulator.config(waf=True)
    yield simulator
    simulator.config(waf=False)


@only_2026
def test_waf_accounts_work_only_with_their_cookies(waf, tmp_path):
    with_cookies, without = ("rt-" + uuid.uuid4().hex for _ in range(2))
    cookie_file = tmp_path / "cookies.txt"
    cookie_file.write_text(
        "# Netscape HTTP Cookie File\n"
        ".chatglm.cn\tTRUE\t/\tFALSE\t0\tacw_tc\twaf-secret-cookie\n"
        ".chatglm.cn\tTRUE\t/\tFALSE\t0\tchatglm_token\tstale-old-token\n"
    )
    accounts = tmp_path / "accounts.txt"
    accounts.write_text(f"{with_cookies} name=ok cookies={cookie_file}\n{without} name=bare\n")
    key, admin_key = "sk-" + uuid.uuid4().hex, "adm-" + uuid.uuid4().hex
    server = start_proxy(
        waf, tmp_path, ACCOUNTS_FILE=str(accounts), API_KEYS=f"t:{key}", ADMIN_KEY=admin_key
    )
    try:
        admin = {"Authorization": f"Bearer {admin_key}"}
        client = openai.OpenAI(base_url=server.v1, api_key=key, max_retries=0, timeout=30)
        for i in range(3):
            assert client.chat.completions.create(model="glm-5.3", messages=user(f"q{i}"))
        assert waf.account(with_cookies)["stream_count"] == 3
        assert not waf.account(without).get("stream_count")  # blocked at refresh: cooling
        views = requests.get(f"{server.base}/admin/accounts", headers=admin, timeout=5).json()
        bare = next(v for v in views["data"] if v["name"] == "bare")
        assert "40012" in (bare["last_error"] or "") and bare["state"] == "cooling"
        good = next(v for v in views["data"] if v["name"] == "ok")
        assert good["cookies"]["names"] == ["acw_tc", "chatglm_token"]
        # the token cookies follow the tokens in use, never the stale copy from the file
        sent = [
            r for r in waf.requests_log("/assistant/stream") if r.get("account") == with_cookies
        ]
        bearer = sent[-1]["headers"]["Authorization"][7:]
        assert f"chatglm_token={bearer}" in sent[-1]["headers"]["Cookie"]
        assert f"chatglm_refresh_token={with_cookies}" in sent[-1]["headers"]["Cookie"]
        # cookies set through the admin API bring the bare account back
        fp = fingerprint(without)
        resp = requests.put(
            f"{server.base}/admin/accounts/{fp}/cookies",
            json={"cookies": "acw_tc=another-waf-secret; ssxmod_itna=x"},
            headers=admin,
            timeout=5,
        )
        assert resp.status_code == 200 and resp.json()["cookies"]["configured"] is True
        check = requests.post(
            f"{server.base}/admin/accounts/{fp}/doctor", headers=admin, timeout=30
        )
        assert check.json()["ok"] is True, check.json()
        bad = requests.put(
            f"{server.base}/admin/accounts/{fp}/cookies",
            json={"cookies": "not a cookie"},
            headers=admin,
            timeout=5,
        )
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "cookies"
        logs = server.logs()
        for secret in ("waf-secret-cookie", "another-waf-secret", with_cookies, without):
            assert secret not in logs
            assert secret not in json.dumps(views)
    finally:
        stop_proxy(server)


@only_2026
def test_signing_follows_the_server_clock(simulator, tmp_path, token):
    simulator.config(clock_skew_ms=3_600_000, max_skew_ms=60_000)
    servers = []
    try:
        synced = start_proxy(simulator, tmp_path)
        servers.append(synced)
        local = start_proxy(simulator, tmp_path, GLM_TIME_SYNC="false")
        servers.append(local)
        ok = openai.OpenAI(base_url=synced.v1, api_key=token, max_retries=0, timeout=30)
        assert ok.chat.completions.create(model="glm-5.3", messages=user("hi"))
        other = "rt-" + uuid.uuid4().hex
        skewed = openai.OpenAI(base_url=local.v1, api_key=other, max_retries=0, timeout=30)
        with pytest.raises(openai.APIStatusError) as failed:
            skewed.chat.completions.create(model="glm-5.3", messages=user("hi"))
        assert "timestamp" in failed.value.message
    finally:
        simulator.config(clock_skew_ms=0, max_skew_ms=None)
        for server in servers:
            stop_proxy(server)


@only_2026
def test_models_lists_the_catalogue_and_its_modes(pooled, simulator):
    server, key, tokens = pooled
    client = openai.OpenAI(base_url=server.v1, api_key=key, max_retries=0)
    ids = [m.id for m in client.models.list().data]
    for name in ("glm-5.3", "glm-5.3-thinking", "glm-5.3-deep", "glm-5.3-flash-thinking"):
        assert name in ids
    client.models.list()
    fetched = [r for r in simulator.requests_log() if "/agent-api/operation/detail" in r["path"]]
    assert len([r for r in fetched if r.get("account") in tokens]) == 1  # cached
