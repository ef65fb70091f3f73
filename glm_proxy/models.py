"""The model table: an OpenAI ``model`` name -> what the upstream needs.

The upstream has no model parameter: the web app decides the model. A model
name selects an assistant (agent) id, a chat mode (reasoning, deep research)
and display flags. Names not in the table follow the web app's conventions:
a 24-hex name is an agent id, ``think``/``zero`` selects reasoning,
``deepresearch`` deep research, ``silent`` hides reasoning and sources.
Operators add entries with ``MODELS_FILE`` (JSON object name -> entry).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import orjson

AGENT_ID = re.compile(r"^[a-f0-9]{24}$")
MODEL_CREATED = 1735689600  # 2025-01-01: a stable `created` for listed models


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    assistant_id: str | None = None  # None: the configured default assistant
    chat_mode: str | None = None  # "zero", "deep_research" or None
    silent: bool = False
    networking: bool = True
    kind: str = "chat"  # chat | image | video
    owned_by: str = "glm-proxy"
    listed: bool = True


BUILTIN_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("glm-4"),
    ModelSpec("glm-4-plus"),
    ModelSpec("glm-4v"),
    ModelSpec("glm-4.6"),
    ModelSpec("glm-4.7"),
    ModelSpec("glm-5"),
    ModelSpec("glm-4-think", chat_mode="zero"),
    ModelSpec("glm-4-zero", chat_mode="zero"),
    ModelSpec("glm-5-think", chat_mode="zero"),
    ModelSpec("glm-4-deepresearch", chat_mode="deep_research"),
    ModelSpec("glm-4-silent", silent=True),
    ModelSpec("glm-4-think-silent", chat_mode="zero", silent=True),
    ModelSpec("glm-4-nosearch", networking=False),
    ModelSpec("cogview-3", kind="image"),
    ModelSpec("cogvideox", kind="video"),
    ModelSpec("cogvideox-pro", kind="video"),
)


def spec_from_name(name: str) -> ModelSpec:
    """The web app's naming conventions, for names not in the table."""
    lowered = name.lower()
    assistant_id = lowered if AGENT_ID.match(lowered) else None
    chat_mode = None
    if "think" in lowered or "zero" in lowered:
        chat_mode = "zero"
    if "deepresearch" in lowered:
        chat_mode = "deep_research"
    return ModelSpec(
        name=name,
        assistant_id=assistant_id,
        chat_mode=chat_mode,
        silent="silent" in lowered,
        listed=False,
    )


class ModelTable:
    def __init__(self, specs: tuple[ModelSpec, ...] | list[ModelSpec]) -> None:
        self._specs = {spec.name: spec for spec in specs}

    @classmethod
    def load(cls, models_file: str = "") -> ModelTable:
        specs = list(BUILTIN_MODELS)
        if models_file:
            data = orjson.loads(Path(models_file).read_bytes())
            if not isinstance(data, dict):
                raise ValueError("MODELS_FILE must hold a JSON object: name -> entry")
            for name, entry in data.items():
                if not isinstance(entry, dict):
                    raise ValueError(f"MODELS_FILE entry {name!r} must be an object")
                allowed = {"assistant_id", "chat_mode", "silent", "networking", "kind", "owned_by"}
                unknown = set(entry) - allowed
                if unknown:
                    raise ValueError(f"MODELS_FILE entry {name!r}: unknown keys {sorted(unknown)}")
                specs.append(replace(ModelSpec(name), **entry))
        return cls(specs)

    def listed(self) -> list[ModelSpec]:
        return [spec for spec in self._specs.values() if spec.listed]

    def get(self, name: str) -> ModelSpec | None:
        return self._specs.get(name)

    def resolve(self, name: str) -> ModelSpec:
        """The table entry, else the conventions (any name works, like the web app)."""
        return self._specs.get(name) or spec_from_name(name)

    @staticmethod
    def to_openai(spec: ModelSpec) -> dict:
        return {
            "id": spec.name,
            "object": "model",
            "created": MODEL_CREATED,
            "owned_by": spec.owned_by,
        }
