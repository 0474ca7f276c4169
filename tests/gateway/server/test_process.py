"""Process-wide effects belong to `orchestra serve`, not to the application.

An app created by a test or served by another ASGI server must leave its process as it found
it; `orchestra serve` tunes its own process while the app runs and puts everything back after.
"""

from __future__ import annotations

import gc
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from cryptography.fernet import Fernet

from gateway.http.app import create_app
from gateway.http.shutdown import Drain
from gateway.server.app import create_served_app
from gateway.server.process import LOOP_SWITCH_INTERVAL_S, served_process
from gateway.settings import Settings
from gateway.storage.database import Database

pytestmark = pytest.mark.anyio


def _process_state() -> tuple[int, float, Any, Any]:
    return (
        gc.get_freeze_count(),
        sys.getswitchinterval(),
        signal.getsignal(signal.SIGTERM),
        signal.getsignal(signal.SIGINT),
    )


async def _let_start_up_settle() -> None:
    # The lifespan's first database ping runs at once; cancelling it mid-query on SQLite leaves
    # SQLAlchemy a connection-close task that would outlive the test's event loop.
    await anyio.sleep(0.5)


async def _migrated_home(tmp_path: Path) -> Settings:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'orchestra.db'}"
    db = Database.open(database_url)
    try:
        await db.upgrade()
    finally:
        await db.close()
    return Settings(
        home=tmp_path,
        database_url=database_url,
        master_key=Fernet.generate_key().decode(),
    )


async def test_an_app_run_in_a_test_changes_nothing_process_wide(tmp_path: Path) -> None:
    settings = await _migrated_home(tmp_path)
    before = _process_state()
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert _process_state() == before
        await _let_start_up_settle()
    assert _process_state() == before


async def test_the_served_process_is_tuned_while_it_runs_and_restored_after() -> None:
    before = _process_state()
    drain = Drain(timeout=5)
    with served_process(drain):
        frozen, interval, on_term, on_int = _process_state()
        assert frozen > 0 and interval == LOOP_SWITCH_INTERVAL_S
        assert on_term is not before[2] and on_int is not before[3]
        assert callable(on_term)
        on_term(signal.SIGTERM, None)  # what the kernel's SIGTERM would run
        await anyio.sleep(0.05)
        assert drain.started.is_set()
    assert _process_state() == (0, *before[1:])


async def test_orchestra_serve_s_factory_tunes_its_process_while_the_app_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = await _migrated_home(tmp_path)
    assert settings.master_key is not None
    monkeypatch.setenv("ORCHESTRA_HOME", str(tmp_path))
    monkeypatch.setenv("ORCHESTRA_DATABASE_URL", str(settings.database_url))
    monkeypatch.setenv("ORCHESTRA_MASTER_KEY", settings.master_key.get_secret_value())
    before = _process_state()
    app = create_served_app()
    async with app.router.lifespan_context(app):
        assert sys.getswitchinterval() == LOOP_SWITCH_INTERVAL_S
        await _let_start_up_settle()
    assert _process_state() == (0, *before[1:])
