"""A batch of events in one stream entry: a resume in its middle gets only the events after."""

from __future__ import annotations

from gateway.storage.answer_events import Batch

EVENTS = [f'id: {n}\nevent: delta\ndata: {{"text": "t{n}"}}\n\n'.encode() for n in (4, 5, 6)]


def test_a_batch_after_an_id_inside_it_holds_only_the_later_events() -> None:
    batch = Batch(first=4, last=6, data=b"".join(EVENTS), final=False)
    assert batch.after(3) == b"".join(EVENTS)
    assert batch.after(0) == b"".join(EVENTS)
    assert batch.after(4) == EVENTS[1] + EVENTS[2]
    assert batch.after(5) == EVENTS[2]
    assert batch.after(6) == b""
