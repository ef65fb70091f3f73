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
        ("GC_INTERVAL", "soon"),
        ("GC_INTERVAL", "-1"),
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


def _environment_reads(path: Path) -> list[str]:
    """Where ``path`` reads the process environment: ``os.environ``/``os.getenv`` and kin."""
    import ast

    tree = ast.parse(path.read_text(), str(path))
    names = {"environ", "environb", "getenv", "getenvb"}
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in names
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        ):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} os.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            for alias in node.names:
                if alias.name in names:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} from os import")
    return found


def test_only_the_config_package_reads_the_environment():
    """Every variable goes through ``Settings``, so the generated table lists them all."""
    config = ROOT / "glm_proxy" / "config"
    files = [ROOT / "gunicorn.conf.py", ROOT / "wsgi.py"]
    files += [p for p in (ROOT / "glm_proxy").rglob("*.py") if config not in p.parents]
    reads = [hit for path in files for hit in _environment_reads(path)]
    assert reads == []
    # the check itself sees a read when there is one
    assert _environment_reads(config / "settings.py")


def test_gunicorn_takes_its_values_from_the_settings(monkeypatch):
    """gunicorn.conf.py's values are the parsed settings: one declaration per variable."""
    import runpy

    monkeypatch.setenv("PORT", "8123")
    monkeypatch.setenv("HOST", "127.0.0.2")
    monkeypatch.setenv("WORKER_CONNECTIONS", "77")
    monkeypatch.setenv("KEEPALIVE", "9")
    monkeypatch.setenv("GRACEFUL_TIMEOUT", "31")
    monkeypatch.setenv("LOG_LEVEL", "warning")
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert conf["bind"] == "127.0.0.2:8123"
    assert (conf["worker_connections"], conf["keepalive"], conf["graceful_timeout"]) == (77, 9, 31)
    assert conf["loglevel"] == "warning"
    monkeypatch.setenv("PORT", "eighty")
    with pytest.raises(ConfigError, match="PORT"):
        runpy.run_path(str(ROOT / "gunicorn.conf.py"))
