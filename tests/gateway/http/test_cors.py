"""CORS per app: preflights, allowed and refused origins, headers on errors too."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import httpx
import pytest

from tests.gateway.http.conftest import AppHandle, Apps, Fake, Gateway, assert_error, poll

pytestmark = pytest.mark.anyio

# The gateway caches the set of known origins for a couple of seconds; a new app's origin is
# accepted within that bound.
ORIGIN_CACHE_BOUND_S = 4.0


def new_origin() -> str:
    return f"http://app-{secrets.token_hex(4)}.test:4200"


async def preflight(
    client: httpx.AsyncClient, origin: str, *, path: str = "/ask"
) -> httpx.Response:
    return await client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


def comma_set(value: str) -> set[str]:
    return {part.strip().lower() for part in value.split(",") if part.strip()}


def assert_cors(response: httpx.Response, origin: str) -> None:
    assert response.headers["access-control-allow-origin"] == origin, response.headers
    exposed = comma_set(response.headers["access-control-expose-headers"])
    assert {"x-request-id", "retry-after"} <= exposed
    assert "origin" in comma_set(response.headers.get("vary", ""))


@dataclass(frozen=True)
class Tenants:
    first: AppHandle  # origins: first_origin, extra_origin
    second: AppHandle  # origin: second_origin
    to_disable: AppHandle  # origin: disabled_origin
    first_origin: str
    extra_origin: str
    second_origin: str
    disabled_origin: str


@pytest.fixture(scope="module")
async def tenants(gateway: Gateway, fake: Fake, issued_secrets: set[str]) -> Tenants:
    """Apps with origins, registered once: the wait for the origin cache is paid once."""
    apps = Apps(gateway, fake, issued_secrets, prefix="cors")
    first_origin, extra_origin, second_origin, disabled_origin = (new_origin() for _ in range(4))
    tenants = Tenants(
        first=await apps.add(origins=(first_origin, extra_origin)),
        second=await apps.add(origins=(second_origin,)),
        to_disable=await apps.add(origins=(disabled_origin,)),
        first_origin=first_origin,
        extra_origin=extra_origin,
        second_origin=second_origin,
        disabled_origin=disabled_origin,
    )
    async with gateway.client() as client:
        for origin in (first_origin, extra_origin, second_origin, disabled_origin):

            async def get(origin: str = origin) -> httpx.Response:
                return await preflight(client, origin)

            await poll(get, lambda r: r.status_code == 204, timeout=ORIGIN_CACHE_BOUND_S)
    return tenants


async def test_preflight_for_an_allowed_origin(client: httpx.AsyncClient, tenants: Tenants) -> None:
    for origin in (tenants.first_origin, tenants.extra_origin):
        for path in ("/ask", "/v1/chat/completions", "/logs"):
            response = await preflight(client, origin, path=path)
            assert response.status_code == 204, (path, response.text)
            assert response.content == b""
            assert response.headers["access-control-allow-origin"] == origin
            methods = comma_set(response.headers["access-control-allow-methods"])
            assert {"post", "options"} <= methods
            allowed = comma_set(response.headers["access-control-allow-headers"])
            assert {"authorization", "content-type", "traceparent", "tracestate"} <= allowed
            assert "origin" in comma_set(response.headers["vary"])
            assert response.headers["x-request-id"].startswith("req_")


async def test_preflight_for_an_unknown_origin_is_403(
    client: httpx.AsyncClient, tenants: Tenants
) -> None:
    for origin in ("http://evil.test", tenants.first_origin + "0", "null"):
        response = await preflight(client, origin)
        assert_error(response, 403, "origin_not_allowed")
        assert "access-control-allow-origin" not in response.headers


async def test_a_disabled_apps_origin_is_no_longer_accepted(
    client: httpx.AsyncClient, apps: Apps, tenants: Tenants
) -> None:
    await apps.set_disabled(tenants.to_disable, disabled=True)

    async def get() -> httpx.Response:
        return await preflight(client, tenants.disabled_origin)

    await poll(get, lambda r: r.status_code == 403, timeout=ORIGIN_CACHE_BOUND_S)


async def ask(
    client: httpx.AsyncClient, app: AppHandle, origin: str | None, body: object = None
) -> httpx.Response:
    headers = dict(app.auth)
    if origin is not None:
        headers["Origin"] = origin
    return await client.post(
        "/ask", json={"prompt": "hi", "stream": False} if body is None else body, headers=headers
    )


async def test_a_post_from_the_apps_origin_is_answered_with_cors_headers(
    client: httpx.AsyncClient, tenants: Tenants
) -> None:
    for origin in (tenants.first_origin, tenants.extra_origin):
        response = await ask(client, tenants.first, origin)
        assert response.status_code == 200, response.text
        assert_cors(response, origin)

    origin = tenants.first_origin
    async with client.stream(
        "POST", "/ask", json={"prompt": "hi"}, headers={**tenants.first.auth, "Origin": origin}
    ) as streamed:
        assert streamed.status_code == 200
        assert streamed.headers["content-type"].startswith("text/event-stream")
        assert_cors(streamed, origin)
        await streamed.aread()


async def test_a_post_from_another_apps_origin_is_403(
    client: httpx.AsyncClient, tenants: Tenants
) -> None:
    response = await ask(client, tenants.first, tenants.second_origin)
    assert_error(response, 403, "origin_not_allowed")
    # The origin is known to the gateway, so the browser may read the error.
    assert_cors(response, tenants.second_origin)
    assert_error(await ask(client, tenants.second, tenants.first_origin), 403, "origin_not_allowed")
    assert_error(await ask(client, tenants.first, "http://evil.test"), 403, "origin_not_allowed")


async def test_requests_without_an_origin_are_allowed(
    client: httpx.AsyncClient, tenants: Tenants
) -> None:
    response = await ask(client, tenants.first, None)
    assert response.status_code == 200, response.text
    assert "access-control-allow-origin" not in response.headers


async def test_an_app_without_origins_refuses_browsers(
    client: httpx.AsyncClient, apps: Apps, tenants: Tenants
) -> None:
    app = await apps.add()
    assert_error(await ask(client, app, tenants.first_origin), 403, "origin_not_allowed")
    assert (await ask(client, app, None)).status_code == 200


async def test_error_responses_to_allowed_origins_carry_cors_headers(
    client: httpx.AsyncClient, tenants: Tenants
) -> None:
    app, origin = tenants.first, tenants.first_origin
    invalid = await ask(client, app, origin, {"prompt": ""})
    assert_error(invalid, 422, "invalid_request")
    assert_cors(invalid, origin)

    bad_token = await client.post(
        "/ask", json={"prompt": "hi"}, headers={"Origin": origin, "Authorization": "Bearer nope"}
    )
    assert_error(bad_token, 401, "invalid_token")
    assert_cors(bad_token, origin)

    upstream = await ask(client, app, origin, {"prompt": "[fail:429]"})
    assert_error(upstream, 429, "upstream_rate_limited")
    assert_cors(upstream, origin)
    assert upstream.headers["retry-after"] == "1"

    not_found = await client.get("/nowhere", headers={"Origin": origin})
    assert_error(not_found, 404, "not_found")
    assert_cors(not_found, origin)
