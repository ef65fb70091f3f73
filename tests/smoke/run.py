"""Deploy smoke test: does a clean install, started the way the platforms start it, serve?

Run from anywhere with ``python3 tests/smoke/run.py`` (standard library only; ``.ci/run``
runs it). It exists because the test suite runs in the developers' environment, where the
dev requirements can hide a runtime dependency missing from ``requirements.txt``; Render,
Heroku and the Dockerfile install that file alone. Steps, each fatal on failure:

1. the start command is the same in ``Procfile``, ``render.yaml`` and the ``Dockerfile``;
2. a brand-new virtualenv (temp dir, no system site-packages) gets ``requirements.txt`` only;
   ``pip check`` passes; a package installed but not pinned there at that version is
   reported (and fails the run with ``--strict-pins``);
3. the upstream simulator starts (with this interpreter, which has the dev requirements);
4. the ``web:`` line of ``Procfile`` starts through bash, as Heroku does, with the venv first
   on ``PATH``, a scrubbed environment, ``PORT`` and ``GLM_BASE_URL`` pointing at the simulator;
5. ``/healthz`` answers 200;
6. one streamed chat completion over raw HTTP ends with ``data: [DONE]``, carries the
   simulator's text, and the simulator saw the request (so it was *this* server answering)
   and got its conversation deleted;
7. SIGTERM to the process group, as the platforms send it: exit code 0 within the timeout,
   and no traceback in the server log.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SIM_TEXT = "Simulated answer"


class SmokeFailure(Exception):
    """One step of the smoke test failed; the message says which and why."""


def step(text: str) -> None:
    print(f"smoke: {text}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def procfile_web_command(root: Path) -> str:
    """The command of the ``web:`` process type, exactly as written in ``Procfile``."""
    for line in (root / "Procfile").read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() == "web" and command.strip():
            return command.strip()
    raise SmokeFailure("Procfile has no `web:` line")


def check_start_commands(root: Path, web: str) -> None:
    """render.yaml and the Dockerfile must start (and install) the same way as Procfile."""
    render = (root / "render.yaml").read_text()
    starts = re.findall(r"^\s*startCommand:\s*(.+?)\s*$", render, re.M)
    builds = re.findall(r"^\s*buildCommand:\s*(.+?)\s*$", render, re.M)
    if not starts or any(s != web for s in starts):
        raise SmokeFailure(f"render.yaml startCommand {starts} differs from Procfile {web!r}")
    if not builds or any(b != "pip install -r requirements.txt" for b in builds):
        raise SmokeFailure(f"render.yaml buildCommand {builds} must install requirements.txt")
    cmd = re.findall(r"^CMD\s+(\[.*\])\s*$", (root / "Dockerfile").read_text(), re.M)
    if len(cmd) != 1 or json.loads(cmd[0]) != shlex.split(web):
        raise SmokeFailure(f"Dockerfile CMD {cmd} differs from Procfile {web!r}")


def make_venv(root: Path, where: Path, strict_pins: bool) -> Path:
    """A fresh virtualenv with requirements.txt and nothing else; returns its bin dir."""
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = [
        str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--no-input", "-r", str(root / "requirements.txt"),
    ]  # fmt: skip
    for attempt in (1, 2):  # one retry: a registry hiccup is not a missing dependency
        # Captured: pip's warnings about absent local indexes are noise unless it fails.
        done = subprocess.run(install, cwd=root, capture_output=True, text=True)
        if done.returncode == 0:
            break
        sys.stderr.write(done.stdout + done.stderr)
        if attempt == 2:
            raise SmokeFailure("pip install -r requirements.txt failed in a fresh virtualenv")
        step("pip install failed; retrying once")
    probe = "import sys; print(sys.prefix != sys.base_prefix, sys.flags.no_user_site)"
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True)
    if not out.stdout.startswith("True"):
        raise SmokeFailure(f"the virtualenv is not isolated: {out.stdout!r}")
    check = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True)
    if check.returncode != 0:
        raise SmokeFailure(f"pip check: an inconsistent tree: {check.stdout}{check.stderr}")
    unpinned = unpinned_packages(root, python)
    if unpinned and strict_pins:
        raise SmokeFailure(f"installed but not pinned in requirements.txt: {unpinned}")
    if unpinned:
        step(f"warning: installed but not pinned in requirements.txt: {unpinned}")
    return venv / "bin"


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def unpinned_packages(root: Path, python: Path) -> str:
    """Installed packages that requirements.txt does not pin at that version ("" if none).

    An unpinned transitive dependency lets two deploys of the same commit differ.
    """
    pins = {}
    for line in (root / "requirements.txt").read_text().splitlines():
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s;#]+)", line)
        if match:
            pins[normalize(match.group(1))] = match.group(3)
    listing = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json", "--exclude-editable"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    unpinned = [
        f"{dist['name']}=={dist['version']}"
        for dist in json.loads(listing.stdout)
        if normalize(dist["name"]) not in {"pip", "setuptools", "wheel"}
        and pins.get(normalize(dist["name"])) != dist["version"]
    ]
    return " ".join(unpinned)


def wait_http(url: str, proc: subprocess.Popen, timeout: float) -> int:
    """Poll ``url`` until it answers; returns the status. Fails if ``proc`` dies first."""
    deadline = time.monotonic() + timeout
    host, port, path = split_url(url)
    last: object = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SmokeFailure(f"process exited with {proc.returncode} before {url} answered")
        conn = http.client.HTTPConnection(host, port, timeout=2)
        try:
            conn.request("GET", path)
            return conn.getresponse().status
        except OSError as exc:
            last = exc
            time.sleep(0.2)
        finally:
            conn.close()
    raise SmokeFailure(f"{url} did not answer within {timeout:.0f}s ({last})")


def split_url(url: str) -> tuple[str, int, str]:
    match = re.fullmatch(r"http://([^:/]+):(\d+)(/.*)", url)
    assert match, url
    return match.group(1), int(match.group(2)), match.group(3)


def streamed_chat(base: str, token: str) -> str:
    """One streamed chat completion over raw HTTP; returns the text, checks the framing."""
    host, port, _ = split_url(base + "/")
    conn = http.client.HTTPConnection(host, port, timeout=30)
    body = json.dumps(
        {"model": "glm-4", "stream": True, "messages": [{"role": "user", "content": "hello"}]}
    )
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
        resp = conn.getresponse()
        raw = resp.read().decode("utf-8")
        ctype = resp.getheader("Content-Type", "")
    finally:
        conn.close()
    if resp.status != 200 or not ctype.startswith("text/event-stream"):
        raise SmokeFailure(f"chat stream answered {resp.status} {ctype!r}: {raw[:500]!r}")
    data = [line[len("data: ") :] for line in raw.splitlines() if line.startswith("data: ")]
    if not data or data[-1] != "[DONE]":
        raise SmokeFailure(f"the stream does not end with `data: [DONE]`: {raw[-500:]!r}")
    text = ""
    for item in data[:-1]:
        for choice in json.loads(item).get("choices", []):
            text += (choice.get("delta") or {}).get("content") or ""
    if SIM_TEXT not in text:
        raise SmokeFailure(f"the streamed text is not the simulator's answer: {text!r}")
    return text


def sim_state(sim_base: str) -> dict:
    host, port, _ = split_url(sim_base + "/")
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request("GET", "/_sim/state")
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def sim_account(state: dict, token: str) -> dict:
    accounts = state.get("accounts") or {}
    items = accounts.items() if isinstance(accounts, dict) else enumerate(accounts)
    for key, value in items:
        if key == token or value.get("refresh_token") == token:
            return value
    return {}


def check_simulator_saw(sim_base: str, token: str, timeout: float = 10.0) -> None:
    """The answer came through the simulator, and the proxy deleted its conversation."""
    streams = [
        r
        for r in sim_state(sim_base).get("requests", [])
        if r.get("path", "").endswith("/assistant/stream") and r.get("account") == token
    ]
    if not streams:
        raise SmokeFailure("the simulator saw no stream request: was the proxy pointed at it?")
    deadline = time.monotonic() + timeout
    while True:
        account = sim_account(sim_state(sim_base), token)
        if account and not account.get("conversations_alive"):
            return
        if time.monotonic() > deadline:
            raise SmokeFailure(f"the upstream conversation was not deleted: {account}")
        time.sleep(0.2)


def stop_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def run(root: Path, stop_timeout: float, strict_pins: bool) -> None:
    web = procfile_web_command(root)
    step(f"Procfile web: {web}")
    check_start_commands(root, web)
    with tempfile.TemporaryDirectory(prefix="glm-smoke-") as tmp:
        tmp_dir = Path(tmp)
        started = time.monotonic()
        bin_dir = make_venv(root, tmp_dir, strict_pins)
        step(f"fresh virtualenv with requirements.txt only ({time.monotonic() - started:.0f}s)")

        sim_port = free_port()
        sim_base = f"http://127.0.0.1:{sim_port}"
        sim = subprocess.Popen(
            [sys.executable, "-m", "tests.simulator", "--host", "127.0.0.1", "--port",
             str(sim_port), "--era", "E3"],  # the server's default GLM_PROTOCOL is 2026
            cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        server = None
        log_path = tmp_dir / "server.log"
        try:
            wait_http(f"{sim_base}/_sim/state", sim, timeout=30)
            port = free_port()
            env = {
                # Nothing from this environment leaks in (no PYTHONPATH, no REDIS_URL, ...):
                # the platforms give the process PATH, HOME, PORT and the app's settings.
                "PATH": f"{bin_dir}{os.pathsep}/usr/local/bin:/usr/bin:/bin",
                "HOME": str(tmp_dir),
                "LANG": "C.UTF-8",
                "PORT": str(port),
                "HOST": "127.0.0.1",
                "GLM_BASE_URL": f"{sim_base}/chatglm",
            }
            which = subprocess.run(
                ["bash", "-c", f"command -v {shlex.split(web)[0]}"],
                env=env, capture_output=True, text=True,
            )  # fmt: skip
            if not which.stdout.strip().startswith(str(bin_dir)):
                raise SmokeFailure(f"{shlex.split(web)[0]} is not the virtualenv's: {which}")
            with open(log_path, "wb") as log:
                server = subprocess.Popen(
                    ["bash", "-c", web], cwd=root, env=env, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
            base = f"http://127.0.0.1:{port}"
            status = wait_http(f"{base}/healthz", server, timeout=60)
            if status != 200:
                raise SmokeFailure(f"/healthz answered {status}")
            step("/healthz 200")

            token = "rt-smoke-" + uuid.uuid4().hex
            text = streamed_chat(base, token)
            step(f"streamed chat ended with [DONE]: {text[:60]!r}")
            check_simulator_saw(sim_base, token)
            step("the simulator served it and the conversation was deleted")

            os.killpg(server.pid, signal.SIGTERM)
            try:
                code = server.wait(timeout=stop_timeout)
            except subprocess.TimeoutExpired as exc:
                raise SmokeFailure(f"no exit within {stop_timeout:.0f}s of SIGTERM") from exc
            if code != 0:
                raise SmokeFailure(f"the server exited with {code} after SIGTERM")
            logs = log_path.read_text(errors="replace")
            if "Traceback" in logs:
                raise SmokeFailure("the server log has a traceback")
            step(f"SIGTERM: clean exit 0 ({time.monotonic() - started:.0f}s in all)")
        except SmokeFailure:
            if log_path.exists():
                sys.stderr.write("---- server log (tail) ----\n")
                sys.stderr.write(log_path.read_text(errors="replace")[-4000:] + "\n")
            raise
        finally:
            if server is not None:
                stop_group(server)
            sim.terminate()
            sim.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stop-timeout", type=float, default=30.0, help="seconds after SIGTERM")
    parser.add_argument(
        "--strict-pins", action="store_true", help="fail when an installed package is unpinned"
    )
    args = parser.parse_args()
    try:
        run(ROOT, args.stop_timeout, args.strict_pins)
    except SmokeFailure as exc:
        print(f"smoke: FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    print("smoke: passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
