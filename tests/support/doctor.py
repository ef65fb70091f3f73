"""``python -m glm_proxy doctor`` run as an operator runs it, and its report read by step."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT


def doctor(simulator, token: str | None, stdin: str = "", *args: str, **env: str):
    full = {
        **os.environ,
        "GLM_BASE_URL": simulator.glm_base_url,
        "GLM_PROTOCOL": simulator.profile,
        "GLM_REFRESH_TOKEN": token or "",
        "GLM_COOKIES": "",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "glm_proxy", "doctor", *args],
        cwd=ROOT,
        env=full,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def lines(result) -> dict[str, str]:
    return {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
