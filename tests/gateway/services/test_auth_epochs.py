"""Auth epochs: every change bumps the app's epoch; a process's view follows polls and
announcements, never goes backwards, and marks removed apps (issue #21)."""

from __future__ import annotations

import pytest

from gateway.services import apps as app_service
from gateway.services import tokens as token_service
from gateway.services.auth_epochs import REMOVED, Announcer, AuthEpochs
from gateway.storage import apps as app_rows
from gateway.storage.database import Database
from gateway.storage.epoch_channel import parse

pytestmark = pytest.mark.anyio


async def register(database: Database, name: str) -> app_service.RegisteredApp:
    return await app_service.register_app(
        database,
        None,
        name=name,
        changes=app_service.AppChanges(),
        defaults=app_service.AppDefaults(
            model="gpt-4o-mini", base_url="https://api.openai.com/v1", max_output_tokens=256
        ),
    )


async def epoch_of(database: Database, app_id: str) -> int | None:
    async with database.read() as session:
        return (await app_rows.auth_epochs(session, [app_id])).get(app_id)


class Heard(Announcer):
    def __init__(self) -> None:
        super().__init__()
        self.heard: list[tuple[str, int]] = []

    async def announce(self, app_id: str, epoch: int) -> None:
        self.heard.append((app_id, epoch))


async def test_every_change_bumps_the_epoch_and_is_announced(database: Database) -> None:
    registered = await register(database, "bumped")
    app_id = registered.app.id
    heard = Heard()
    assert await epoch_of(database, app_id) == 0
    await token_service.revoke_token(database, registered.token.info.id, announcer=heard)
    await token_service.revoke_token(database, registered.token.info.id, announcer=heard)  # no-op
    await app_service.set_disabled(database, "bumped", disabled=True, announcer=heard)
    await app_service.set_disabled(database, "bumped", disabled=False, announcer=heard)
    await app_service.update_app(
        database, "bumped", app_service.AppChanges(model="gpt-4o"), announcer=heard
    )
    assert await epoch_of(database, app_id) == 4
    await app_service.remove_app(database, "bumped", announcer=heard)
    assert await epoch_of(database, app_id) is None
    assert heard.heard == [(app_id, 1), (app_id, 2), (app_id, 3), (app_id, 4), (app_id, REMOVED)]


async def test_a_verdict_carries_the_epoch_it_was_read_with(database: Database) -> None:
    registered = await register(database, "verdict")
    verdict = await token_service.check_token(database, registered.token.secret)
    assert (verdict.app_id, verdict.auth_epoch, verdict.error) == (registered.app.id, 0, None)
    await app_service.set_disabled(database, "verdict", disabled=True)
    verdict = await token_service.check_token(database, registered.token.secret)
    assert verdict.auth_epoch == 1 and verdict.error is not None
    assert verdict.error.code == "app_disabled"


async def test_polling_follows_the_database_for_tracked_apps_only(database: Database) -> None:
    tracked, other = await register(database, "tracked"), await register(database, "other")
    epochs = AuthEpochs(database)
    epochs.observe(tracked.app.id, 0)
    await app_service.set_disabled(database, "tracked", disabled=True)
    await app_service.set_disabled(database, "other", disabled=True)
    await epochs.poll()
    assert epochs.current(tracked.app.id) == 1
    assert epochs.current(other.app.id) is None  # nothing cached for it: not read
    await app_service.remove_app(database, "tracked")
    await epochs.poll()
    assert epochs.current(tracked.app.id) == REMOVED


def test_the_view_never_goes_backwards_and_ignores_untracked_apps() -> None:
    epochs = AuthEpochs(None)  # type: ignore[arg-type]  # no database needed here
    epochs.observe("app_a", 3)
    epochs.observe("app_a", 2)  # a lookup that began before the change
    epochs.apply("app_a", 1)
    assert epochs.current("app_a") == 3
    epochs.apply("app_a", 5)
    assert epochs.current("app_a") == 5
    epochs.apply("app_b", 7)  # never looked up here
    assert epochs.current("app_b") is None
    epochs.apply("app_a", REMOVED)
    epochs.observe("app_a", 9)
    epochs.apply("app_a", 10)
    assert epochs.current("app_a") == REMOVED  # a removed app never comes back


@pytest.mark.parametrize(
    ("data", "parsed"),
    [
        (b"app_01abc 7", ("app_01abc", 7)),
        ("app_01abc 0", ("app_01abc", 0)),
        (b"app_01abc -1", ("app_01abc", REMOVED)),
        (b"app_01abc -2", None),
        (b"app_01abc 07", None),
        (b"app 1 2", None),
        (b"app_01abc", None),
        (b"app_01abc 1" + b"0" * 30, None),
        (b"x" * 41 + b" 1", None),
        (b"app_\xff 1", None),
        (12, None),
        (None, None),
    ],
)
def test_only_well_formed_announcements_are_taken(data: object, parsed: object) -> None:
    assert parse(data) == parsed
