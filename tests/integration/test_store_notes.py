"""People's notes on holds ("handled") and the console's reads built on them, on SQLite and
PostgreSQL alike: a note is recorded only in the states asked for, a hold is handled until its
next transition (its own, never another hold's), and the case's timeline merges notes with
transitions by time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from stopper.adapters.db.store import SqlStore
from stopper.app.handling import NEEDS_A_PERSON
from stopper.app.ports import HoldNote, NoteRecorded
from stopper.domain.holds import HoldEvent
from tests.integration.helpers import sql_store_on
from tests.integration.test_store_contract import STOP_REQUESTS, _now, moved, recorded

pytestmark = pytest.mark.integration

WAITING = sorted(s.value for s in NEEDS_A_PERSON)


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    async with sql_store_on(request, tmp_path, "notes", STOP_REQUESTS) as store:
        yield store


async def waiting(store: SqlStore) -> set[object]:
    found = await store.list_holds(states=WAITING, limit=100, unhandled_only=True)
    return {h.hold.hold_id for h in found}


async def test_a_note_marks_a_hold_handled_until_its_own_next_transition(store: SqlStore) -> None:
    case = await recorded(store)
    first, second = (h.id for h in case.case.holds[:2])
    at = _now()
    await moved(store, first, HoldEvent.REQUEST_SENT, HoldEvent.GAVE_UP, at=at)
    note = HoldNote(first, "handled", "phoned the bank", "operator:a", at + timedelta(seconds=1))
    refused = HoldNote(second, "handled", "too early", "operator:a", at)

    assert await store.record_note(refused, while_in=NEEDS_A_PERSON) is NoteRecorded.NOT_IN_STATE
    unknown = HoldNote(case.case.id, "handled", "?", "operator:a", at)  # not a hold's id
    assert await store.record_note(unknown, while_in=NEEDS_A_PERSON) is NoteRecorded.NO_HOLD
    assert first in await waiting(store)
    assert await store.record_note(note, while_in=NEEDS_A_PERSON) is NoteRecorded.RECORDED
    assert first not in await waiting(store)

    # Another hold failing later leaves this one handled, and needs a person itself.
    await moved(store, second, HoldEvent.GAVE_UP, at=at + timedelta(seconds=5))
    assert await waiting(store) >= {second} and first not in await waiting(store)
    activity = await store.activity(
        hour_since=at - timedelta(hours=1), day_since=at - timedelta(days=1), needs_a_person=WAITING
    )
    assert activity.needing_a_person == 1 and activity.reports == 1

    timeline = await store.case_audit(case.case.id, 100)
    assert [e.at for e in timeline] == sorted(e.at for e in timeline)
    notes = [e for e in timeline if e.is_note]
    assert [(n.hold_id, n.event, n.cause, n.from_state, n.to_state) for n in notes] == [
        (first, "handled", "phoned the bank", "failed", "failed")
    ]
    assert sum(1 for e in timeline if e.hold_id == first and not e.is_note) == 3
