"""Settings: parsing, validation, and the README staying true to them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from glm_proxy.config import ConfigError, Settings, documented_settings, markdown_table

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_valid():
    settings = Settings.from_mapping({})
    assert settings.glm_base_url == "https://chatglm.cn/chatglm"
    assert settings.store_backend == "memory"
    assert settings.max_request_body == 32 * 1024**2


def test_values_are_parsed():
    settings = Settings.from_mapping(
        {
            "MAX_REQUEST_BODY": "64K",
            "DELETE_CONVERSATIONS": "no",
            "CORS_ALLOW_ORIGINS": "https://a.example, https://b.example",
            "REDIS_URL": "redis://127.0.0.1:6379/0",
            "GLM_EXTRA_HEADERS": "X-A: 1; X-B: two",
        }
    )
    assert settings.max_request_body == 64 * 1024
    assert settings.delete_conversations is False
    assert settings.cors_allow_origins == ("https://a.example", "https://b.example")
    assert settings.store_backend == "redis"
    assert settings.extra_headers == {"X-A": "1", "X-B": "two"}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DELETE_CONVERSATIONS", "maybe"),
        ("MAX_REQUEST_BODY", "lots"),
        ("REASONING_OUTPUT", "loud"),
        ("GLM_SIGN_SECRET", "not-hex"),
        ("GLM_RETRIES", "two"),
    ],
)
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(ConfigError) as info:
        Settings.from_mapping({name: value})
    assert name in str(info.value)


def test_docs_document_every_setting():
    docs = (ROOT / "docs" / "configuration.md").read_text()
    missing = [env for env, _, _ in documented_settings() if f"`{env}`" not in docs]
    assert missing == []
    readme = (ROOT / "README.md").read_text()
    assert "pip install -r requirements.txt && gunicorn -c gunicorn.conf.py wsgi:app" in readme


def test_docs_table_is_the_generated_one():
    """docs/configuration.md holds exactly what ``python -m glm_proxy.config`` prints."""
    readme = (ROOT / "docs" / "configuration.md").read_text()
    start = readme.index("<!-- CONFIG-TABLE -->\n") + len("<!-- CONFIG-TABLE -->\n")
    end = readme.index("\n<!-- /CONFIG-TABLE -->")
    assert readme[start:end] == markdown_table()


def test_sections_do_not_shadow_each_other():
    """Each setting is declared in exactly one section, so no section overrides another's."""
    declared = [f.name for base in Settings.__bases__ for f in dataclasses.fields(base)]
    assert len(declared) == len(set(declared)) == len(dataclasses.fields(Settings))
    assert len({env for env, _, _ in documented_settings()}) == len(declared)
