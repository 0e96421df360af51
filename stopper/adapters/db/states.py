"""The hold states the store's queries select on, each derived from the hold table
(`stopper.domain.holds.TRANSITIONS`), never listed again."""

from __future__ import annotations

from typing import Final

from stopper.domain.holds import (
    AWAITING_ANSWER,
    FREEZABLE,
    IN_PLAY,
    HoldEvent,
    HoldState,
    leads_to,
    states_allowing,
)

__all__ = [
    "AWAITING_ANSWER",
    "FREEZABLE",
    "FREEZE_IN_FORCE",
    "GIVEN_UP",
    "IN_PLAY",
    "LAPSED",
    "LAPSING",
    "LEASED",
    "MERGEABLE",
    "OWED_A_REQUEST",
    "RELEASE_UNDER_WAY",
    "RETURN_UNDER_WAY",
    "STOP_IN_FORCE",
    "UNCONFIRMED",
    "values",
]

# A trail merge may still raise what the hold asks for.
MERGEABLE: Final = states_allowing(HoldEvent.MERGED)
# A stop request is owed and none is awaiting its answer: the hold was never sent.
OWED_A_REQUEST: Final = states_allowing(HoldEvent.REQUEST_SENT) - AWAITING_ANSWER
# An attempt under way: its lease (`next_attempt_at`) is what keeps the sweeper off it.
LEASED: Final = leads_to(HoldEvent.REQUEST_SENT)
# The institution accepted the request and owes its answer.
UNCONFIRMED: Final = leads_to(HoldEvent.ACCEPTED)
# Stopper gave up: a person must act.
GIVEN_UP: Final = leads_to(HoldEvent.GAVE_UP)
# The emergency stop, and the formal freeze, in force: each lapses at its own deadline.
STOP_IN_FORCE: Final = leads_to(HoldEvent.STOP_CONFIRMED)
FREEZE_IN_FORCE: Final = leads_to(HoldEvent.FREEZE_CONFIRMED)
LAPSING: Final = states_allowing(HoldEvent.LAPSED)
LAPSED: Final = leads_to(HoldEvent.LAPSED)
# A return was ordered and its confirmation is owed.
RETURN_UNDER_WAY: Final = states_allowing(HoldEvent.RETURN_CONFIRMED)
# A release was ordered and its confirmation is owed.
RELEASE_UNDER_WAY: Final = states_allowing(HoldEvent.RELEASE_CONFIRMED)

# The deadline columns are the stop's and the freeze's: every state that may lapse is one.
assert {STOP_IN_FORCE, FREEZE_IN_FORCE} == LAPSING, "a lapsing state without its deadline"


def values(states: frozenset[HoldState]) -> list[str]:
    """The states as stored, in a fixed order (one SQL statement for one set)."""
    return sorted(s.value for s in states)
