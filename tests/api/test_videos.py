"""Video generation end to end: raw ``requests`` -> gunicorn proxy -> simulator.

The media proxy polls every 0.05 s; the simulator finishes a task after
``video_polls_to_finish`` polls (3 by default). Tests that change the
simulator's config restore it in ``finally``.
"""

from __future__ import annotations

import base64
import io
import time
import uuid
from contextlib import contextmanager

import orjson
import pytest
import requests
from PIL import Image

from tests.conftest import start_proxy, stop_proxy
from tests.support.fileserver import (  # noqa: F401 - fixtures file_server, media_proxy
    MEDIA_PROXY_ENV,
    file_server_fixture,
    image_bytes,
    media_proxy_fixture,
    pdf_bytes,
)
from tests.support.redis_fixture import redis_server, redis_url  # noqa: F401

DRAWING_ASSISTANT = "65a232c082ff90a2ad2f15e2"


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def generate(proxy, token: str, body: dict, **kwargs) -> requests.Response:
    return requests.post(
        f"{proxy.v1}/videos/generations", json=body, headers=auth(token), timeout=60, **kwargs
    )


def tasks_of(simulator, token: str) -> list[dict]:
    return [t for t in simulator.state()["video_tasks"] if t["account"] == token]


def frames_of(simulator, token: str) -> list[dict]:
    return [u for u in simulator.state()["video_uploads"] if u["account"] == token]


@contextmanager
def sim_config(simulator, **values):
    """Change the simulator's config for a block, restoring the previous values after."""
    before = simulator.state()["config"]
    simulator.config(**values)
    try:
        yield
    finally:
        simulator.config(**{key: before[key] for key in values})


def wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def wait_task_deleted(simulator, token: str) -> dict:
    def deleted():
        tasks = tasks_of(simulator, token)
        return tasks[0] if tasks and tasks[0]["deleted"] else None

    task = wait_for(deleted)
    assert task, "the upstream video task was not deleted"
    return task


