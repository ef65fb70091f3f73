"""``POST /v1/images/generations`` end to end with the official SDK and the simulator."""

from __future__ import annotations

import base64

import openai
import pytest
import requests

from tests.simulator.scripts import DRAW_IMAGE_COUNT, INTERVENE_TEXT, NOIMAGE_ANSWER

DRAWING_ASSISTANT = "65a232c082ff90a2ad2f15e2"
AGENT = "65c046a531d3fcb034918abe"


def drawing_requests(simulator, token: str) -> list[dict]:
    return [
        r
        for r in simulator.requests_log("/assistant/stream")
        if r.get("account") == token and r.get("stream")
    ]


def test_url_response_maps_size_and_cleans_up(client, simulator, token, profile):
    result = client.images.generate(model="cogview-3", prompt="一只猫 a cat", size="1792x1024")
    assert result.created > 0
    (image,) = result.data
    assert image.url.startswith(simulator.base + "/sfile/testpath/") and image.b64_json is None
    assert image.revised_prompt == "画面描述：请画：一只猫 a cat"
    (sent,) = drawing_requests(simulator, token)
    body = sent["body"]
    assert body["assistant_id"] == DRAWING_ASSISTANT
    assert body["meta_data"]["cogview"]["aspect_ratio"] == "16:9"
    if profile == "2025":  # notes §8: no chat_mode, no is_networking
        assert "chat_mode" not in body["meta_data"] and "is_networking" not in body["meta_data"]
    else:  # §15.6: the fast mode, no web search, the selected model
        meta = body["meta_data"]
        assert (meta["chat_mode"], meta["reasoning_effort"]) == ("", "low")
        assert meta["is_networking"] is False and meta["selected_model"] == "glm-5.3-flash"
    assert body["messages"][0]["content"][0]["text"] == "请画：一只猫 a cat"
    assert sent["headers"]["Referer"].endswith(f"/main/gdetail/{DRAWING_ASSISTANT}")
    account = simulator.wait_deleted(token)
    assert account["conversations_deleted"] == [sent["stream"]["conversation"]]


@pytest.mark.parametrize(
    "size, ratio",
    [
        (None, "1:1"),
        ("1024x1024", "1:1"),
        ("768x1024", "3:4"),
        ("1024x768", "4:3"),
        ("1080x1920", "9:16"),
        ("16:9", "16:9"),
    ],
)
def test_size_maps_to_nearest_aspect_ratio(proxy, simulator, token, size, ratio):
    body = {"prompt": "画一座山", "response_format": "url"}
    if size:
        body["size"] = size
    resp = requests.post(
        f"{proxy.v1}/images/generations",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    (sent,) = drawing_requests(simulator, token)
    assert sent["body"]["meta_data"]["cogview"]["aspect_ratio"] == ratio
    assert sent["body"]["messages"][0]["content"][0]["text"] == "画一座山"  # already says draw


def test_n_above_one_answer_takes_several_requests(client, simulator, token):
    result = client.images.generate(prompt="a lighthouse", n=DRAW_IMAGE_COUNT + 2)
    urls = [d.url for d in result.data]
    assert len(urls) == DRAW_IMAGE_COUNT + 2 == len(set(urls))
    assert len(drawing_requests(simulator, token)) == 2
    assert len(simulator.wait_deleted(token)["conversations_deleted"]) == 2


def test_b64_json_downloads_the_generated_image(client, simulator, token):
    result = client.images.generate(prompt="a red square", n=2, response_format="b64_json")
    assert len(result.data) == 2 and all(item.url is None for item in result.data)
    (sent,) = drawing_requests(simulator, token)
    # The proxy downloaded the generated files from the simulator's file host.
    fetched = [
        r["path"]
        for r in simulator.requests_log()
        if r["path"].startswith("/sfile/testpath/") and r["time"] >= sent["time"]
    ]
    assert len(fetched) == 2
    served = [requests.get(simulator.base + path, timeout=5).content for path in fetched]
    decoded = [base64.b64decode(item.b64_json) for item in result.data]
    assert decoded == served and all(d.startswith(b"\x89PNG\r\n\x1a\n") for d in decoded)


def test_agent_model_is_used_as_assistant(client, simulator, token):
    result = client.images.generate(model=AGENT, prompt="[[sim:draw]] draw a boat")
    assert len(result.data) == 1
    (sent,) = drawing_requests(simulator, token)
    assert sent["body"]["assistant_id"] == AGENT


def test_content_filter_is_400_with_upstream_text(client, simulator, token):
    with pytest.raises(openai.BadRequestError) as info:
        client.images.generate(prompt="[[sim:intervene]] something forbidden")
    assert info.value.body["code"] == "content_filter"
    assert INTERVENE_TEXT in info.value.message
    assert simulator.wait_deleted(token)["conversations_deleted"]


def test_no_image_is_502_with_a_clear_message(client, simulator, token):
    with pytest.raises(openai.APIStatusError) as info:
        client.images.generate(prompt="[[sim:noimage]] a cat")
    assert info.value.status_code == 502
    assert "produced no image" in info.value.message and NOIMAGE_ANSWER in info.value.message
    assert simulator.wait_deleted(token)["conversations_deleted"]


def test_upstream_error_is_502(client, token):
    with pytest.raises(openai.APIStatusError) as info:
        client.images.generate(prompt="[[sim:error]] a cat")
    assert info.value.status_code == 502


@pytest.mark.parametrize(
    "body, param",
    [
        ({"prompt": "x", "n": 99}, "n"),
        ({"prompt": "x", "size": "huge"}, "size"),
        ({"prompt": "x", "response_format": "png"}, "response_format"),
        ({"n": 1}, "prompt"),
    ],
)
def test_invalid_requests(proxy, token, body, param):
    resp = requests.post(
        f"{proxy.v1}/images/generations",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == param
