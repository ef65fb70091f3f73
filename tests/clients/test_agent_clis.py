"""Claude Code and Codex, as shipped at their pinned versions, do a full agent turn through the
server: the model asks the CLI to read a file, the CLI runs its own tool and sends the result
back, the model quotes it, the CLI prints the answer and exits 0.

Nothing is turned off: each CLI sends its whole default request (Claude Code's mid-conversation
system messages and two dozen tools, Codex's namespace and web_search tools), as a user's first
run would. The file holds a random word that appears in no prompt the test writes: it reaches the
model only inside the tool result the CLI sends back, and the scripted second answer quotes it
(``echo``), so the word in the CLI's output proves the round trip.

Skipped only without node/npm; the pinned CLIs are installed on first use (``.ci/run`` does it
before the tests). docs/agent-cli-tests.md says how to bump the pins.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from tests.support import agent_clis
from tests.support.tools import call_block, invoke, script, stream_requests

pytestmark = pytest.mark.skipif(
    bool(agent_clis.node_tools_missing()),
    reason=agent_clis.node_tools_missing() or "node and npm found",
)

WORD = r"(glmword-[0-9a-f]{12})"
QUOTE = {"text": "The secret word in the file is {echo}.", "echo": WORD}


@pytest.fixture(scope="module")
def clis() -> None:
    agent_clis.install()  # a no-op when the pinned versions are cached


@pytest.fixture
def workdir(tmp_path: Path) -> tuple[Path, str]:
    """A project folder with one file holding a fresh random word."""
    work = tmp_path / "project"
    work.mkdir()
    word = f"glmword-{secrets.token_hex(6)}"
    (work / "note.txt").write_text(f"The secret word is {word}.\n")
    return work, word


def report(result, proxy) -> str:
    """What to look at when a run fails: the CLI's own output and the server's log."""
    logs = proxy.logs().splitlines()[-40:]
    return (
        f"exit {result.returncode}\n--- stdout\n{result.stdout[-3000:]}\n--- stderr\n"
        f"{result.stderr[-3000:]}\n--- server log (tail)\n" + "\n".join(logs)
    )


def assert_round_trip(result, word: str, proxy, simulator, token: str) -> None:
    asked = stream_requests(simulator, token)
    assert result.returncode == 0, report(result, proxy)
    assert word in result.stdout, report(result, proxy)
    assert len(asked) >= 2, f"one model turn only: {report(result, proxy)}"


def test_claude_code_reads_a_file_and_quotes_it(clis, proxy, simulator, token, workdir, tmp_path):
    work, word = workdir
    read = call_block(invoke("Read", file_path=str(work / "note.txt")))
    script(simulator, token, read, QUOTE)
    env = agent_clis.claude_env(tmp_path / "home", proxy.base, token)
    prompt = "What is the secret word in note.txt? Read the file to find out."
    result = agent_clis.run(agent_clis.claude_command(prompt), work, env)
    assert_round_trip(result, word, proxy, simulator, token)


def test_codex_runs_a_shell_command_and_quotes_it(clis, proxy, simulator, token, workdir, tmp_path):
    work, word = workdir
    shell = call_block(invoke("exec_command", cmd="cat note.txt"))
    script(simulator, token, shell, QUOTE)
    env = agent_clis.codex_env(tmp_path / "home", proxy.base, token)
    prompt = "What is the secret word in note.txt? Run a shell command to read it."
    result = agent_clis.run(agent_clis.codex_command(prompt), work, env)
    assert_round_trip(result, word, proxy, simulator, token)


def test_codex_output_schema_answers_after_a_tool_call(
    clis, proxy, simulator, token, workdir, tmp_path
):
    """``codex exec --output-schema``: the schema is for the final answer, not the tool turn."""
    work, word = workdir
    schema = {
        "type": "object",
        "properties": {"word": {"type": "string"}},
        "required": ["word"],
        "additionalProperties": False,
    }
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    shell = call_block(invoke("exec_command", cmd="cat note.txt"))
    script(simulator, token, shell, {"text": '{"word": "{echo}"}', "echo": WORD})
    env = agent_clis.codex_env(tmp_path / "home", proxy.base, token)
    prompt = "What is the secret word in note.txt? Run a shell command to read it."
    cmd = agent_clis.codex_command(prompt, "--output-schema", str(tmp_path / "schema.json"))
    result = agent_clis.run(cmd, work, env)
    assert_round_trip(result, word, proxy, simulator, token)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"word": word}


def test_codex_runs_a_call_of_a_namespaced_tool(clis, proxy, simulator, token, workdir, tmp_path):
    """A member of Codex's ``multi_agent_v1`` namespace tool, called by the model, reaches
    Codex as a call it runs: the tool's own error for an unknown agent id comes back, not
    Codex's "unsupported call" for a call it cannot route."""
    work, _ = workdir
    close = call_block(invoke("multi_agent_v1__close_agent", target="no-such-agent"))
    outcome = r"(invalid agent id|unsupported call|agent not found|not found)"
    script(simulator, token, close, {"text": "Codex said: {echo}.", "echo": outcome})
    env = agent_clis.codex_env(tmp_path / "home", proxy.base, token)
    result = agent_clis.run(agent_clis.codex_command("Close the agent no-such-agent."), work, env)
    assert result.returncode == 0, report(result, proxy)
    assert "Codex said: " in result.stdout, report(result, proxy)
    assert "unsupported call" not in result.stdout, report(result, proxy)
    assert "(no match" not in result.stdout, report(result, proxy)


def test_codex_with_its_own_default_model_runs_code(clis, proxy, simulator, token, tmp_path):
    """No ``model`` in config.toml: Codex picks its own (a ``gpt-*`` name the server maps) and
    sends its tools as an ``additional_tools`` input item, its only tool for work a free-text
    ``exec`` tool that runs JavaScript. The script builds the word at run time, so only the
    tool's output, not the call, holds it."""
    work = tmp_path / "project"
    work.mkdir()
    hexpart = secrets.token_hex(6)
    code = f'text(["glmword", "{hexpart}"].join("-"));'
    script(simulator, token, call_block(invoke("exec", input=code)), QUOTE)
    env = agent_clis.codex_env(tmp_path / "home", proxy.base, token, model=None)
    result = agent_clis.run(
        agent_clis.codex_command("Run a script that prints the word."), work, env
    )
    assert_round_trip(result, f"glmword-{hexpart}", proxy, simulator, token)


def test_claude_code_json_schema_after_a_tool_call(
    clis, proxy, simulator, token, workdir, tmp_path
):
    """``claude -p --json-schema``: Claude Code offers a StructuredOutput tool for the answer."""
    work, word = workdir
    schema = {
        "type": "object",
        "properties": {"word": {"type": "string"}},
        "required": ["word"],
        "additionalProperties": False,
    }
    read = call_block(invoke("Read", file_path=str(work / "note.txt")))
    structured = call_block(invoke("StructuredOutput", word="{echo}"))
    script(simulator, token, read, {"text": structured, "echo": WORD}, "Done.")
    env = agent_clis.claude_env(tmp_path / "home", proxy.base, token)
    prompt = "What is the secret word in note.txt? Read the file to find out."
    cmd = agent_clis.claude_command(
        prompt, "--output-format", "json", "--json-schema", json.dumps(schema)
    )
    result = agent_clis.run(cmd, work, env)
    assert_round_trip(result, word, proxy, simulator, token)
    assert json.loads(result.stdout)["structured_output"] == {"word": word}, report(result, proxy)
