"""People's notes on holds ("handled"), written beside the hold's audit without moving it."""

from __future__ import annotations

from sqlalchemy import insert, select

from stopper.adapters.db.errors import store_errors
from stopper.adapters.db.models import HoldNoteRow, HoldRow
from stopper.adapters.db.storage import Storage
from stopper.app.ports import HoldNote, NoteRecorded
from stopper.domain.holds import HoldState


class NoteStorage(Storage):
    async def record_note(self, note: HoldNote, *, while_in: frozenset[HoldState]) -> NoteRecorded:
        with store_errors():
            async with self._db.begin() as connection:
                state = await connection.scalar(
                    select(HoldRow.state).where(HoldRow.id == note.hold_id).with_for_update()
                )
                if state is None:
                    return NoteRecorded.NO_HOLD
                if HoldState(state) not in while_in:
                    return NoteRecorded.NOT_IN_STATE
                await connection.execute(
                    insert(HoldNoteRow).values(
                        hold_id=note.hold_id,
                        kind=note.kind,
                        hold_state=state,
                        note=note.note,
                        actor=note.actor,
                        at=note.at,
                    )
                )
                return NoteRecorded.RECORDED
