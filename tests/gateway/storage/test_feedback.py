"""feedback rows on SQLite and PostgreSQL: one per request, replaced by a new rating, joined to
the records for /logs and usage, pruned with them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import exc as sa_exc

from gateway.core.clock import utcnow
from gateway.core.ids import new_request_id
from gateway.services.interactions import InteractionRecord, InteractionRecorder
from gateway.storage import feedback as feedback_rows
from gateway.storage import request_logs
from gateway.storage.database import Database
from gateway.storage.tables import Feedback
from tests.gateway.storage.conftest import MakeApp

pytestmark = [
    pytest.mark.anyio,
    # feedback_for uses session.exec() on a plain select, like find_logs.
    pytest.mark.filterwarnings(r"ignore:\s*.*session\.exec\(\):DeprecationWarning"),
]


def rating(request_id: str, score: int, comment: str | None = None, **fields: object) -> Feedback:
    values: dict[str, object] = {"app_id": "app_x", "user": None, "rated_at": utcnow()}
    values.update(fields)
    return Feedback(request_id=request_id, score=score, comment=comment, **values)


async def upsert(database: Database, row: Feedback) -> None:
    async with database.session() as session:
        await feedback_rows.upsert_feedback(session, row)


async def ratings(database: Database, *request_ids: str) -> dict[str, Feedback]:
    async with database.read() as session:
        return await feedback_rows.feedback_for(session, request_ids)


async def test_rating_again_replaces_the_row(database: Database) -> None:
    rated, other = new_request_id(), new_request_id()
    await upsert(database, rating(rated, 1, "good"))
    await upsert(database, rating(rated, -1, None, user="alice"))
    found = await ratings(database, rated, other, new_request_id())
    assert set(found) == {rated}
    row = found[rated]
    assert (row.score, row.comment, row.user) == (-1, None, "alice")
    assert await ratings(database) == {}


async def test_the_database_refuses_a_score_other_than_1_or_minus_1(database: Database) -> None:
    with pytest.raises(sa_exc.IntegrityError):
        await upsert(database, rating(new_request_id(), 0))


def record(app_id: str, app_name: str, request_id: str, outcome: str) -> InteractionRecord:
    return InteractionRecord(
        time=utcnow(),
        request_id=request_id,
        route="/ask",
        outcome=outcome,
        http_status=200 if outcome == "completed" else 429,
        app_id=app_id,
        app_name=app_name,
        user="bob",
    )


async def test_usage_and_owner_come_from_the_records_joined_to_ratings(
    database: Database, make_app: MakeApp
) -> None:
    app = await make_app("rated")
    ids = [new_request_id() for _ in range(4)]
    recorder = InteractionRecorder(database)
    for request_id in ids[:3]:
        recorder.record(record(app.id, app.name, request_id, "completed"))
    recorder.record(record(app.id, app.name, ids[3], "rejected"))
    assert recorder.pending_owner(ids[0]) == (app.id, "bob")
    await recorder.flush()
    assert recorder.pending_owner(ids[0]) is None
    await upsert(database, rating(ids[0], 1, app_id=app.id))
    await upsert(database, rating(ids[1], -1, app_id=app.id))
    await upsert(database, rating(new_request_id(), -1, app_id=app.id))  # no record: not counted

    async with database.read() as session:
        (row,) = await request_logs.sum_usage(session, since=utcnow() - timedelta(hours=1))
        owner = await request_logs.record_owner(session, ids[2])
        nobody = await request_logs.record_owner(session, new_request_id())
    assert (row.requests, row.answers, row.rated_up, row.rated_down) == (4, 3, 1, 1)
    assert row.rated_share == pytest.approx(2 / 3)
    assert owner == (app.id, "bob") and nobody is None


async def test_ratings_are_pruned_with_the_records(database: Database) -> None:
    old, new = new_request_id(), new_request_id()
    await upsert(database, rating(old, 1, rated_at=utcnow() - timedelta(days=40)))
    await upsert(database, rating(new, 1))
    async with database.session() as session:
        assert await feedback_rows.delete_feedback_before(session, utcnow() - timedelta(days=30))
    assert set(await ratings(database, old, new)) == {new}
