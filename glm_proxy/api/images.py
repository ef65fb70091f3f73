"""``POST /v1/images/generations``: OpenAI images API over the drawing assistant."""

from __future__ import annotations

from flask import Blueprint, Response

from glm_proxy.access.auth import Caller, check_model
from glm_proxy.api.schemas.base import load
from glm_proxy.api.schemas.media import ImageGenerationSchema
from glm_proxy.http.plumbing import admitted, json_response, read_json, request_record
from glm_proxy.services import services
from glm_proxy.services.images import generate_images, plan_images

bp = Blueprint("images", __name__, url_prefix="/v1")


@bp.post("/images/generations")
@admitted
def create_image(caller: Caller) -> Response:
    svc = services()
    record = request_record()
    body = load(ImageGenerationSchema(), read_json())
    plan = plan_images(body, svc.settings, svc.models)
    record.describe(model=body.get("model") or "drawing", stream=False, caller=caller.label)
    check_model(caller, body.get("model") or "drawing")
    return json_response(generate_images(svc, caller, plan))
