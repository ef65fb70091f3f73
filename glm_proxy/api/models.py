"""``GET /v1/models`` and ``GET /v1/models/{id}`` from the model table and the upstream catalogue.

The 2026 upstream publishes its models (``GLM_CATALOGUE_PATH``). When
``GLM_MODEL_CATALOGUE`` is on and the pool has an account, the catalogue is
fetched once per ``GLM_CATALOGUE_TTL`` (cached in the store, so every worker
shares it) and each upstream model is listed with its modes (``<model>``,
``<model>-thinking``, ``<model>-deep``); otherwise ``GLM_STATIC_MODELS`` is
listed the same way. Either way the names become known to the model table.

A caller that sends ``anthropic-version`` (the Anthropic SDK, Claude Code) gets
the Anthropic Models API's shape (``type: model``, ``display_name``,
``created_at``, ``has_more``); everyone else OpenAI's. Chat models carry their
context window either way (``MODEL_CONTEXT_WINDOW``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import orjson
from flask import Blueprint, Response, request

from glm_proxy.errors import GLMProxyError, NotFound
from glm_proxy.http.plumbing import json_response
from glm_proxy.protocol.model_table import ModelSpec, ModelTable
from glm_proxy.services import Services, services
from glm_proxy.store import keys
from glm_proxy.upstream.control import catalogue_models, fetch_catalogue

log = logging.getLogger(__name__)

bp = Blueprint("models", __name__, url_prefix="/v1/models")
CACHE_KEY = keys.MODEL_CATALOGUE
FAILURE_TTL = 60  # seconds the static list stands in after a failed catalogue fetch
MODE_SUFFIXES = (("", None), ("-thinking", "thinking"), ("-deep", "deep"))


@bp.before_request
def _require_key() -> None:
    """On a team server the catalogue needs a credential like every other route, unless
    ``MODELS_PUBLIC`` opens it (a 401 otherwise). Only authenticated: listing models is
    not counted against the key's limits or usage."""
    auth = services().auth
    if request.method == "OPTIONS" or auth.settings.models_public or not auth.team:
        return
    auth.authenticate(request)


def upstream_models(svc: Services) -> list[str]:
    """The upstream's model ids: the cached catalogue, a fresh one, or the static list."""
    settings = svc.settings
    if settings.glm_model_catalogue:
        cached = svc.store.get(CACHE_KEY)
        if cached:
            return list(orjson.loads(cached))
        accounts = svc.pool.accounts
        if accounts:
            try:
                names = [
                    m["selected_model"]
                    for m in catalogue_models(fetch_catalogue(svc.upstream, accounts[0]))
                ]
            except GLMProxyError as exc:
                log.warning("model catalogue unavailable, listing GLM_STATIC_MODELS: %s", exc)
                # ask again in a minute, not on every listing
                static = list(settings.glm_static_models)
                svc.store.set(CACHE_KEY, orjson.dumps(static).decode(), ttl=FAILURE_TTL)
                return static
            else:
                if names:
                    svc.store.set(
                        CACHE_KEY, orjson.dumps(names).decode(), ttl=int(settings.glm_catalogue_ttl)
                    )
                    return names
    return list(settings.glm_static_models)


def _learn(table: ModelTable, names: list[str]) -> list[ModelSpec]:
    specs = []
    for name in names:
        for suffix, mode in MODE_SUFFIXES:
            spec = ModelSpec(name + suffix, mode=mode, selected_model=name, owned_by="chatglm")
            table.add(spec)
            specs.append(table.get(spec.name) or spec)
    return specs


@bp.get("")
def list_models() -> Response:
    svc = services()
    table: ModelTable = svc.models
    web = _learn(table, upstream_models(svc))
    seen = {spec.name for spec in web}
    window = svc.settings.model_context_window
    data = [ModelTable.to_openai(spec, window) for spec in web]
    data += [ModelTable.to_openai(s, window) for s in table.listed() if s.name not in seen]
    if _anthropic_caller():
        models = [_anthropic(entry) for entry in data]
        return json_response(
            {
                "data": models,
                "has_more": False,
                "first_id": models[0]["id"] if models else None,
                "last_id": models[-1]["id"] if models else None,
            }
        )
    return json_response({"object": "list", "data": data})


def _anthropic_caller() -> bool:
    return "anthropic-version" in request.headers


def _anthropic(entry: dict) -> dict:
    """An OpenAI model object in the Anthropic Models API's shape."""
    created = datetime.fromtimestamp(entry["created"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    model = {"type": "model", "id": entry["id"], "display_name": entry["id"], "created_at": created}
    if "context_window" in entry:
        model["context_window"] = entry["context_window"]
    return model


@bp.get("/<path:model_id>")
def get_model(model_id: str) -> Response:
    svc = services()
    table: ModelTable = svc.models
    spec = table.get(model_id)
    if spec is None:
        # An agent id, a name with mode suffixes, or a client's name an alias maps.
        resolved = table.resolve(model_id)
        spec = resolved if resolved.known else None
    if spec is None:
        raise NotFound(
            f"The model '{model_id}' does not exist.", param="model", code="model_not_found"
        )
    entry = ModelTable.to_openai(spec, svc.settings.model_context_window)
    return json_response(_anthropic(entry) if _anthropic_caller() else entry)
