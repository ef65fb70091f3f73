"""Record exactly what an agent CLI sends, to see what a new version added.

Agent CLIs (Claude Code, Codex) change their requests weekly: new fields, beta headers, tool
types, side calls such as ``HEAD /``. This script is a tiny HTTP server on 127.0.0.1 that saves
every request it receives (method, path, headers with secrets masked, JSON body) as one file
per request, and answers each with the smallest valid reply of its API (a one-word text answer,
streamed when asked), so the CLI finishes its turn and shows its whole sequence of calls.

With ``--tool NAME --args JSON`` the first model request is answered with a call of that tool
instead, so the CLI runs it and the second request shows how the CLI sends a tool result back.

With ``--forward URL`` it relays each request to a running server instead (e.g. the proxy
against the simulator) and saves the answer's status too, to see which request fails and why.

Usage, the pinned CLIs (``tests/support/agent_clis.py``) run in an isolated home for one turn::

    python -m tests.agent_cli.capture_cli --run claude --out /tmp/captures \
        --tool Read --args '{"file_path": "note.txt"}'
    python -m tests.agent_cli.capture_cli --run codex --out /tmp/captures \
        --tool exec_command --args '{"cmd": "cat note.txt"}'

or as a server for any client (``--port 8765``, then point the client at
``http://127.0.0.1:8765``; Codex's provider ``base_url`` takes ``/v1``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.agent_cli.capture_answers import anthropic_answer, responses_answer

SECRET_HEADERS = {"authorization", "x-api-key", "cookie", "proxy-authorization"}
HOP_HEADERS = {"host", "content-length", "connection", "transfer-encoding", "accept-encoding"}


def masked(headers: Any) -> dict[str, str]:
    """Headers as a dict, secrets replaced: captures are committed as fixtures."""
    return {k.lower(): ("***" if k.lower() in SECRET_HEADERS else v) for k, v in headers.items()}


class Recorder:
    """Numbers and writes the captures; one file per request, in arrival order."""

    def __init__(
        self, out: Path, prefix: str, forward: str | None, text: str, call: dict | None = None
    ) -> None:
        self.out, self.prefix, self.forward, self.text = out, prefix, forward, text
        self.call = call  # answered once, to the first model request
        self.counter = itertools.count(1)
        self.lock = threading.Lock()
        out.mkdir(parents=True, exist_ok=True)

    def save(self, record: dict) -> Path:
        with self.lock:
            path = self.out / f"{self.prefix}-{next(self.counter)}.json"
        path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
        return path

    def take_call(self) -> dict | None:
        with self.lock:
            call, self.call = self.call, None
        return call


def handler_for(recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            print(f"{self.command} {self.path} -> " + (format % args), flush=True)

        def _handle(self) -> None:
            size = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(size) if size else b""
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = {"_raw": raw.decode(errors="replace")[:2000]}
            record = {
                "method": self.command,
                "path": self.path,
                "headers": masked(self.headers),
                "body": body,
            }
            status, ctype, payload = self._answer(raw, body if isinstance(body, dict) else {})
            record["answer_status"] = status
            if recorder.forward:
                record["answer_excerpt"] = payload[:2000].decode(errors="replace")
            recorder.save(record)
            self.send_response(status)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def _answer(self, raw: bytes, body: dict) -> tuple[int, str, bytes]:
            if recorder.forward:
                return self._relay(raw)
            path = self.path.split("?", 1)[0].rstrip("/")
            if self.command == "POST" and path.endswith("/messages/count_tokens"):
                return 200, "application/json", b'{"input_tokens": 1}'
            if self.command == "POST" and path.endswith("/messages"):
                return (200, *anthropic_answer(body, recorder.text, recorder.take_call()))
            if self.command == "POST" and path.endswith("/responses"):
                return (200, *responses_answer(body, recorder.text, recorder.take_call()))
            if path in ("", "/") and self.command in ("GET", "HEAD"):
                return 200, "application/json", b'{"status": "ok"}'
            return 404, "application/json", b'{"error": {"message": "not captured"}}'

        def _relay(self, raw: bytes) -> tuple[int, str, bytes]:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
            req = urllib.request.Request(
                recorder.forward.rstrip("/") + self.path,
                data=raw or None,
                headers=headers,
                method=self.command,
            )
            try:
                with urllib.request.urlopen(req, timeout=300) as resp:  # noqa: S310 - local
                    return resp.status, resp.headers.get("content-type", ""), resp.read()
            except urllib.error.HTTPError as err:
                return err.code, err.headers.get("content-type", ""), err.read()

        do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _handle

    return Handler


def serve(port: int, recorder: Recorder) -> ThreadingHTTPServer:
    """A started capture server (its thread is a daemon); ``shutdown()`` stops it."""
    server = ThreadingHTTPServer(("127.0.0.1", port), handler_for(recorder))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def run_cli(name: str, port: int, prompt: str, plain: bool = False) -> int:
    """Run one pinned CLI turn against the capture server, in a throwaway home and project.

    ``plain``: only what a user sets (base URL, key, the Codex config of docs/clients.md), none
    of the quiet settings, to see everything the CLI does by default. It then tries to reach
    the internet too: use it only where nothing can leave (``unshare -n``, see the docs).
    """
    import tempfile

    from tests.support import agent_clis

    with tempfile.TemporaryDirectory(prefix="capture-") as scratch:
        home, work = Path(scratch) / "home", Path(scratch) / "project"
        work.mkdir()
        (work / "note.txt").write_text("The secret word is glmword-000000000000.\n")
        server, key = f"http://127.0.0.1:{port}", "sk-capture"
        if name == "claude":
            env, cmd = agent_clis.claude_env(home, server, key), agent_clis.claude_command(prompt)
            if plain:
                env = {
                    **agent_clis.base_env(home),
                    "ANTHROPIC_BASE_URL": server,
                    "ANTHROPIC_API_KEY": key,
                }
        else:
            env, cmd = agent_clis.codex_env(home, server, key), agent_clis.codex_command(prompt)
            if plain:
                (home / ".codex" / "config.toml").write_text(
                    agent_clis.codex_config(agent_clis.CODEX_MODEL, server, quiet=False)
                )
                env = {
                    **agent_clis.base_env(home),
                    "CODEX_HOME": str(home / ".codex"),
                    "GLM_PROXY_API_KEY": key,
                }
        result = agent_clis.run(cmd, work, env)
    print(f"{name} exited {result.returncode}\n{result.stdout}{result.stderr}", flush=True)
    return result.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--out", type=Path, default=Path("captures"))
    parser.add_argument("--prefix", default="capture", help="file names: <prefix>-<n>.json")
    parser.add_argument("--forward", help="relay to this server instead of answering")
    parser.add_argument("--text", default="ok", help="the canned answer's text")
    parser.add_argument("--tool", help="answer the first model request with a call of this tool")
    parser.add_argument("--args", default="{}", help="the tool call's arguments (JSON object)")
    parser.add_argument("--namespace", help="Responses only: the called tool's namespace")
    parser.add_argument("--run", choices=("claude", "codex"), help="run this pinned CLI once")
    parser.add_argument("--prompt", default="What is the secret word in note.txt?")
    parser.add_argument(
        "--plain",
        action="store_true",
        help="with --run: a user's bare setup (only inside `unshare -n`)",
    )
    args = parser.parse_args()
    call = None
    if args.tool:
        call = {"name": args.tool, "arguments": json.loads(args.args), "namespace": args.namespace}
    prefix = args.prefix if args.prefix != "capture" or not args.run else args.run
    server = serve(args.port, Recorder(args.out, prefix, args.forward, args.text, call))
    print(f"capturing on http://127.0.0.1:{args.port} into {args.out}", flush=True)
    if args.run:
        code = run_cli(args.run, args.port, args.prompt, args.plain)
        server.shutdown()
        raise SystemExit(code)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()


if __name__ == "__main__":
    main()
