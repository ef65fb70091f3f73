"""Every setting, parsed and validated in one place.

Settings come from environment variables (12-factor). ``create_app`` accepts a
mapping with the same names, layered over the environment, so tests configure
the app exactly the way an operator does. Every upstream constant is a setting
so a user can follow an upstream change without a new release.

A bad value fails at start-up with a message naming the variable, never later
in the middle of a request.

Layout: ``parsing`` (how a setting is declared and parsed), one module per
group of sections (``serving``, ``upstream``, ``protocol``, ``pool``, ``limits``,
``controls``), ``settings`` (the ``Settings`` class that joins them and validates
across fields) and ``table`` (the table in docs/configuration.md).
"""

from glm_proxy.config.parsing import FROM_PROFILE, ConfigError, read_setting_file
from glm_proxy.config.settings import Settings
from glm_proxy.config.table import documented_settings, markdown_table
from glm_proxy.config.upstream import (
    DEFAULT_CHAT_ASSISTANT,
    DEFAULT_DRAWING_ASSISTANT,
    DEFAULT_SIGN_SECRET,
    DEFAULT_USER_AGENT,
)

__all__ = [
    "DEFAULT_CHAT_ASSISTANT",
    "DEFAULT_DRAWING_ASSISTANT",
    "DEFAULT_SIGN_SECRET",
    "DEFAULT_USER_AGENT",
    "FROM_PROFILE",
    "ConfigError",
    "Settings",
    "documented_settings",
    "markdown_table",
    "read_setting_file",
]
