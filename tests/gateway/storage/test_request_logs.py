"""request_logs rows: values PostgreSQL would refuse must not stop a batch (one bad row fails
its whole batch, which the recorder retries forever)."""

from __future__ import annotations

import pytest

from gateway.core.clock import utcnow
from gateway.core.errors import StorageUnavailable
from gateway.observability.metrics import Metrics
from gateway.services.interactions import InteractionRecord, InteractionRecorder
from gateway.storage import request_logs
from gateway.storage.database import Database
from gateway.storage.request_logs import LogFilter
from gateway.storage.tables import RequestLog

pytestmark = [
    pytest.mark.anyio,
    # find_logs uses session.exec() on a plain select, as tests/cli/test_logs.py notes.
    pytest.mark.filterwarnings(r"ignore:\s*.*session\.exec\(\):DeprecationWarning"),
]


def record(request_id: str, **fields: object) -> InteractionRecord:
    return InteractionRecord(
        time=utcnow(),
        request_id=request_id,
        route="/ask",
        outcome="completed",
        http_status=200,
        **fields,  # type: ignore[arg-type]
    )


def test_storable_replaces_nul_and_cuts_strings_to_their_column() -> None:
    row = record(
        "req_1", prompt_text="a\x00b", origin="https://" + "o" * 3000, model="m" * 300
    ).row()
    stored = request_logs.storable(row)
    assert stored["prompt_text"] == "a\ufffdb"
    assert stored["origin"] == "https://" + "o" * 1992
    assert stored["model"] == "m" * 200
    assert stored["http_status"] == 200
    assert row["prompt_text"] == "a\x00b", "the caller's row is left as it was"


async def test_a_record_with_nul_and_an_overlong_origin_is_written_with_its_batch(
    database: Database,
) -> None:
    recorder = InteractionRecorder(database, batch_size=10)
    recorder.record(record("req_before"))
    recorder.record(
        record(
            "req_hostile",
            prompt_text="hi\x00",
            answer_text="\x00",
            origin="https://" + "o" * 3000,
            request_metadata={"k\x00": "v\x00"},
        )
    )
    recorder.record(record("req_after"))
    await recorder.flush()
    async with database.read() as session:
        rows = await request_logs.find_logs(session, LogFilter(), limit=10)
    by_id = {row.request_id: row for row in rows}
    assert set(by_id) == {"req_before", "req_hostile", "req_after"}
    assert by_id["req_hostile"].prompt_text == "hi\ufffd"
    assert len(by_id["req_hostile"].origin or "") == 2000


async def _stored(database: Database) -> dict[str, RequestLog]:
    async with database.read() as session:
        rows = await request_logs.find_logs(session, LogFilter(), limit=100)
    return {row.request_id: row for row in rows}


async def test_the_metadata_sent_with_a_request_is_stored(database: Database) -> None:
    recorder = InteractionRecorder(database)
    recorder.record(record("req_meta", request_metadata={"user": "u1", "n": [1, 2]}))
    await recorder.flush()
    stored = await _stored(database)
    assert stored["req_meta"].request_metadata == {"user": "u1", "n": [1, 2]}


async def test_token_counts_past_32_bits_are_stored_exactly(database: Database) -> None:
    """PostgreSQL's INTEGER stops at 2**31 - 1: the columns are 64-bit (migration 0006)."""
    recorder = InteractionRecorder(database)
    recorder.record(record("req_big", prompt_tokens=3_000_000_000, completion_tokens=2**40))
    await recorder.flush()
    stored = (await _stored(database))["req_big"]
    assert (stored.prompt_tokens, stored.completion_tokens) == (3_000_000_000, 2**40)


async def test_a_row_the_database_refuses_never_blocks_the_others(database: Database) -> None:
    """Metadata the JSON column cannot hold: the row is split out of its batch and written
    without its content (10**30 clamped to the column); the rows around it are written as they
    are, in one flush that does not raise."""
    metrics = Metrics()
    recorder = InteractionRecorder(database, batch_size=50, metrics=metrics)
    for n in range(20):
        recorder.record(record(f"req_{n}", app_name="other", prompt_text="kept"))
    recorder.record(
        record(
            "req_huge",
            app_name="hostile",
            prompt_tokens=10**30,
            completion_tokens=-(10**30),
            prompt_text="dropped",
            request_metadata={"k": object()},
        )
    )
    for n in range(20, 40):
        recorder.record(record(f"req_{n}", app_name="other"))
    await recorder.flush()
    assert recorder.pending == 0
    stored = await _stored(database)
    assert len(stored) == 41
    assert stored["req_3"].prompt_text == "kept"
    huge = stored["req_huge"]
    assert huge.prompt_tokens == 2**63 - 1
    assert huge.completion_tokens == 0
    assert (huge.prompt_text, huge.request_metadata) == (None, None)
    assert metrics.records_rejected.labels("sanitized")._value.get() == 1


async def test_a_row_refused_even_sanitized_is_dropped_counted_and_not_retried(
    database: Database,
) -> None:
    metrics = Metrics()
    recorder = InteractionRecorder(database, batch_size=10, metrics=metrics)
    recorder.record(record("req_before"))
    no_time = record("req_no_time")
    no_time.time = None  # type: ignore[assignment]  # NOT NULL: nothing can save it
    recorder.record(no_time)
    recorder.record(record("req_after"))
    await recorder.flush()
    assert recorder.pending == 0
    assert set(await _stored(database)) == {"req_before", "req_after"}
    assert metrics.records_rejected.labels("dropped")._value.get() == 1
    recorder.record(record("req_later"))
    await recorder.flush()
    assert "req_later" in await _stored(database)


async def test_an_unavailable_database_keeps_every_record_in_order() -> None:
    """Unavailable is not refused: nothing is split, dropped or sanitized; all is kept."""
    missing = Database.open("postgresql+asyncpg://postgres@127.0.0.1:9/test")
    recorder = InteractionRecorder(missing, batch_size=2)
    for n in range(5):
        recorder.record(record(f"req_{n}", prompt_tokens=10**30 if n == 2 else 0))
    try:
        with pytest.raises(StorageUnavailable):
            await recorder.flush()
    finally:
        await missing.close()
    assert recorder.pending == 5
    assert [r.request_id for r in recorder._buffer] == [f"req_{n}" for n in range(5)]
