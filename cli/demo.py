"""`orchestra demo`: the OpenAI fake, the gateway on SQLite and the Angular demo, in one command.

Everything lives in a temporary ORCHESTRA_HOME that is deleted on exit; Ctrl+C stops it all.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from cli import listener, output
from cli.errors import fail
from gateway.core.errors import ConfigurationError

_FRONTEND = Path(__file__).resolve().parent.parent / "frontend"
_BUILT_UI = _FRONTEND / "dist" / "demo" / "browser"
#: Said on the page and in the terminal: a newcomer must not take the fake's answers for a bug.
DEMO_NOTICE = (
    "Demo model: the answers come from Orchestra's bundled stand-in for OpenAI, not from a "
    "real model. Point an app at OpenAI (see the README) for real answers."
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _orchestra(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli", *args]


def _wait_for(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            fail(ConfigurationError(f"The {what} exited before it was ready (see above)."))
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    fail(ConfigurationError(f"The {what} did not start within 30 s."))


def _ensure_ui(ui: Path | None) -> Path:
    if ui is not None:
        if not (ui / "index.html").is_file():
            fail(ConfigurationError(f"--ui {ui}: no index.html there."))
        return ui
    if (_BUILT_UI / "index.html").is_file():
        return _BUILT_UI
    npm = shutil.which("npm")
    if npm is None or not (_FRONTEND / "package.json").is_file():
        fail(
            ConfigurationError(
                "The demo UI is not built and Node.js/npm is not available to build it. "
                f"Install Node.js 20+, then run: cd {_FRONTEND} && npm ci && npm run build"
            )
        )
    output.print_info("Building the demo UI (once; about a minute)...")
    if not (_FRONTEND / "node_modules").is_dir():
        subprocess.run([npm, "ci", "--loglevel=error"], cwd=_FRONTEND, check=True)
    subprocess.run([npm, "run", "build"], cwd=_FRONTEND, check=True)
    return _BUILT_UI


def demo(
    port: Annotated[int, typer.Option("--port", help="Port of the gateway (and the UI).")] = 8000,
    token_ms: Annotated[
        float, typer.Option("--token-ms", min=0, help="Delay between streamed tokens.")
    ] = 40.0,
    ui: Annotated[Path | None, typer.Option("--ui", help="A built demo UI to serve.")] = None,
) -> None:
    """Start the fake OpenAI, the gateway and the demo UI; print the URL to open."""
    try:  # before the UI build and the children: a busy port is one error, at once
        listener.probe("127.0.0.1", port)
    except ConfigurationError as exc:
        fail(exc)
    built = _ensure_ui(ui)
    # SIGTERM (e.g. from a supervisor) stops the demo like Ctrl+C: children are cleaned up.
    signal.signal(signal.SIGTERM, _interrupt)
    home = Path(tempfile.mkdtemp(prefix="orchestra-demo-"))
    env = {**_clean_env(), "ORCHESTRA_HOME": str(home / "home"), "ORCHESTRA_LOG_LEVEL": "WARNING"}
    fake_port = _free_port()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        subprocess.run(_orchestra("init"), env=env, check=True, capture_output=True)
        fake = subprocess.Popen(
            _orchestra("fake-openai", "--port", str(fake_port), "--token-ms", str(token_ms)),
            env=env,
            stdout=subprocess.DEVNULL,
        )
        processes.append(fake)
        _wait_for(f"http://127.0.0.1:{fake_port}/_fake/health", fake, "OpenAI fake")
        origin = f"http://127.0.0.1:{port}"
        added = subprocess.run(
            _orchestra(
                "apps",
                "add",
                "demo",
                "--origin",
                origin,
                "--origin",
                f"http://localhost:{port}",
                "--base-url",
                f"http://127.0.0.1:{fake_port}/v1",
                "--openai-key-stdin",
                "--json",
            ),
            env=env,
            input=b"sk-demo\n",
            check=True,
            capture_output=True,
        )
        token = json.loads(added.stdout)["token"]
        site = home / "ui"
        shutil.copytree(built, site)
        # The UI reads its gateway URL and token here; "" means "this page's origin".
        (site / "config.json").write_text(
            json.dumps({"baseUrl": "", "token": token, "notice": DEMO_NOTICE})
        )
        gateway = subprocess.Popen(
            _orchestra("serve", "--port", str(port), "--ui", str(site)),
            env=env,
            stdout=subprocess.DEVNULL,
        )
        processes.append(gateway)
        _wait_for(f"{origin}/status", gateway, "gateway")
        output.print_info(f"Orchestra demo: {origin}/")
        output.print_info(DEMO_NOTICE)
        output.print_info("Press Ctrl+C to stop.")
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
        fail(ConfigurationError("A demo process stopped unexpectedly."))
    except KeyboardInterrupt:
        output.print_info("Stopping the demo.")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(home, ignore_errors=True)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _clean_env() -> dict[str, str]:
    from gateway.settings import environment_without_orchestra

    return environment_without_orchestra()
