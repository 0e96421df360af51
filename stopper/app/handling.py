"""A person marks a hold Stopper could not settle as handled, with a note.

Business rules:
- only a hold that needs a person may be marked: one Stopper gave up on (failed) or one whose
  institution accepted the request and still owes its answer (unconfirmed); both derived from
  the hold table;
- the mark is a note in the hold's audit, not a transition: the state machine does not move,
  the hold leaves the "needs a person" lists until its next transition (a re-applied stop that
  fails again needs a person again);
- the note and who wrote it are kept as given, the time is Stopper's clock.
"""

from __future__ import annotations

import enum
from typing import Final
from uuid import UUID

from stopper.app.ports import Clock, HoldNote, NoteRecorded, NoteStore
from stopper.domain.holds import HoldEvent, leads_to

# Stopper gave up, or the institution owes its answer: what a person deals with.
NEEDS_A_PERSON: Final = frozenset({leads_to(HoldEvent.GAVE_UP), leads_to(HoldEvent.ACCEPTED)})


class HandledOutcome(enum.Enum):
    HANDLED = "handled"
    UNKNOWN_HOLD = "unknown_hold"
    NOT_ALLOWED = "not_allowed"


class HandlingDesk:
    def __init__(self, store: NoteStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def mark_handled(self, hold_id: UUID, *, note: str, actor: str) -> HandledOutcome:
        recorded = await self._store.record_note(
            HoldNote(hold_id, "handled", note, actor, self._clock.now()),
            while_in=NEEDS_A_PERSON,
        )
        if recorded is NoteRecorded.NO_HOLD:
            return HandledOutcome.UNKNOWN_HOLD
        if recorded is NoteRecorded.NOT_IN_STATE:
            return HandledOutcome.NOT_ALLOWED
        return HandledOutcome.HANDLED
