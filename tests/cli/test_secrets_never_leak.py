"""The canary test: after creation, no secret is found in any output or in the database files."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

from tests.cli.conftest import Orchestra, add_app, json_of, ok

ORCHESTRA = Path(sys.executable).parent / "orchestra"


def _database_files(home: Path) -> list[Path]:
    files = [home / "orchestra.db", home / "orchestra.db-wal", home / "orchestra.db-shm"]
    assert files[0].is_file()
    return [path for path in files if path.exists()]


def _variants(secret: str) -> set[bytes]:
    """The secret as it could be written: raw, and in the encodings a dump would use."""
    text = {secret, secret.removeprefix("orc_"), json.dumps(secret)[1:-1]}
    encoded = {value.encode() for value in text}
    encoded |= {value.encode("utf-16-le") for value in text}
    return encoded


def test_the_canary_key_and_token_are_never_seen_after_creation(
    orchestra: Orchestra, home: Path
) -> None:
    ok(orchestra("init"))
    canary = f"sk-canary-{secrets.token_hex(16)}"
    created = json_of(
        orchestra(
            "apps",
            "add",
            "demo",
            "--origin",
            "http://localhost:4200",
            "--openai-key-stdin",
            "--json",
            input=canary + "\n",
        )
    )
    token = created["token"]
    assert token.startswith("orc_")
    assert canary not in json.dumps(created)  # the key is not echoed, even at creation
    issued = json_of(orchestra("tokens", "issue", "demo", "--label", "second", "--json"))
    second = issued["token"]
    ok(orchestra("keys", "set", "demo", input=canary + "\n"))
    add_app(orchestra, "other", key=f"sk-canary-other-{secrets.token_hex(8)}")

    outputs = [
        orchestra("apps", "list"),
        orchestra("apps", "list", "--json"),
        orchestra("apps", "show", "demo"),
        orchestra("apps", "show", "demo", "--json"),
        orchestra("apps", "update", "demo", "--model", "gpt-4.1"),
        orchestra("apps", "update", "demo", "--system-prompt", "Be brief.", "--json"),
        orchestra("apps", "disable", "demo", "--json"),
        orchestra("apps", "enable", "demo"),
        orchestra("tokens", "list", "demo"),
        orchestra("tokens", "list", "demo", "--json"),
        orchestra("tokens", "revoke", issued["id"], "--json"),
        orchestra("tokens", "revoke", issued["id"]),
        orchestra("tokens", "revoke", second),  # the secret by mistake: not echoed back
        orchestra("quotas", "set", "demo", "--rpm", "60", "--json"),
        orchestra("quotas", "show", "demo"),
        orchestra("quotas", "show", "demo", "--json"),
        orchestra("keys", "set", "nope", input=canary + "\n"),
        orchestra("keys", "set", "demo", input=canary + " tail\n"),  # malformed: refused
        orchestra("keys", "rotate-master"),
        orchestra("apps", "show", "demo", "--json"),
        orchestra("db", "upgrade"),
        orchestra("init"),
    ]
    assert [r.exit_code for r in outputs].count(0) == len(outputs) - 3
    everything = "\n".join(r.stdout + "\n" + r.stderr for r in outputs)
    assert "demo" in everything  # the scan looks at real output
    for secret in (canary, token, second):
        assert secret not in everything, secret[:8]
        assert secret.removeprefix("orc_") not in everything

    for path in _database_files(home):
        content = path.read_bytes()
        assert b"demo" in content or path.suffix != ".db"
        for secret in (canary, token, second):
            for variant in _variants(secret):
                assert variant not in content, (path.name, secret[:8])
    # Only the encrypted key and the token's digest are stored.
    assert canary.encode() not in (home / "master.key").read_bytes()


def test_the_installed_console_script_works_end_to_end(tmp_path: Path) -> None:
    """The README's quick start, through the real `orchestra` entry point of the venv."""
    assert ORCHESTRA.is_file(), f"{ORCHESTRA} is not installed (pip install -e .)"
    home = tmp_path / "home"
    env = {"PATH": f"{ORCHESTRA.parent}:/usr/bin:/bin", "ORCHESTRA_HOME": str(home)}
    script = (
        "set -euo pipefail\n"
        "orchestra init\n"
        "orchestra apps add demo --origin http://localhost:4200 --openai-key-stdin <<< sk-test\n"
        "orchestra apps list --json\n"
    )
    done = subprocess.run(
        ["bash", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    tokens = [line for line in done.stdout.splitlines() if line.startswith("orc_")]
    assert len(tokens) == 1
    listed = json.loads(done.stdout[done.stdout.index("[\n") :])
    assert [app["name"] for app in listed] == ["demo"]
    assert listed[0]["origins"] == ["http://localhost:4200"]
    assert listed[0]["has_provider_key"] is True
    assert "sk-test" not in done.stdout + done.stderr
    for path in _database_files(home):
        content = path.read_bytes()
        assert tokens[0].encode() not in content
        assert b"sk-test" not in content
