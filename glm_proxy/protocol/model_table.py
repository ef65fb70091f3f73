"""The model table: an OpenAI ``model`` name -> what the upstream needs.

Since 2026 the web app picks a model (``meta_data.selected_model``, e.g.
``glm-5.3-flash``) and a mode (fast / thinking / deep); before that the
model name was cosmetic and only the mode (``chat_mode: zero``) mattered. A
name here selects:

* ``selected_model`` (None: ``GLM_DEFAULT_MODEL``; never sent on the 2025 profile);
* a *mode* -- ``fast``, ``thinking``, ``deep`` (extreme) or ``research`` (deep
  research) -- that the profile's ``GLM_MODE_MAP`` turns into ``chat_mode`` and
  ``reasoning_effort`` (``resolve_reasoning`` lets a client's effort override it);
* an assistant (agent) id and display flags.

Names not in the table follow the web app's conventions: a 24-hex name is an
agent id; a known base name plus suffixes (``-thinking``/``-think``/``-zero``,
``-deep``, ``-deepresearch``, ``-fast``, ``-silent``, ``-nosearch``) combines
them; ``think``/``zero``/``deepresearch``/``silent`` anywhere in a name keep
their old meaning. The names agent clients send (``claude-*``, ``gpt-*``,
``o3``, ``codex-*``) are *aliases* (``MODEL_ALIASES``, shell-style patterns,
first match wins) for a model of the table: Claude Code and Codex work with
their default names. Anything else is *unknown*: the default model answers (the
caller logs it), or, with ``STRICT_MODELS`` (which also turns the aliases off),
it is a 400. Operators add entries with ``MODELS_FILE`` (JSON object name ->
entry).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import orjson

from glm_proxy.protocol.profiles import pairs_table, parse_pairs

AGENT_ID = re.compile(r"^[a-f0-9]{24}$")
MODEL_CREATED = 1735689600  # 2025-01-01: a stable `created` for listed models
MODES = ("fast", "thinking", "deep", "research")
# The names agent clients send by default, and the GLM model each one means here: the
# small/fast names get the flash model, o-series reasoning names think, the rest the
# main model with the mode the request asks for (Claude Code's `thinking`, Codex's effort).
DEFAULT_ALIASES = (
    "claude-*haiku*=glm-5.3-flash,claude-*=glm-5.3,"
    "gpt-*mini*=glm-5.3-flash,gpt-*nano*=glm-5.3-flash,gpt-*=glm-5.3,chatgpt-*=glm-5.3,"
    "o[0-9]*=glm-5.3-thinking,codex-*=glm-5.3"
)
LEGACY_CHAT_MODES = {"zero": "thinking", "deep_research": "research"}  # MODELS_FILE compat
SUFFIXES = {
    "-thinking": ("mode", "thinking"),
    "-think": ("mode", "thinking"),
    "-zero": ("mode", "thinking"),
    "-deep": ("mode", "deep"),
    "-deepresearch": ("mode", "research"),
    "-fast": ("mode", "fast"),
    "-silent": ("silent", True),
    "-nosearch": ("networking", False),
}


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    assistant_id: str | None = None  # None: the configured default assistant
    mode: str | None = None  # fast | thinking | deep | research; None: request decides
    selected_model: str | None = None  # None: GLM_DEFAULT_MODEL
    silent: bool = False
    networking: bool = True
    kind: str = "chat"  # chat | image | video
    owned_by: str = "glm-proxy"
    listed: bool = True
    known: bool = True  # False: a name nothing here recognised (default model answers)

    @property
    def chat_mode(self) -> str | None:
        """The 2025 spelling of the mode (kept for callers of the old field)."""
        return {"thinking": "zero", "deep": "zero", "research": "deep_research"}.get(
            self.mode or ""
        )


def _web(name: str, mode: str | None = None, **kw) -> ModelSpec:
    return ModelSpec(name, mode=mode, selected_model=kw.pop("selected", name), **kw)


BUILTIN_MODELS: tuple[ModelSpec, ...] = (
    # 2026 web models (selected_model) and their modes
    _web("glm-5.3"),
    _web("glm-5.3-flash"),
    _web("glm-5.3-fast", "fast", selected="glm-5.3"),
    _web("glm-5.3-thinking", "thinking", selected="glm-5.3"),
    _web("glm-5.3-deep", "deep", selected="glm-5.3"),
    _web("glm-5.3-flash-thinking", "thinking", selected="glm-5.3-flash"),
    _web("glm-5.3-deepresearch", "research", selected="glm-5.3"),
    # names of earlier releases: the default model answers
    ModelSpec("glm-4"),
    ModelSpec("glm-4-plus"),
    ModelSpec("glm-4v"),
    ModelSpec("glm-4.6"),
    ModelSpec("glm-4.7"),
    ModelSpec("glm-5"),
    ModelSpec("glm-4-think", mode="thinking"),
    ModelSpec("glm-4-zero", mode="thinking"),
    ModelSpec("glm-5-think", mode="thinking"),
    ModelSpec("glm-4-deepresearch", mode="research"),
    ModelSpec("glm-4-silent", silent=True),
    ModelSpec("glm-4-think-silent", mode="thinking", silent=True),
    ModelSpec("glm-4-nosearch", networking=False),
    ModelSpec("cogview-3", kind="image"),
    ModelSpec("cogvideox", kind="video"),
    ModelSpec("cogvideox-pro", kind="video"),
)


def spec_from_name(name: str, base: ModelSpec | None = None) -> ModelSpec:
    """The web app's naming conventions, for names not in the table."""
    lowered = name.lower()
    if AGENT_ID.match(lowered):
        return ModelSpec(name, assistant_id=lowered, listed=False)
    mode = None
    if "think" in lowered or "zero" in lowered:
        mode = "thinking"
    if "deepresearch" in lowered:
        mode = "research"
    return ModelSpec(
        name=name,
        mode=mode,
        silent="silent" in lowered,
        listed=False,
        known=mode is not None or "silent" in lowered,
    )


