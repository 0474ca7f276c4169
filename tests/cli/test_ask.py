"""`orchestra ask` without a usable token: a clear usage error, and nothing sent.

It used to send `Authorization: Bearer ` to the gateway and report the transport's complaint,
"Cannot reach the gateway at …: LocalProtocolError".
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import Orchestra, fails


@pytest.fixture
def listening() -> Iterator[tuple[str, socket.socket]]:
    """A URL whose server never answers, and its socket, to see whether anything connected."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        yield f"http://127.0.0.1:{server.getsockname()[1]}", server


def connected(server: socket.socket) -> bool:
    try:
        server.accept()[0].close()
    except BlockingIOError:
        return False
    return True


@pytest.mark.parametrize("token", [None, "", "   "], ids=["absent", "empty", "blank"])
def test_no_token_is_a_usage_error_and_nothing_is_sent(
    orchestra: Orchestra, home: Path, listening: tuple[str, socket.socket], token: str | None
) -> None:
    url, server = listening
    args = ["ask", "--url", url, "Hello"] + ([] if token is None else ["--token", token])
    fails(orchestra(*args), 2, "no token: pass --token or set ORCHESTRA_TOKEN")
    assert not connected(server)


def test_a_token_a_header_cannot_carry_is_refused_without_echoing_it(
    orchestra: Orchestra, home: Path, listening: tuple[str, socket.socket]
) -> None:
    url, server = listening
    token = "orc_secret\nvalue"
    result = fails(orchestra("ask", "--url", url, "--token", token, "Hi"), 2, "copy it again")
    assert "orc_secret" not in result.stderr
    assert not connected(server)


def test_the_token_is_read_from_orchestra_token(
    orchestra: Orchestra, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("ORCHESTRA_TOKEN", "orc_" + "x" * 40)
    # Past the token check: the request is attempted, and the dead gateway is the error.
    fails(orchestra("ask", "--url", f"http://127.0.0.1:{port}", "Hi"), 1, "Cannot reach")
