"""`orchestra demo`, run as the real executable: the page's origin is the demo's own backend,
which mints session tokens through the real gateway; the app's `orc_` token never leaves it.

The old demo wrote the app token into the page's `config.json`, where anyone could copy it:
`test_config_json_carries_no_token` failed on it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.gateway.http.conftest import child_env, free_port

ORCHESTRA = Path(sys.executable).parent / "orchestra"
SESSION_PATH = "/api/orchestra/session"
START_WITHIN_S = 90.0


@dataclass
class Demo:
    origin: str
    process: subprocess.Popen[str]


def _wait_until_serving(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + START_WITHIN_S
    while time.monotonic() < deadline:
        assert process.poll() is None, "the demo exited before it served its page"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {START_WITHIN_S} s")


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in for the built Angular demo (the backend serves whatever is there)."""
    site = tmp_path_factory.mktemp("ui")
    (site / "index.html").write_text("<!doctype html><title>demo</title><app-root></app-root>")
    return site


@pytest.fixture(scope="module")
def demo(ui: Path) -> Iterator[Demo]:
    port = free_port()
    with subprocess.Popen(
        [str(ORCHESTRA), "demo", "--port", str(port), "--ui", str(ui), "--token-ms", "0"],
        env=child_env({}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        running = Demo(origin=f"http://127.0.0.1:{port}", process=process)
        try:
            _wait_until_serving(f"{running.origin}/config.json", process)
            yield running
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _mint(client: httpx.Client, origin: str) -> httpx.Response:
    return client.post(f"{origin}{SESSION_PATH}", headers={"Origin": origin})


def test_config_json_carries_no_token(demo: Demo) -> None:
    response = httpx.get(f"{demo.origin}/config.json")

    assert response.status_code == 200
    assert "orc_" not in response.text
    config = response.json()
    assert set(config) == {"baseUrl", "sessionUrl", "notice"}
    assert config["sessionUrl"] == SESSION_PATH
    assert config["notice"].startswith("Demo model:")
    # The gateway is another origin; the page calls it with CORS.
    assert config["baseUrl"].startswith("http://127.0.0.1:")
    assert config["baseUrl"] != demo.origin
    assert response.headers["cache-control"] == "no-store"


def test_the_first_visit_gets_a_pseudonymous_user_cookie(demo: Demo) -> None:
    page = httpx.get(f"{demo.origin}/")

    assert page.status_code == 200
    assert "<app-root>" in page.text
    cookie = page.headers["set-cookie"]
    assert cookie.startswith("demo_user=u-")
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    again = httpx.get(f"{demo.origin}/", cookies=page.cookies)
    assert "set-cookie" not in again.headers, "a known browser keeps its user"


def test_the_backend_mints_a_session_the_gateway_accepts(demo: Demo) -> None:
    config = httpx.get(f"{demo.origin}/config.json").json()
    gateway = config["baseUrl"]
    with httpx.Client() as browser:
        browser.get(f"{demo.origin}/")
        user = browser.cookies["demo_user"]
        minted = _mint(browser, demo.origin)
        again = _mint(browser, demo.origin)

    assert minted.status_code == 200, minted.text
    assert minted.headers["cache-control"] == "no-store"
    assert "access-control-allow-origin" not in minted.headers
    session = minted.json()
    assert set(session) == {"token", "expires_at"}
    assert "orc_" not in minted.text
    assert session["token"].count(".") == 2  # a JWT, not the app token
    assert again.json()["token"] != session["token"]

    headers = {"Authorization": f"Bearer {session['token']}", "Origin": demo.origin}
    with httpx.stream(
        "POST", f"{gateway}/ask", json={"prompt": "hello [tokens:3]"}, headers=headers
    ) as answer:
        body = answer.read().decode()
    assert answer.status_code == 200, body
    assert answer.headers["access-control-allow-origin"] == demo.origin
    assert "event: done" in body
    # A session is an end user's: it may ask, but not read the app's logs.
    logs = httpx.get(f"{gateway}/logs", headers=headers)
    assert logs.status_code == 403
    assert logs.json()["error"]["code"] == "insufficient_scope"
    assert user.startswith("u-")


def test_the_demo_model_answers_in_markdown_and_takes_feedback(demo: Demo) -> None:
    """The demo's fake runs in readable mode: a heading, a table and a fenced code block for
    the renderer to show; the answer can be rated from the page's origin."""
    gateway = httpx.get(f"{demo.origin}/config.json").json()["baseUrl"]
    with httpx.Client() as browser:
        token = _mint(browser, demo.origin).json()["token"]
    headers = {"Authorization": f"Bearer {token}", "Origin": demo.origin}
    answer = httpx.post(
        f"{gateway}/ask", json={"prompt": "quotas?", "stream": False}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    text = answer.json()["text"]
    assert text.startswith("### ") and "\n| --- |" in text and "\n```bash\n" in text, text
    rating = {"request_id": answer.json()["request_id"], "score": 1, "comment": "Nice table"}
    rated = httpx.post(f"{gateway}/feedback", json=rating, headers=headers)
    assert rated.status_code == 204, rated.text
    assert rated.headers["access-control-allow-origin"] == demo.origin


def test_a_browser_without_the_cookie_gets_one_with_its_session(demo: Demo) -> None:
    with httpx.Client() as browser:
        minted = _mint(browser, demo.origin)

    assert minted.status_code == 200
    assert minted.headers["set-cookie"].startswith("demo_user=u-")


def test_only_post_mints(demo: Demo) -> None:
    refused = httpx.get(f"{demo.origin}{SESSION_PATH}")

    assert refused.status_code == 405
    assert "token" not in refused.json()


def test_a_backend_whose_token_the_gateway_refuses_answers_502_without_detail(
    demo: Demo, ui: Path
) -> None:
    gateway = httpx.get(f"{demo.origin}/config.json").json()["baseUrl"]
    port = free_port()
    command = ["demo-backend", "--port", str(port), "--gateway", gateway, "--ui", str(ui)]
    with subprocess.Popen(
        [str(ORCHESTRA), *command],
        env=child_env({}),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as backend:
        assert backend.stdin is not None
        backend.stdin.write("orc_not_a_real_token\n")
        backend.stdin.close()
        origin = f"http://127.0.0.1:{port}"
        try:
            _wait_until_serving(f"{origin}/config.json", backend)
            with httpx.Client() as browser:
                refused = _mint(browser, origin)
        finally:
            backend.terminate()
            backend.wait(timeout=30)
        assert backend.stdout is not None
        assert backend.stderr is not None
        out, err = backend.stdout.read(), backend.stderr.read()

    assert refused.status_code == 502
    assert refused.json()["error"]["code"] == "session_unavailable"
    assert "orc_" not in refused.text
    assert "orc_" not in out + err, "the app token in the backend's output"
    assert "HTTP 401" in err


def test_the_demo_never_prints_the_app_token(demo: Demo) -> None:
    # Last in this module: it stops the demo to read everything it printed.
    demo.process.send_signal(signal.SIGTERM)
    out, err = demo.process.communicate(timeout=30)

    assert f"Orchestra demo: {demo.origin}/" in out + err
    assert "orc_" not in out + err
