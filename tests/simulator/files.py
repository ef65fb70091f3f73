"""Uploads (spec §7, §9 step 2) and the static file host (`sfile`) the URLs point at."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, abort, request

from .common import bad_request, base_url, ok, sim_state, upstream_view
from .media import fake_mp4, generated_image, image_size
from .state import Account, hex24

bp = Blueprint("files", __name__)


def receive_upload(acc: Account) -> dict[str, Any] | None:
    """Read multipart field `file` into an upload record (bytes under "data"), or None."""
    upload = request.files.get("file")
    if upload is None:
        return None
    data = upload.read()
    name = upload.filename or "file"
    file_id = hex24()
    size = image_size(data)
    return {
        "file_id": file_id,
        "source_id": hex24(),
        "filename": name,
        "content_type": upload.content_type or "application/octet-stream",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "width": size[0] if size else None,
        "height": size[1] if size else None,
        "account": acc.refresh_token,
        "file_url": f"{base_url()}/sfile/upload/{file_id}/{quote(name)}",
        "data": data,
    }


@bp.post("/chatglm/backend-api/assistant/file_upload")
@upstream_view(signed=False)
def file_upload(acc: Account) -> Response:
    record = receive_upload(acc)
    if record is None:
        return bad_request()
    state = sim_state()
    with state.lock:
        state.uploads[record["file_id"]] = record
    result = {
        "file_id": record["file_id"],
        "file_name": record["filename"],
        "file_url": record["file_url"],
        "source_id": record["source_id"],
        "file_size": record["size"],
    }
    if record["width"] is not None:
        result.update(width=record["width"], height=record["height"])
    return ok(result)


@bp.get("/sfile/testpath/<path:name>")
def generated_file(name: str) -> Response:
    """Generated images (PNG, or JPEG for .jpg) and fake videos (.mp4); public, no auth."""
    if name.lower().endswith(".mp4"):
        return Response(fake_mp4(name), content_type="video/mp4")
    data, content_type = generated_image(name)
    return Response(data, content_type=content_type)


@bp.get("/sfile/upload/<file_id>/<path:name>")
def uploaded_file(file_id: str, name: str) -> Response:
    state = sim_state()
    with state.lock:
        record = state.uploads.get(file_id) or next(
            (r for r in state.video_uploads.values() if r["file_id"] == file_id), None
        )
    if record is None:
        abort(404)
    return Response(record["data"], content_type=record["content_type"])
