"""The server-side account pool: which refresh tokens the operator configured.

Sources, merged and de-duplicated by fingerprint:

- ``ACCOUNTS``: comma-separated entries;
- ``ACCOUNTS_FILE``: one entry per line, ``#`` starts a comment.

An entry is a refresh token optionally followed by whitespace-separated
options: ``max_streams=N`` (concurrent answers for this account; default
``ACCOUNT_MAX_STREAMS``), ``name=label`` (shown in the admin API),
``id=<fingerprint>`` (the account's identity; written by the service itself) and
``cookies=<path>`` (a file with the browser's ``Cookie`` header or a Netscape
cookies.txt, for upstreams behind a WAF; the admin API can set them too) and
``proxy=<url>`` (this account's outbound proxy, overriding ``UPSTREAM_PROXY``).
Cookies are secrets: only their names and a fingerprint are ever shown.

When the upstream rotates a refresh token and ``FOLLOW_TOKEN_ROTATION`` is on,
the new token is kept in the store (``rot:<fingerprint>``) and, if the pool
came from a file, written back into that file (atomically, options kept) so a
restart without Redis still starts from a live token. The rewritten line gets
``id=<fingerprint of the original token>``, so the account keeps its identity
(health, leases, kept conversations) across restarts.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from glm_proxy.accounts import Account, fingerprint
from glm_proxy.config import ConfigError, read_setting_file
from glm_proxy.config.parsing import parse_proxy_url

log = logging.getLogger(__name__)

_OPTION = re.compile(r"^(max_streams|name|id|cookies|proxy)=(\S*)$")


@dataclass(frozen=True, slots=True)
class PoolEntry:
    account: Account
    name: str = ""
    source: str = "env"  # env | file


def parse_entry(text: str, default_max_streams: int, source: str) -> PoolEntry | None:
    """One configured account, or None for a blank/comment line."""
    text = text.split("#", 1)[0].strip()
    if not text:
        return None
    token, *options = text.split()
    max_streams, name, ident, cookies = default_max_streams, "", fingerprint(token), ""
    proxy = ""
    for option in options:
        match = _OPTION.match(option)
        if not match:
            raise ConfigError(
                f"account {fingerprint(token)} in {source}: unknown option "
                f"{option.split('=', 1)[0]!r} (known: max_streams=N, name=label, id=fp, "
                "cookies=path, proxy=url)"
            )
        key, value = match.groups()
        if key == "max_streams":
            if not value.isdigit() or int(value) < 1:
                raise ConfigError(
                    f"account {fingerprint(token)} in {source}: max_streams must be >= 1"
                )
            max_streams = int(value)
        elif key == "id":
            ident = value or ident
        elif key == "cookies":
            cookies = _read_cookies(value, fingerprint(token), source)
        elif key == "proxy":
            try:
                proxy = parse_proxy_url(value)
            except ValueError as exc:
                raise ConfigError(
                    f"proxy= of account {fingerprint(token)} in {source}: {exc}"
                ) from None

        else:
            name = value
    return PoolEntry(Account(token, ident, max_streams, cookies, proxy), name, source)


def _read_cookies(path: str, fp: str, source: str) -> str:
    """The cookie file's text, checked now so a bad file fails at start-up (values never shown)."""
    from glm_proxy.upstream.identity import parse_cookies

    text = "\n".join(read_setting_file(path, f"cookies= of account {fp} in {source}"))
    try:
        parse_cookies(text)
    except ValueError as exc:
        raise ConfigError(f"cookies= of account {fp} in {source}: {exc}") from None
    return text


def load_pool(settings) -> list[PoolEntry]:
    """Every configured account, in configuration order, each fingerprint once."""
    entries: list[PoolEntry] = []
    for item in settings.accounts:
        entry = parse_entry(item, settings.account_max_streams, "ACCOUNTS")
        if entry is not None:
            entries.append(entry)
    if settings.accounts_file:
        lines = read_setting_file(settings.accounts_file, "ACCOUNTS_FILE")
        for line in lines:
            entry = parse_entry(line, settings.account_max_streams, "ACCOUNTS_FILE")
            if entry is not None:
                entries.append(PoolEntry(entry.account, entry.name, "file"))
    seen: dict[str, PoolEntry] = {}
    for entry in entries:
        seen.setdefault(entry.account.fingerprint, entry)
    return list(seen.values())


_file_lock = threading.Lock()


def _line_identity(stripped: str) -> str | None:
    """The account identity of one accounts-file line (None for blanks and comments)."""
    body = stripped.split("#", 1)[0].split()
    if not body:
        return None
    for option in body[1:]:
        if option.startswith("id=") and len(option) > 3:
            return option[3:]
    return fingerprint(body[0])


def rewrite_token(path: str, ident: str, new: str) -> bool:
    """Put ``new`` on the accounts-file line of account ``ident``; True when the file changed.

    Writes a temporary file next to it and renames it over the original, so a
    crash mid-write never leaves a half-written pool.
    """
    target = Path(path)
    with _file_lock:
        try:
            lines = target.read_text(encoding="utf-8").splitlines(keepends=True)
        except OSError as exc:
            log.warning("could not read ACCOUNTS_FILE to follow a rotation: %s", exc.strerror)
            return False
        changed = False
        for index, line in enumerate(lines):
            stripped = line.lstrip()
            if _line_identity(stripped) != ident:
                continue
            code, hash_, comment = stripped.rstrip("\r\n").partition("#")
            options = [o for o in code.split()[1:] if not o.startswith("id=")]
            options.append(f"id={ident}")
            newline = "\n" if line.endswith("\n") else ""
            indent = line[: len(line) - len(stripped)]
            tail = f" #{comment}" if hash_ else ""
            lines[index] = indent + " ".join([new, *options]) + tail + newline
            changed = True
        if not changed:
            return False
        fd, tmp = tempfile.mkstemp(prefix=".accounts-", dir=str(target.parent))
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.writelines(lines)
            try:
                os.chmod(tmp, target.stat().st_mode & 0o777)
            except OSError:
                pass
            os.replace(tmp, target)
        except OSError as exc:
            log.warning("could not write ACCOUNTS_FILE to follow a rotation: %s", exc.strerror)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            return False
        return True