def resolve_reasoning(mode: str | None, effort: str | None, effort_map: str) -> str:
    """The mode to use: a client's ``reasoning_effort`` (OpenAI Chat and Responses; the
    Anthropic ``thinking`` switch arrives as ``high``/``none``) overrides the model's,
    except that deep research stays deep research. ``effort_map`` is ``GLM_EFFORT_MAP``.
    """
    if mode == "research":
        return mode
    if effort:
        mapped = pairs_table(effort_map).get(effort.lower())
        if mapped in MODES:
            return mapped
    return mode or "fast"


class ModelTable:
    def __init__(self, specs: tuple[ModelSpec, ...] | list[ModelSpec], aliases: str = "") -> None:
        self._specs = {spec.name: spec for spec in specs}
        self._aliases = tuple(parse_pairs(aliases).items())  # (lowercase pattern, model)

    @classmethod
    def load(cls, models_file: str = "", aliases: str = "") -> ModelTable:
        specs = list(BUILTIN_MODELS)
        if models_file:
            data = orjson.loads(Path(models_file).read_bytes())
            if not isinstance(data, dict):
                raise ValueError("MODELS_FILE must hold a JSON object: name -> entry")
            allowed = {
                "assistant_id",
                "mode",
                "chat_mode",
                "selected_model",
                "silent",
                "networking",
                "kind",
                "owned_by",
                "listed",
            }
            for name, entry in data.items():
                if not isinstance(entry, dict):
                    raise ValueError(f"MODELS_FILE entry {name!r} must be an object")
                unknown = set(entry) - allowed
                if unknown:
                    raise ValueError(f"MODELS_FILE entry {name!r}: unknown keys {sorted(unknown)}")
                entry = dict(entry)
                legacy = entry.pop("chat_mode", None)
                if legacy is not None and "mode" not in entry:
                    entry["mode"] = LEGACY_CHAT_MODES.get(legacy, legacy)
                if entry.get("mode") not in (None, *MODES):
                    raise ValueError(f"MODELS_FILE entry {name!r}: mode must be one of {MODES}")
                specs.append(replace(ModelSpec(name), **entry))
        return cls(specs, aliases)

    def listed(self) -> list[ModelSpec]:
        return [spec for spec in self._specs.values() if spec.listed]

    def get(self, name: str) -> ModelSpec | None:
        return self._specs.get(name)

    def add(self, spec: ModelSpec) -> None:
        """Add an entry unless the name exists (catalogue models never replace the table)."""
        self._specs.setdefault(spec.name, spec)

    def resolve(self, name: str) -> ModelSpec:
        """The table entry; a known base with suffixes; the conventions; else an alias."""
        spec = self._resolve(name)
        if spec.known:
            return spec
        lowered = name.lower()
        for pattern, target in self._aliases:
            if fnmatchcase(lowered, pattern):
                found = self._resolve(target)
                return replace(found, name=name, listed=False, known=found.known)
        return spec

    def _resolve(self, name: str) -> ModelSpec:
        spec = self._specs.get(name)
        if spec is not None:
            return spec
        base, changes = name, dict[str, Any]()
        while True:
            for suffix, (key, value) in SUFFIXES.items():
                if base.lower().endswith(suffix) and len(base) > len(suffix):
                    base = base[: -len(suffix)]
                    changes.setdefault(key, value)
                    break
            else:
                break
        found = self._specs.get(base)
        if found is not None and changes:
            return replace(found, name=name, listed=False, **changes)
        return spec_from_name(name)

    @staticmethod
    def to_openai(spec: ModelSpec, context_window: int | None = None) -> dict:
        """The OpenAI model object; chat models also say their context window and
        that they reason (fields agent clients and model pickers read)."""
        entry: dict = {
            "id": spec.name,
            "object": "model",
            "created": MODEL_CREATED,
            "owned_by": spec.owned_by,
        }
        if spec.kind == "chat" and context_window:
            entry["context_window"] = context_window
            entry["supports_reasoning"] = spec.mode != "fast"
        return entry
