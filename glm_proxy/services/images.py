"""AI drawing: ``POST /v1/images/generations`` through the drawing assistant (notes §8).

A drawing is an ordinary answer from a drawing assistant, so it runs as an
``AnswerJob``: same account lease, retries, error mapping and conversation
cleanup as chat. The images are the ``ImageGenerated`` deltas. One upstream
answer yields a handful of images (4 today); when the client asks for more,
further answers are requested one after another until ``n`` are collected or
an answer brings nothing new. ``n`` is capped by ``IMAGES_MAX_N``.

``plan_images`` and ``drawing_payload`` are pure; ``generate_images`` does I/O.
"""

from __future__ import annotations

import base64
import logging
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from glm_proxy.access.auth import Caller
from glm_proxy.errors import ContentFiltered, GLMProxyError, InvalidRequest, UpstreamError
from glm_proxy.protocol.events import Finished, ImageGenerated, TextDelta
from glm_proxy.protocol.model_table import AGENT_ID
from glm_proxy.protocol.translate import TranslateOptions
from glm_proxy.services.answer import AnswerJob, AnswerRequest

log = logging.getLogger(__name__)

ASPECT_RATIOS = {"1:1": 1.0, "3:4": 3 / 4, "4:3": 4 / 3, "9:16": 9 / 16, "16:9": 16 / 9}
SIZE = re.compile(r"^\s*(\d{1,5})\s*[xX×*]\s*(\d{1,5})\s*$")
RATIO = re.compile(r"^\s*(\d{1,3})\s*:\s*(\d{1,3})\s*$")
CODE_BLOCK = re.compile(r"```[A-Za-z0-9_-]*\n(.*?)\n```", re.DOTALL)
DRAW_WORD = "画"
DRAW_PREFIX = "请画："
DEFAULT_ASPECT = "1:1"


@dataclass(frozen=True)
class ImagePlan:
    prompt: str
    assistant_id: str
    n: int
    aspect_ratio: str
    response_format: str  # "url" | "b64_json"


@dataclass
class Drawing:
    """What one drawing answer produced."""

    urls: list[str] = field(default_factory=list)
    text: str = ""

    @property
    def revised_prompt(self) -> str | None:
        """The rewritten prompt, when the assistant shows one (a code block, E3 web app)."""
        match = CODE_BLOCK.search(self.text)
        return match.group(1).strip() or None if match else None


def nearest_aspect_ratio(size: str | None) -> str:
    """``"1024x1792"`` -> ``"9:16"``: the supported ratio closest on a log scale.

    ``None``/``"auto"`` -> 1:1; a ratio such as ``"16:9"`` is taken as it is
    (and snapped to the nearest supported one).
    """
    if size is None or size.strip().lower() in ("", "auto"):
        return DEFAULT_ASPECT
    match = SIZE.match(size) or RATIO.match(size)
    if not match or not int(match.group(1)) or not int(match.group(2)):
        raise InvalidRequest(
            f"Invalid value for 'size': {size!r}. Use WIDTHxHEIGHT (e.g. 1024x1024) or a ratio "
            f"({', '.join(ASPECT_RATIOS)}).",
            param="size",
        )
    target = math.log(int(match.group(1)) / int(match.group(2)))
    return min(ASPECT_RATIOS, key=lambda r: abs(math.log(ASPECT_RATIOS[r]) - target))


def drawing_assistant(model: str | None, settings, models) -> str:
    """A 24-hex model is an agent id; a table entry of kind image may name one; else the
    configured drawing assistant."""
    name = (model or "").strip()
    if AGENT_ID.match(name.lower()):
        return name.lower()
    spec = models.get(name) if name else None
    if spec is not None and spec.kind == "image" and spec.assistant_id:
        return spec.assistant_id
    return settings.glm_drawing_assistant_id


def plan_images(body: dict[str, Any], settings, models) -> ImagePlan:
    n = int(body.get("n") or 1)
    if n > settings.images_max_n:
        raise InvalidRequest(
            f"Invalid value for 'n': at most {settings.images_max_n} images per request "
            "(IMAGES_MAX_N).",
            param="n",
        )
    return ImagePlan(
        prompt=body["prompt"],
        assistant_id=drawing_assistant(body.get("model"), settings, models),
        n=n,
        aspect_ratio=nearest_aspect_ratio(body.get("size")),
        response_format=body.get("response_format") or "url",
    )


def drawing_prompt(prompt: str) -> str:
    """Like the web app's proxies: ask explicitly to draw unless the prompt already does."""
    return prompt if DRAW_WORD in prompt else DRAW_PREFIX + prompt


