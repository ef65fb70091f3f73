"""The agent CLIs the tests run for real (Claude Code, Codex): pinned versions, where npm puts
them, and the isolated environment each needs to talk only to a server on 127.0.0.1.

The pins live here and nowhere else: ``.ci/run`` installs them through
``python3 -m tests.agent_cli.install_clis`` and ``tests/clients/test_agent_clis.py`` runs
them. Bumping a version is editing ``PINS`` (see docs/agent-cli-tests.md for what to check then).

Isolation: each run gets its own HOME and config folder (no user settings, no login, no
history) and every update check, telemetry and feedback channel the CLI has turned off by its
own settings. Claude Code then connects to nothing but the server (checked with strace). Codex
still tries to sync its plugin catalogue (git, github.com, chatgpt.com): its HTTP(S) proxies
point at a closed local port with 127.0.0.1 exempt, so that fails at once, locally. (Not for
Claude Code: its ``HEAD /`` warm-up ignores NO_PROXY and would never reach the server.) None of
this changes the model requests the CLIs send.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
CLI_DIR = ROOT / ".cache" / "clis"  # git-ignored; CI keeps it between runs when it can
PINS = {"@anthropic-ai/claude-code": "2.1.197", "@openai/codex": "0.171.0"}
BINARIES = {"claude": "@anthropic-ai/claude-code", "codex": "@openai/codex"}
DEAD_PROXY = "http://127.0.0.1:9"  # discard port: nothing listens, connections fail at once
CODEX_MODEL = "glm-5.3"  # the model docs/clients.md's Codex config names


def node_tools_missing() -> str:
    """Why the CLIs cannot run here ("" when node and npm are on PATH)."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    return f"{' and '.join(missing)} not on PATH: the agent CLIs need Node.js" if missing else ""


def installed_version(package: str) -> str | None:
    manifest = CLI_DIR / "node_modules" / package / "package.json"
    try:
        return json.loads(manifest.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def stale_pins() -> dict[str, str]:
    """The pinned packages not installed at their pinned version."""
    return {pkg: ver for pkg, ver in PINS.items() if installed_version(pkg) != ver}


def install(quiet: bool = True) -> None:
    """Install the pinned CLIs into CLI_DIR, unless they already are (the cached case)."""
    wanted = stale_pins()
    if not wanted:
        return
    CLI_DIR.mkdir(parents=True, exist_ok=True)
    manifest = CLI_DIR / "package.json"
    if not manifest.exists():
        manifest.write_text('{"private": true, "description": "pinned agent CLIs for tests"}\n')
    specs = [f"{pkg}@{ver}" for pkg, ver in PINS.items()]  # all: npm keeps one consistent tree
    cmd = ["npm", "install", "--prefix", str(CLI_DIR), "--save-exact", "--no-audit", "--no-fund"]
    if quiet:
        cmd += ["--loglevel=error"]
    subprocess.run([*cmd, *specs], check=True, timeout=600)
    still = stale_pins()
    if still:
        raise RuntimeError(f"npm did not install {still}")


def binary(name: str) -> str:
    return str(CLI_DIR / "node_modules" / ".bin" / name)


def base_env(home: Path) -> dict[str, str]:
    """A minimal environment: PATH and locale from here, everything user-specific fresh."""
    env = {key: os.environ[key] for key in ("PATH", "LANG", "LC_ALL", "TERM") if key in os.environ}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        TMPDIR=str(home / "tmp"),
        NO_COLOR="1",
        CI="1",
    )
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    return env


def dead_proxies(env: dict[str, str]) -> dict[str, str]:
    """``env`` with every proxy variable at a closed local port, 127.0.0.1 exempt."""
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[key] = env[key.lower()] = DEAD_PROXY
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def claude_env(home: Path, server: str, api_key: str) -> dict[str, str]:
    """Claude Code as a user sets it up for glm-proxy: base URL and key, nothing else chosen."""
    config = home / ".claude"
    config.mkdir(parents=True, exist_ok=True)
    env = base_env(home)
    env.update(
        CLAUDE_CONFIG_DIR=str(config),
        ANTHROPIC_BASE_URL=server,
        ANTHROPIC_API_KEY=api_key,
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_AUTOUPDATER="1",
        DISABLE_TELEMETRY="1",
        DISABLE_ERROR_REPORTING="1",
        DISABLE_BUG_COMMAND="1",
        CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY="1",
        CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL="1",
        CLAUDE_CODE_IDE_SKIP_AUTO_INSTALL="1",
        CLAUDE_CODE_MAX_RETRIES="0",  # a failed request fails the run now, not after backoff
    )
    return env


def codex_config(model: str | None, server: str, quiet: bool = True) -> str:
    """docs/clients.md's ``config.toml`` for glm-proxy; ``quiet`` adds the isolation settings
    (no update check, analytics, feedback or OpenTelemetry export; no retries to wait through)."""
    top = f'model = "{model}"\n' if model else ""  # none: Codex's own default model
    top += 'model_provider = "glm-proxy"\nmodel_context_window = 128000\n'
    provider = (
        f'[model_providers.glm-proxy]\nname = "glm-proxy"\nbase_url = "{server}/v1"\n'
        'env_key = "GLM_PROXY_API_KEY"\nwire_api = "responses"\n'
    )
    if not quiet:
        return f"{top}\n{provider}"
    return (
        f"{top}check_for_update_on_startup = false\n\n{provider}"
        "request_max_retries = 0\nstream_max_retries = 0\n\n"
        "[analytics]\nenabled = false\n\n[feedback]\nenabled = false\n\n"
        '[otel]\nexporter = "none"\nmetrics_exporter = "none"\ntrace_exporter = "none"\n'
    )


def codex_env(
    home: Path, server: str, api_key: str, model: str | None = CODEX_MODEL
) -> dict[str, str]:
    """Codex with docs/clients.md's ``config.toml`` in a fresh CODEX_HOME (plus quiet settings)."""
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(codex_config(model, server))
    env = dead_proxies(base_env(home))
    env.update(CODEX_HOME=str(codex_home), GLM_PROXY_API_KEY=api_key)
    return env


def claude_command(prompt: str, *options: str) -> list[str]:
    return [binary("claude"), "-p", *options, prompt]


def codex_command(prompt: str, *options: str) -> list[str]:
    return [binary("codex"), "exec", "--skip-git-repo-check", *options, prompt]


def run(
    cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 150
) -> subprocess.CompletedProcess[str]:
    """Run a CLI to completion, stdin closed (``codex exec`` would otherwise read it)."""
    return subprocess.run(
        cmd,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
