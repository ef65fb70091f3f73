"""Request schemas for drawing and video generation (marshmallow).

Same conventions as the chat schema (``chat``): standard OpenAI fields are accepted and
unknown ones dropped; values that would silently change the result (model,
option values, response format) are strict. Video options accept the
upstream's Chinese values and the English aliases below; either way the
upstream receives the Chinese value.
"""

from __future__ import annotations

import re
from typing import Any

from marshmallow import ValidationError, fields, post_load, validate

from glm_proxy.api.schemas.base import Lenient

VIDEO_MODELS = ("cogvideox", "cogvideox-pro")

# Chinese value (sent upstream) -> English aliases (first = documented name).
VIDEO_OPTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "video_style": {
        "卡通3D": ("3d_cartoon", "cartoon_3d", "cartoon"),
        "黑白老照片": ("black_and_white", "old_photo", "bw_photo"),
        "油画": ("oil_painting", "oil"),
        "电影感": ("cinematic", "film", "movie"),
    },
    "emotional_atmosphere": {
        "温馨和谐": ("warm", "harmonious", "cozy"),
        "生动活泼": ("lively", "vivid", "playful"),
        "紧张刺激": ("tense", "thrilling", "exciting"),
        "凄凉寂寞": ("desolate", "lonely", "bleak"),
    },
    "mirror_mode": {
        "水平": ("horizontal", "pan"),
        "垂直": ("vertical", "tilt"),
        "推近": ("push_in", "zoom_in"),
        "拉远": ("pull_out", "zoom_out"),
    },
}
AUDIO_ID = re.compile(r"^[^-\s]+-\S+$")


def _alias_key(value: str) -> str:
    return re.sub(r"[\s-]+", "_", value.strip().lower())


def allowed_values(option: str) -> str:
    """``卡通3D (3d_cartoon), ...`` for error messages and docs."""
    return ", ".join(f"{cn} ({aliases[0]})" for cn, aliases in VIDEO_OPTIONS[option].items())


def normalize_option(option: str, value: str | None) -> str:
    """The upstream (Chinese) value of a video option; "" when unset. Raises ValueError."""
    if value is None or not value.strip():
        return ""
    value = value.strip()
    table = VIDEO_OPTIONS[option]
    if value in table:
        return value
    key = _alias_key(value)
    for chinese, aliases in table.items():
        if key in aliases or key == _alias_key(chinese):
            return chinese
    raise ValueError(value)


class ImageGenerationSchema(Lenient):
    prompt = fields.Str(required=True, validate=validate.Length(min=1, max=8000))
    model = fields.Str(load_default=None, allow_none=True, validate=validate.Length(max=256))
    n = fields.Int(load_default=1, allow_none=True, validate=validate.Range(min=1))
    size = fields.Str(load_default=None, allow_none=True)
    response_format = fields.Str(
        load_default="url", allow_none=True, validate=validate.OneOf(("url", "b64_json"))
    )
    # Accepted for compatibility; the drawing assistant has no such knobs.
    quality = fields.Str(allow_none=True)
    style = fields.Str(allow_none=True)
    user = fields.Str(allow_none=True)
    background = fields.Str(allow_none=True)
    output_format = fields.Str(allow_none=True)


class VideoGenerationSchema(Lenient):
    model = fields.Str(load_default="cogvideox", allow_none=True)
    prompt = fields.Str(load_default="", allow_none=True, validate=validate.Length(max=8000))
    image_url = fields.Str(load_default=None, allow_none=True)
    video_style = fields.Str(load_default=None, allow_none=True)
    emotional_atmosphere = fields.Str(load_default=None, allow_none=True)
    mirror_mode = fields.Str(load_default=None, allow_none=True)
    audio_id = fields.Str(load_default=None, allow_none=True)
    conversation_id = fields.Str(
        load_default=None, allow_none=True, validate=validate.Regexp(r"^[A-Za-z0-9]{0,64}$")
    )
    # OpenAI video-jobs fields, accepted and ignored (the upstream decides length/size).
    seconds = fields.Raw(allow_none=True)
    size = fields.Str(allow_none=True)

    @post_load
    def _normalize(self, data: dict[str, Any], **kwargs) -> dict[str, Any]:
        model = (data.get("model") or "cogvideox").strip().lower()
        if model not in VIDEO_MODELS:
            raise ValidationError(
                f"must be one of {', '.join(VIDEO_MODELS)}, got {data.get('model')!r}.", "model"
            )
        data["model"] = model
        data["prompt"] = (data.get("prompt") or "").strip()
        for option in VIDEO_OPTIONS:
            try:
                data[option] = normalize_option(option, data.get(option))
            except ValueError:
                raise ValidationError(
                    f"{data.get(option)!r} is not allowed; use one of {allowed_values(option)} "
                    "(or leave it empty).",
                    option,
                ) from None
        audio = (data.get("audio_id") or "").strip()
        if audio and not AUDIO_ID.match(audio):
            raise ValidationError("must look like '<key>-<id>'.", "audio_id")
        data["audio_id"] = audio
        image = (data.get("image_url") or "").strip()
        if image and not image.lower().startswith(("http://", "https://", "data:")):
            raise ValidationError("must be an http(s) URL or a base64 data: URL.", "image_url")
        data["image_url"] = image or None
        data["conversation_id"] = data.get("conversation_id") or ""
        return data