IMAGE_NUMBER = re.compile(r"_(\d+)_\d+\.[A-Za-z0-9]+(?:\?|$)")


def image_order(url: str) -> int:
    """The picture's number in ``<history_id>_<n>_0.jpg`` (2026 frames arrive shuffled)."""
    match = IMAGE_NUMBER.search(url)
    return int(match.group(1)) if match else 1 << 30


def drawing_payload(
    prompt: str, assistant_id: str, aspect_ratio: str, selected_model: str | None = None
) -> dict[str, Any]:
    """The stream body for a drawing.

    2025 (notes §8, §6.1): no chat_mode, no is_networking. 2026 (§15.6, when
    ``selected_model`` is given): the fast mode, no web search, the model.
    """
    payload = _drawing_payload(prompt, assistant_id, aspect_ratio)
    if selected_model:
        meta = payload["meta_data"]
        del meta["if_plus_model"]
        meta.update(
            selected_model=selected_model,
            chat_mode="",
            reasoning_effort="low",
            is_networking=False,
        )
    return payload


def _drawing_payload(prompt: str, assistant_id: str, aspect_ratio: str) -> dict[str, Any]:
    return {
        "assistant_id": assistant_id,
        "conversation_id": "",
        "project_id": "",
        "chat_type": "user_chat",
        "messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]}],
        "meta_data": {
            "channel": "",
            "draft_id": "",
            "if_plus_model": True,
            "input_question_type": "xxxx",
            "is_test": False,
            "platform": "pc",
            "quote_log_id": "",
            "cogview": {
                "aspect_ratio": aspect_ratio,
                "style": "none",
                "scene": "none",
                "chat_model": "",
                "rm_label_watermark": False,
            },
        },
    }


def draw(svc, caller: Caller, prompt: str, assistant_id: str, aspect_ratio: str) -> Drawing:
    """One drawing answer. Raises ``ContentFiltered`` (400) or the answer's error."""
    settings = svc.settings
    model = settings.glm_default_model if settings.glm_send_selected_model else None
    payload = drawing_payload(drawing_prompt(prompt), assistant_id, aspect_ratio, model)
    request = AnswerRequest(
        assistant_id=assistant_id,
        build_payload=lambda _account: payload,
        translate_options=TranslateOptions(include_reasoning=False, include_sources=False),
        referer=svc.upstream.referer(assistant_id),
        share=caller.share,
    )
    job = AnswerJob(svc, caller.accounts, request).start()
    drawing = Drawing()
    try:
        for item in job.deltas():
            if isinstance(item, ImageGenerated) and item.url not in drawing.urls:
                drawing.urls.append(item.url)
            elif isinstance(item, TextDelta):
                drawing.text += item.text
            elif isinstance(item, Finished) and item.reason == "content_filter":
                raise ContentFiltered(
                    item.message or "The drawing was blocked by the upstream's content filter.",
                    param="prompt",
                )
    finally:
        job.cancel()
    # images may arrive in any order and in unfinished frames (2026): number order
    drawing.urls.sort(key=image_order)
    return drawing


def generate_images(svc, caller: Caller, plan: ImagePlan) -> dict[str, Any]:
    """The OpenAI images response: ``{"created", "data": [{"url"|"b64_json", ...}]}``."""
    urls: list[str] = []
    revised: str | None = None
    rounds = 0
    while len(urls) < plan.n and rounds < plan.n:
        rounds += 1
        try:
            drawing = draw(svc, caller, plan.prompt, plan.assistant_id, plan.aspect_ratio)
        except GLMProxyError as exc:
            if not urls:
                raise
            log.info("extra drawing round failed (%s); returning %d image(s)", exc.code, len(urls))
            break
        new = [u for u in drawing.urls if u not in urls]
        if not new:
            if not urls:
                said = drawing.text.strip()
                raise UpstreamError(
                    "The drawing assistant produced no image"
                    + (f"; it answered: {said[:500]}" if said else ".")
                )
            break
        urls.extend(new)
        revised = revised or drawing.revised_prompt
    data = [_image_item(svc, url, plan.response_format, revised) for url in urls[: plan.n]]
    return {"created": int(time.time()), "data": data}


def _image_item(svc, url: str, response_format: str, revised: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if response_format == "b64_json":
        with svc.attachments.fetch_generated(url) as blob:
            item["b64_json"] = base64.b64encode(blob.read_all()).decode()
    else:
        item["url"] = url
    if revised:
        item["revised_prompt"] = revised
    return item
