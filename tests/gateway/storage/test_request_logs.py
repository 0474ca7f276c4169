"""request_logs rows: values PostgreSQL would refuse must not stop a batch (one bad row fails
its whole batch, which the recorder retries forever)."""

from __future__ import annotations

import pytest

from gateway.core.clock import utcnow
from gateway.services.interactions import InteractionRecord, InteractionRecorder
from gateway.storage import request_logs
from gateway.storage.database import Database
from gateway.storage.request_logs import LogFilter

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
