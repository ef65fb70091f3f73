"""``GET /v1/models`` and ``GET /v1/models/{id}`` from the model table."""

from __future__ import annotations

from flask import Blueprint, Response

from glm_proxy.auth import require_key_for_catalogue
from glm_proxy.errors import NotFound
from glm_proxy.models import AGENT_ID, ModelTable
from glm_proxy.services import services
from glm_proxy.web import json_response

bp = Blueprint("models", __name__, url_prefix="/v1/models")
bp.before_request(require_key_for_catalogue)


@bp.get("")
def list_models() -> Response:
    table: ModelTable = services().models
    return json_response(
        {"object": "list", "data": [ModelTable.to_openai(spec) for spec in table.listed()]}
    )


@bp.get("/<path:model_id>")
def get_model(model_id: str) -> Response:
    table: ModelTable = services().models
    spec = table.get(model_id)
    if spec is None and AGENT_ID.match(model_id.lower()):
        spec = table.resolve(model_id)
    if spec is None:
        raise NotFound(
            f"The model '{model_id}' does not exist.", param="model", code="model_not_found"
        )
    return json_response(ModelTable.to_openai(spec))
