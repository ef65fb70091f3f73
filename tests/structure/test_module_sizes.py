"""No Python module of the tree over about 400 lines: each concern keeps a home a reader can
take in at once. A module that grows past the limit is split by what it holds, as the
translator's and the simulator's tests were (their scripts and harness are modules of their own).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 430  # "about 400": room for a docstring, not for a second concern


def sizes() -> dict[str, int]:
    found = {}
    for folder in ("glm_proxy", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            found[str(path.relative_to(ROOT))] = len(path.read_text().splitlines())
    for path in ROOT.glob("*.py"):
        found[path.name] = len(path.read_text().splitlines())
    return found


def test_the_tree_is_read_at_all() -> None:
    found = sizes()
    assert "glm_proxy/services/answer.py" in found and "wsgi.py" in found
    assert "tests/structure/test_module_sizes.py" in found


def test_no_module_is_over_the_limit() -> None:
    over = {name: lines for name, lines in sizes().items() if lines > LIMIT}
    assert over == {}, f"split these by what they hold: {over}"


FUNCTION_LIMIT = 85  # "about 80": a function a reader takes in at once


def test_no_function_is_over_the_limit() -> None:
    over = {}
    for path in (ROOT / "glm_proxy").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > FUNCTION_LIMIT:
                    over[f"{path.relative_to(ROOT)}:{node.name}"] = lines
    assert over == {}, f"split these by what they do: {over}"
