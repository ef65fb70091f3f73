"""Request schemas load through copies narrowed to the body's fields; nothing may change.

For every request schema, random bodies (valid and invalid values, unknown
keys, missing required fields) are loaded twice: through ``load`` (narrowed)
and through a copy that walks every declared field, as marshmallow does by
default. The result, or the 400's message and ``param``, must be the same.
"""

from __future__ import annotations

import random

import pytest

from glm_proxy.api.schemas.anthropic import AnthropicMessagesSchema, CountTokensSchema
from glm_proxy.api.schemas.base import _Narrowing, load
from glm_proxy.api.schemas.chat import ChatCompletionSchema
from glm_proxy.api.schemas.media import ImageGenerationSchema, VideoGenerationSchema
from glm_proxy.api.schemas.responses import ResponsesSchema
from glm_proxy.api.schemas.tokens import TokenCheckSchema
from glm_proxy.errors import InvalidRequest

CHAT = [{"role": "user", "content": "hi"}]
VALID = {  # a valid body of each schema, which the random bodies start from half of the time
    ChatCompletionSchema: {"model": "glm-4", "messages": CHAT},
    AnthropicMessagesSchema: {"model": "glm-4", "max_tokens": 64, "messages": CHAT},
    CountTokensSchema: {"model": "glm-4", "messages": CHAT},
    ResponsesSchema: {"model": "glm-4", "input": "hi"},
    ImageGenerationSchema: {"prompt": "a cat"},
    VideoGenerationSchema: {"prompt": "a cat"},
    TokenCheckSchema: {"token": "abc"},
}
SCHEMAS = tuple(VALID)

VALUES = (
    None,
    "",
    "glm-4",
    "x" * 300,
    0,
    1,
    -1,
    3,
    0.5,
    2.5,
    True,
    False,
    [],
    {},
    [{"role": "user", "content": "hi"}],
    [{"role": "assistant", "content": None}],
    [{"role": "robot", "content": "hi"}],
    [{"type": "message", "role": "user", "content": "hi"}],
    {"type": "text"},
    {"type": "json_object"},
    {"type": "enabled", "budget_tokens": 2048},
    "hello",
    ["stop"],
)


def outcome(schema, body):
    try:
        return ("ok", load(schema, body))
    except InvalidRequest as exc:
        return ("400", exc.message, exc.param)


def random_body(rng: random.Random, names: list[str], valid: dict) -> dict:
    if rng.random() < 0.5:  # a valid body with a few more fields, often still valid
        body = dict(valid)
        body.update(
            (name, rng.choice(VALUES))
            for name in rng.sample(names, rng.randint(0, min(3, len(names))))
        )
        if rng.random() < 0.5:
            body.update(
                (n, None)
                for n in rng.sample(names, rng.randint(1, min(4, len(names))))
                if n not in valid
            )
        return body
    body = {name: rng.choice(VALUES) for name in rng.sample(names, rng.randint(0, len(names)))}
    if rng.random() < 0.3:
        body["unknown_field"] = rng.choice(VALUES)
    return body


@pytest.mark.parametrize("schema_class", SCHEMAS, ids=lambda c: c.__name__)
def test_narrowed_loads_equal_full_loads(schema_class):
    narrowed = schema_class()
    full = schema_class(only=tuple(schema_class().load_fields))  # never narrowed
    names = [field.data_key or name for name, field in schema_class().load_fields.items()]
    rng = random.Random(schema_class.__name__)
    loaded = 0
    for _ in range(600):
        body = random_body(rng, names, VALID[schema_class])
        expected = outcome(full, body)
        assert outcome(narrowed, body) == expected, body
        loaded += expected[0] == "ok"
    assert loaded >= 60  # the success path is covered too, not only errors


def test_a_typical_chat_body_uses_a_narrowed_copy():
    schema = ChatCompletionSchema()
    body = {"model": "glm-4", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    assert load(schema, body)["keep_conversation"] is False  # a default still applies
    copy = schema._narrowing.for_data(body)
    assert copy is not schema
    assert set(copy.load_fields) == {"model", "messages", "stream", "keep_conversation"}
    assert schema._narrowing.for_data(dict(body)) is copy  # built once per field set


def test_copies_are_bounded():
    schema = ChatCompletionSchema()
    narrowing = _Narrowing(schema)
    optional = [key for _, key in narrowing.optional]
    rng = random.Random(7)
    for _ in range(_Narrowing.MOST * 3):
        narrowing.for_data({key: None for key in rng.sample(optional, 6)})
    assert len(narrowing.copies) == _Narrowing.MOST
