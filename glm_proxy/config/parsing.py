"""The machinery every settings section shares: how a value is declared and parsed.

A setting is a dataclass field whose metadata names its environment variable,
the function that parses the variable's text, and the one-line description the
configuration table shows. The parsers raise ``ValueError``; ``Settings.from_mapping``
turns that into a ``ConfigError`` naming the variable, so a bad value fails at
start-up, never in the middle of a request.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import field
from pathlib import Path
from typing import Any

from glm_proxy.tools.prompt import check_template

FROM_PROFILE = None  # default of a setting whose value comes from the GLM_PROTOCOL profile


class ConfigError(ValueError):
    """A setting is missing or malformed; raised at start-up."""


def setting(env: str, default: Any, parse: Callable[[str], Any] | None = None, doc: str = ""):
    """A settings field: its variable, default, parser and documented description."""
    return field(default=default, metadata={"env": env, "parse": parse, "doc": doc})


def parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected a boolean (true/false), got {value!r}")


def parse_csv(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def parse_size(value: str) -> int:
    """Bytes, with optional K/M/G (binary) suffix: ``32M`` = 32 MiB."""
    match = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)i?[bB]?\s*", value)
    if not match:
        raise ValueError(f"expected a size like 32M, got {value!r}")
    number, unit = int(match.group(1)), match.group(2).lower()
    return number * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit]


def one_of(*allowed: str) -> Callable[[str], str]:
    """A parser accepting only ``allowed`` (case-insensitive)."""

    def parse(value: str) -> str:
        value = value.strip().lower()
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}, got {value!r}")
        return value

    return parse


PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")


def parse_proxy_url(value: str) -> str:
    """An outbound proxy URL (``http``, ``https``, ``socks5``, ``socks5h``), or "" for none."""
    value = value.strip()
    if not value:
        return ""
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in PROXY_SCHEMES or not rest.split("@")[-1].strip("/"):
        raise ValueError(
            "must be a proxy URL such as http://host:3128 or socks5://host:1080 "
            f"(schemes: {', '.join(PROXY_SCHEMES)})"
        )
    return value


def parse_hex32(value: str) -> str:
    value = value.strip()
    if not re.fullmatch(r"[0-9a-fA-F]{32}", value):
        raise ValueError("expected 32 hex characters")
    return value.lower()


def parse_tool_prompt_file(value: str) -> str:
    """A readable template with the placeholders the tool section needs (checked at start-up)."""
    path = value.strip()
    if not path:
        return ""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror or exc}") from None
    problem = check_template(text)
    if problem:
        raise ValueError(f"{path}: {problem}")
    return path


def read_setting_file(path: str, variable: str) -> list[str]:
    """The lines of a file a setting names; a missing or unreadable file is a start-up error."""
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"{variable} {path}: {exc.strerror or exc}") from None