def test_text_to_video_with_english_option_aliases(media_proxy, simulator, token):
    resp = generate(
        media_proxy,
        token,
        {
            "prompt": "海边的日落 sunset",
            "video_style": "cinematic",
            "emotional_atmosphere": "温馨和谐",
            "mirror_mode": "push in",
        },
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["created"] > 0
    (item,) = body["data"]
    assert item["video_url"].endswith("_0.mp4") and item["cover_url"].endswith("_cover_0.png")
    assert item["video_duration"] == "6s" and item["resolution"] == "1440 × 960"
    task = wait_task_deleted(simulator, token)
    assert item["conversation_id"] == task["conversation_id"]
    assert task["advanced_parameter_extra"] == {
        "video_style": "电影感",
        "emotional_atmosphere": "温馨和谐",
        "mirror_mode": "推近",
    }
    assert task["source_list"] == [] and frames_of(simulator, token) == []
    (create,) = [
        r for r in simulator.requests_log("/video-api/v1/chat") if r.get("account") == token
    ]
    assert create["sign_valid"] and create["headers"]["Referer"].endswith("/video")


@pytest.mark.parametrize(
    "fmt, size, alpha, expected",
    [
        ("PNG", (400, 500), True, (1440, 960)),
        ("JPEG", (1920, 1080), False, (1440, 810)),
        ("WEBP", (600, 400), True, (1440, 960)),
    ],
)
@pytest.mark.parametrize("how", ["url", "data_url"])
def test_first_frame_is_resized_and_cropped(
    media_proxy, simulator, token, file_server, fmt, size, alpha, expected, how
):
    data = image_bytes(fmt, size, alpha=alpha)
    if how == "url":
        image_url = file_server.add(f"/frames/{fmt}-{token}", data, "image/" + fmt.lower())
    else:
        image_url = f"data:image/{fmt.lower()};base64," + base64.b64encode(data).decode()
    resp = generate(media_proxy, token, {"prompt": "make it move", "image_url": image_url})
    assert resp.status_code == 200, resp.text
    (frame,) = frames_of(simulator, token)
    assert (frame["width"], frame["height"]) == expected
    assert frame["content_type"] == "image/jpeg"
    task = wait_task_deleted(simulator, token)
    assert task["source_list"] == [frame["source_id"]]


def test_cogvideox_pro_draws_the_first_frame(media_proxy, simulator, token):
    resp = generate(media_proxy, token, {"model": "cogvideox-pro", "prompt": "a fox in snow"})
    assert resp.status_code == 200, resp.text
    (draw,) = [r for r in simulator.requests_log("/assistant/stream") if r.get("account") == token]
    assert draw["body"]["assistant_id"] == DRAWING_ASSISTANT
    (frame,) = frames_of(simulator, token)
    assert (frame["width"], frame["height"]) == (1440, 960)  # 64x48 drawing, 4:3 -> cropped
    assert wait_task_deleted(simulator, token)["source_list"] == [frame["source_id"]]
    assert simulator.wait_deleted(token)["conversations_deleted"]  # the drawing conversation


def test_background_music_is_composited(media_proxy, simulator, token):
    resp = generate(media_proxy, token, {"prompt": "dance", "audio_id": "k7-a42"})
    assert resp.status_code == 200, resp.text
    task = wait_task_deleted(simulator, token)
    assert resp.json()["data"][0]["video_url"] == task["composite_url"]
    assert task["composite_url"].endswith("_k7_a42_music.mp4")


@pytest.mark.parametrize(
    "body, param, fragment",
    [
        ({"prompt": "x", "video_style": "vaporwave"}, "video_style", "卡通3D (3d_cartoon)"),
        ({"prompt": "x", "emotional_atmosphere": "sad"}, "emotional_atmosphere", "凄凉寂寞"),
        ({"prompt": "x", "mirror_mode": "spin"}, "mirror_mode", "拉远 (pull_out)"),
        ({"prompt": "x", "model": "sora-2"}, "model", "cogvideox-pro"),
        ({"prompt": "x", "audio_id": "nodash"}, "audio_id", "<key>-<id>"),
        ({"prompt": "x", "image_url": "ftp://h/x.png"}, "image_url", "data: URL"),
        ({"video_style": "油画"}, "prompt", "required"),
        ({"model": "cogvideox-pro"}, "prompt", "prompt is required"),
    ],
)
def test_invalid_values_are_400s_naming_the_allowed_set(
    media_proxy, simulator, token, body, param, fragment
):
    resp = generate(media_proxy, token, body)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["param"] == param and fragment in error["message"]
    assert tasks_of(simulator, token) == []


def test_first_frame_problems_are_400s(media_proxy, proxy, simulator, token, file_server):
    pdf = file_server.add("/frames/not-an-image.png", pdf_bytes(), "image/png")
    resp = generate(media_proxy, token, {"prompt": "x", "image_url": pdf})
    assert resp.status_code == 400 and "not an image" in resp.json()["error"]["message"]
    png = file_server.add("/frames/private.png", image_bytes("PNG"), "image/png")
    resp = generate(proxy, token, {"prompt": "x", "image_url": png})  # default: no allow-list
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "url_not_allowed"
    assert resp.json()["error"]["param"] == "image_url"
    assert tasks_of(simulator, token) == []


def test_failed_task_is_502_with_the_upstream_message(media_proxy, simulator, token):
    resp = generate(media_proxy, token, {"prompt": "[[sim:video_fail]] a storm"})
    assert resp.status_code == 502
    assert "generation failed (simulated)" in resp.json()["error"]["message"]
    assert wait_task_deleted(simulator, token)["status"] == "failed"


def test_long_wait_sends_whitespace_then_valid_json(media_proxy, simulator, token):
    """KEEPALIVE_INTERVAL is 1 s in tests; 50 polls at 0.05 s take longer than that."""
    with sim_config(simulator, video_polls_to_finish=50):
        resp = generate(media_proxy, token, {"prompt": "slow one"}, stream=True)
        assert resp.status_code == 200
        raw = resp.raw.read()
    assert raw.startswith(b"\n") and raw.lstrip() != raw
    body = orjson.loads(raw)  # leading whitespace is valid JSON
    assert body["data"][0]["video_url"]
    wait_task_deleted(simulator, token)


def test_client_hanging_up_deletes_the_task(media_proxy, simulator, token):
    with sim_config(simulator, video_polls_to_finish=100_000):
        resp = generate(media_proxy, token, {"prompt": "never mind"}, stream=True)
        assert resp.raw.read(1) == b"\n"  # committed and waiting
        resp.close()
        task = wait_task_deleted(simulator, token)
    assert task["status"] in ("init", "processing")


def test_deadline_is_504_and_the_task_is_deleted(simulator, token, tmp_path):
    server = start_proxy(simulator, tmp_path, **{**MEDIA_PROXY_ENV, "VIDEO_DEADLINE": "0.3"})
    try:
        with sim_config(simulator, video_polls_to_finish=100_000):
            resp = generate(server, token, {"prompt": "too slow"})
    finally:
        stop_proxy(server)
    assert resp.status_code == 504 and "VIDEO_DEADLINE" in resp.json()["error"]["message"]
    wait_task_deleted(simulator, token)


# -- asynchronous jobs ------------------------------------------------------------------


def poll_job(proxy, token: str, job_id: str, timeout: float = 20.0) -> dict:
    """Poll from a separate session (a fresh connection: any worker may answer)."""
    with requests.Session() as session:
        deadline = time.monotonic() + timeout
        while True:
            job = session.get(f"{proxy.v1}/videos/{job_id}", headers=auth(token), timeout=10)
            assert job.status_code == 200, job.text
            body = job.json()
            if body["status"] in ("completed", "failed") or time.monotonic() > deadline:
                return body
            time.sleep(0.1)


def test_async_job_is_polled_to_completion(media_proxy, simulator, token, file_server):
    frame = image_bytes("PNG", (800, 600))
    resp = requests.post(
        f"{media_proxy.v1}/videos",
        headers=auth(token),
        data={"prompt": "waves", "model": "cogvideox", "video_style": "oil_painting"},
        files={"input_reference": ("frame.png", frame, "image/png")},
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    job = resp.json()
    assert job["object"] == "video" and job["status"] == "queued" and job["progress"] == 0
    assert job["id"].startswith("video_") and job["model"] == "cogvideox"

    done = poll_job(media_proxy, token, job["id"])
    assert done["status"] == "completed" and done["progress"] == 100
    assert done["video_url"].endswith(".mp4") and done["cover_url"]
    assert done["seconds"] == "6" and done["size"] == "1440x960"
    assert done["completed_at"] >= done["created_at"]
    (frame_upload,) = frames_of(simulator, token)
    assert (frame_upload["width"], frame_upload["height"]) == (1440, 960)
    task = wait_task_deleted(simulator, token)
    assert task["advanced_parameter_extra"]["video_style"] == "油画"

    content = requests.get(
        f"{media_proxy.v1}/videos/{job['id']}/content",
        headers=auth(token),
        allow_redirects=False,
        timeout=10,
    )
    assert content.status_code == 302 and content.headers["Location"] == done["video_url"]
    other = requests.get(
        f"{media_proxy.v1}/videos/{job['id']}", headers=auth("rt-someone-else"), timeout=10
    )
    assert other.status_code == 404


def test_async_job_failure_and_delete(media_proxy, simulator, token):
    resp = requests.post(
        f"{media_proxy.v1}/videos",
        headers=auth(token),
        json={"prompt": "[[sim:video_fail]] boom"},
        timeout=10,
    )
    failed = poll_job(media_proxy, token, resp.json()["id"])
    assert failed["status"] == "failed"
    assert "generation failed (simulated)" in failed["error"]["message"]
    deleted = requests.delete(
        f"{media_proxy.v1}/videos/{failed['id']}", headers=auth(token), timeout=10
    )
    assert deleted.json() == {"id": failed["id"], "object": "video.deleted", "deleted": True}
    gone = requests.get(f"{media_proxy.v1}/videos/{failed['id']}", headers=auth(token), timeout=10)
    assert gone.status_code == 404


def test_async_job_validation_happens_up_front(media_proxy, token):
    resp = requests.post(
        f"{media_proxy.v1}/videos",
        headers=auth(token),
        json={"prompt": "x", "mirror_mode": "sideways"},
        timeout=10,
    )
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "mirror_mode"


def test_frame_image_really_is_cropped_from_the_centre(media_proxy, simulator, token):
    """A tall image: the middle band survives the crop, the top and bottom do not."""
    image = Image.new("RGB", (300, 900), (255, 0, 0))
    image.paste(Image.new("RGB", (300, 300), (0, 0, 255)), (0, 300))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    assert generate(media_proxy, token, {"prompt": "x", "image_url": url}).status_code == 200
    (frame,) = frames_of(simulator, token)
    served = requests.get(frame["file_url"], timeout=5).content
    with Image.open(io.BytesIO(served)) as got:
        assert got.size == (1440, 960)
        centre, corner = got.getpixel((720, 480)), got.getpixel((5, 5))
    assert centre[2] > 200 and centre[0] < 60 and corner[2] > 200  # all blue: the middle third


def test_a_team_whose_pool_account_is_dead_gets_503_not_401(simulator, tmp_path):
    """A team member's API key is fine; a revoked pool account is the server's problem:
    503 (what the next request gets anyway), not 401 "log in again" (the SDK's
    AuthenticationError, read as a bad key)."""
    key = "sk-team-" + uuid.uuid4().hex
    server = start_proxy(
        simulator, tmp_path, ACCOUNTS=f"dead-{uuid.uuid4().hex}", API_KEYS=f"team:{key}"
    )
    try:
        first = generate(server, key, {"prompt": "x"})
        second = generate(server, key, {"prompt": "x"})
    finally:
        stop_proxy(server)
    for resp in (first, second):
        assert resp.status_code == 503, resp.text
        assert resp.json()["error"]["code"] == "service_unavailable"
        assert "1 dead" in resp.json()["error"]["message"]


def test_a_tiny_very_tall_first_frame_is_framed(media_proxy, simulator, token):
    """A 12x12000 PNG (a few hundred bytes): scaled whole to width 1440 it would need
    gigabytes; the proxy crops first and the upstream still gets a 1440x960 JPEG."""
    buf = io.BytesIO()
    Image.new("RGB", (12, 12000), (30, 200, 30)).save(buf, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    resp = generate(media_proxy, token, {"prompt": "x", "image_url": url})
    assert resp.status_code == 200, resp.text
    (frame,) = frames_of(simulator, token)
    assert (frame["width"], frame["height"]) == (1440, 960)
    wait_task_deleted(simulator, token)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_openai_sdk_video_jobs(media_proxy, simulator, token):
    """The SDK's videos.create (multipart), retrieve and download_content work as they are."""
    import openai

    client = openai.OpenAI(base_url=media_proxy.v1, api_key=token, max_retries=0, timeout=30)
    video = client.videos.create(
        prompt="a cat",
        model="cogvideox",
        input_reference=("cat.webp", image_bytes("WEBP", (640, 480)), "image/webp"),
    )
    assert video.status == "queued"
    deadline = time.monotonic() + 20
    while video.status not in ("completed", "failed") and time.monotonic() < deadline:
        time.sleep(0.1)
        video = client.videos.retrieve(video.id)
    assert video.status == "completed" and video.size == "1440x960"
    assert client.videos.download_content(video.id).read().startswith(b"\x00\x00\x00\x18ftyp")
    (frame,) = frames_of(simulator, token)
    assert (frame["width"], frame["height"]) == (1440, 960)


def test_replicas_sharing_redis_share_jobs_and_the_upload_cache(
    simulator, token, file_server, tmp_path, request
):
    """Two proxies on one Redis: a job created on A is polled on B; a file uploaded via A
    is not uploaded again via B."""
    target = request.getfixturevalue("redis_url")
    env = {**MEDIA_PROXY_ENV, **target.env()}
    first = start_proxy(simulator, tmp_path, **env)
    second = start_proxy(simulator, tmp_path, **env)
    try:
        resp = requests.post(
            f"{first.v1}/videos", headers=auth(token), json={"prompt": "replicated"}, timeout=10
        )
        done = poll_job(second, token, resp.json()["id"])
        assert done["status"] == "completed" and done["video_url"]

        url = file_server.add("/replicas/doc.pdf", pdf_bytes("replicas"), "application/pdf")
        for proxy in (first, second, first):
            chat = requests.post(
                f"{proxy.v1}/chat/completions",
                headers=auth(token),
                timeout=30,
                json={
                    "model": "glm-4",
                    "messages": [
                        {
                            "role": "user",
                            "content": [
                                {"type": "text", "text": "read"},
                                {"type": "file", "file_url": {"url": url}},
                            ],
                        }
                    ],
                },
            )
            assert chat.status_code == 200, chat.text
        uploads = [u for u in simulator.state()["uploads"] if u["account"] == token]
        assert len(uploads) == 1
    finally:
        stop_proxy(first)
        stop_proxy(second)
