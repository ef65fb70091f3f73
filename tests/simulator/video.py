"""Video generation API (spec §9): upload a first frame, create, poll, add music, delete."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from .common import bad_request, base_url, fail, ok, sim_state, upstream_view
from .files import receive_upload
from .state import Account, hex24

bp = Blueprint("video", __name__, url_prefix="/chatglm/video-api/v1")

ALLOWED_OPTIONS = {
    "video_style": {"卡通3D", "黑白老照片", "油画", "电影感"},
    "emotional_atmosphere": {"温馨和谐", "生动活泼", "紧张刺激", "凄凉寂寞"},
    "mirror_mode": {"水平", "垂直", "推近", "拉远"},
}
FAIL_DIRECTIVE = "[[sim:video_fail]]"
FAIL_MSG = "generation failed (simulated)"
STATUS_MSG = {"init": "排队中", "processing": "生成中", "finished": "", "failed": FAIL_MSG}


def _option_error(extra: Any) -> str | None:
    if extra is None:
        return None
    if not isinstance(extra, dict):
        return "bad request: advanced_parameter_extra"
    for key, value in extra.items():
        if value and key in ALLOWED_OPTIONS and value not in ALLOWED_OPTIONS[key]:
            return f"bad request: invalid {key}"
    return None


@bp.post("/static/upload")
@upstream_view(signed=False)
def upload_frame(acc: Account) -> Response:
    record = receive_upload(acc)
    if record is None:
        return bad_request()
    state = sim_state()
    with state.lock:
        state.video_uploads[record["source_id"]] = record
    return ok({"source_id": record["source_id"], "file_url": record["file_url"]})


@bp.post("/chat")
@upstream_view(signed=True)
def create(acc: Account) -> Response:
    body = request.get_json(silent=True, force=True)
    if not isinstance(body, dict) or not isinstance(body.get("prompt", ""), str):
        return bad_request()
    error = _option_error(body.get("advanced_parameter_extra"))
    if error:
        return bad_request(error)
    sources = body.get("source_list") or []
    state = sim_state()
    with state.lock:
        known = isinstance(sources, list) and all(s in state.video_uploads for s in sources)
    if not known:
        return bad_request("bad request: unknown source_id")
    prompt = body.get("prompt", "")
    task = {
        "chat_id": hex24(),
        "conversation_id": body.get("conversation_id") or hex24(),
        "account": acc.refresh_token,
        "prompt": prompt,
        "source_list": sources,
        "advanced_parameter_extra": body.get("advanced_parameter_extra"),
        "will_fail": FAIL_DIRECTIVE in prompt,
        "polls": 0,
        "status": "created",
        "composite_url": None,
        "deleted": False,
    }
    with state.lock:
        state.video_tasks[task["chat_id"]] = task
    return ok({"chat_id": task["chat_id"], "conversation_id": task["conversation_id"]})


def _own_task(acc: Account, chat_id: str) -> dict[str, Any] | None:
    task = sim_state().video_tasks.get(chat_id)
    if task is None or task["deleted"] or task["account"] != acc.refresh_token:
        return None
    return task


@bp.get("/chat/status/<chat_id>")
@upstream_view(signed=True)
def status(acc: Account, chat_id: str) -> Response:
    """init on poll 1, processing until poll N-1, finished (or failed) from poll N on."""
    state = sim_state()
    needed = max(1, int(state.cfg("video_polls_to_finish")))
    with state.lock:
        task = _own_task(acc, chat_id)
        if task is not None:
            task["polls"] += 1
            if task["polls"] >= needed:
                task["status"] = "failed" if task["will_fail"] else "finished"
            else:
                task["status"] = "init" if task["polls"] == 1 else "processing"
            current = task["status"]
    if task is None:
        return fail(404, "task not found")
    base = base_url()
    done = current == "finished"
    return ok(
        {
            "chat_id": chat_id,
            "status": current,
            "msg": STATUS_MSG[current],
            "plan": "basic",
            "cover_url": f"{base}/sfile/testpath/video_cover/{chat_id}_cover_0.png" if done else "",
            "video_url": f"{base}/sfile/testpath/video/{chat_id}_0.mp4" if done else "",
            "video_duration": "6s",
            "resolution": "1440 × 960",
        }
    )


@bp.post("/static/composite_video")
@upstream_view(signed=True)
def composite(acc: Account) -> Response:
    body = request.get_json(silent=True, force=True) or {}
    key, audio_id = body.get("key"), body.get("audio_id")
    state = sim_state()
    with state.lock:
        task = _own_task(acc, str(body.get("chat_id", "")))
        if task is None or task["status"] != "finished" or not key or not audio_id:
            task = None
        else:
            task["composite_url"] = (
                f"{base_url()}/sfile/testpath/video/{task['chat_id']}_{key}_{audio_id}_music.mp4"
            )
    if task is None:
        return bad_request("bad request: no finished task or missing key/audio_id")
    return ok({"url": task["composite_url"]})


@bp.delete("/chat/<chat_id>")
@upstream_view(signed=False)
def delete(acc: Account, chat_id: str) -> Response:
    state = sim_state()
    with state.lock:
        task = _own_task(acc, chat_id)
        if task is not None:
            task["deleted"] = True
    return ok(None) if task is not None else fail(404, "task not found")
