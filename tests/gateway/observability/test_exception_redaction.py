"""A logged exception's text (and its causes') reaches neither sink with a secret in it.

The stderr sink scrubs its finished lines; the log file does not go through that writer, so
before this the text of an exception (``str(exc)``, added by the formatter after the patcher)
was written to the file as it was. ``configure_logging`` runs in a child process, as in
test_logging.py, so that this process's logging is left alone.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.core.redact import redact_text
from gateway.observability.exceptions import scrubbed

ROOT = Path(__file__).resolve().parents[3]

_SCRIPT = textwrap.dedent(
    """
    import sys
    from loguru import logger
    from gateway.observability.logging import configure_logging

    fmt, log_file, key, token = sys.argv[1:5]
    configure_logging(level="INFO", fmt=fmt, file=log_file)

    class UpstreamSaid(Exception):
        pass

    try:
        try:
            raise KeyError("the key was " + key)
        except KeyError as cause:
            error = UpstreamSaid("refused " + key)
            error.add_note("presented: Bearer " + token)
            raise error from cause
    except UpstreamSaid:
        logger.exception("upstream call failed")
    try:
        raise ValueError("nothing secret here")
    except ValueError:
        logger.exception("plain failure")
    logger.complete()
    """
)


@pytest.mark.parametrize("fmt", ["json", "human"])
def test_an_exception_quoting_secrets_is_redacted_in_the_file_and_on_stderr(
    fmt: str, tmp_path: Path
) -> None:
    log_file = tmp_path / "gateway.jsonl"
    key = "sk-proj-" + secrets.token_urlsafe(40)
    token = "orc_" + secrets.token_urlsafe(24)
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, fmt, str(log_file), key, token],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
    )
    assert done.returncode == 0, done.stderr
    written = log_file.read_text()
    for text in (written, done.stderr):
        assert key not in text and key[8:20] not in text
        assert token not in text and token[4:16] not in text
        # The traceback reads as before: class names, the chain, the frames, the words.
        assert "UpstreamSaid: refused [redacted]" in text
        assert "KeyError" in text and "the key was [redacted]" in text
        assert "direct cause" in text
        assert "ValueError: nothing secret here" in text
    lines = [json.loads(line) for line in written.splitlines()]
    failed = next(ln["record"] for ln in lines if ln["record"]["message"] == "upstream call failed")
    assert failed["exception"]["type"] == "UpstreamSaid"
    assert failed["exception"]["value"] == "refused [redacted]"


def test_an_exception_without_secrets_is_kept_as_it_is() -> None:
    error = ValueError("nothing secret")
    assert scrubbed(error, redact_text) is None


def test_a_stand_in_keeps_the_chain_and_the_frames() -> None:
    key = "sk-" + secrets.token_urlsafe(30)
    with pytest.raises(RuntimeError) as caught:
        try:
            raise OSError(f"cannot reach {key}")
        except OSError as cause:
            raise RuntimeError("wrapped") from cause
    error = caught.value
    twin = scrubbed(error, redact_text)
    assert twin is not None
    assert type(twin).__name__ == "RuntimeError" and str(twin) == "wrapped"
    assert twin.__traceback__ is error.__traceback__
    assert twin.__cause__ is not None
    assert str(twin.__cause__) == "cannot reach [redacted]"
    assert type(twin.__cause__).__name__ == "OSError"
