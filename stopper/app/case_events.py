"""Case events: what an agency is told about its cases, on webhooks and `stopper.case-events`.

They are derived by the store from what it writes (transitions, births, warnings), in the
same transaction, rather than listed by each use case: a use case that adds a transition
cannot forget to tell the agency. The rules:

* ``case_opened``: a case recorded by intake (once, with the births of its holds).
* A transition that changes a hold's state to one of `EVENT_OF_STATE` is that state's event
  (``stopped`` -> ``hold_stopped``, ``expired`` -> ``stop_lapsed``, ``frozen`` ->
  ``hold_frozen``, ``returned`` -> ``funds_returned``, ``released`` -> ``hold_released`` ...).
  A transition that keeps the state (a merge, a renewed freeze) tells nothing new.
* ``trail_followed``: the money trail added a hold (a new account reached by the case's money).
* ``stop_expiring``: a warning went out that a stop (or freeze) is about to lapse.

Payloads carry masked account numbers only, and amounts as decimal strings (`amounts`).
`event_id` is unique per event: receivers deduplicate on it (delivery is at least once).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Final
from uuid import UUID

from stopper.app.ports import HoldRecord, HoldUpdate
from stopper.contracts.amounts import format_amount
from stopper.contracts.webhooks import CaseEventType
from stopper.domain.accounts import mask_account_number
from stopper.domain.cases import Case
from stopper.domain.holds import Hold, HoldState, Transition

EVENT_OF_STATE: Final[Mapping[HoldState, CaseEventType]] = MappingProxyType(
    {
        HoldState.STOPPED: CaseEventType.HOLD_STOPPED,
        HoldState.NOT_FOUND: CaseEventType.HOLD_NOT_FOUND,
        HoldState.REJECTED: CaseEventType.HOLD_REJECTED,
        HoldState.UNCONFIRMED: CaseEventType.HOLD_UNCONFIRMED,
        HoldState.FAILED: CaseEventType.HOLD_FAILED,
        HoldState.EXPIRED: CaseEventType.STOP_LAPSED,
        HoldState.FROZEN: CaseEventType.HOLD_FROZEN,
        HoldState.RETURNED: CaseEventType.FUNDS_RETURNED,
        HoldState.RELEASED: CaseEventType.HOLD_RELEASED,
    }
)


@dataclass(frozen=True, slots=True)
class CaseEvent:
    """One event about a case, as it travels (webhook body, Kafka value: `payload()`)."""

    type: CaseEventType
    case_id: UUID
    report_id: str
    hold_id: UUID | None
    occurred_at: datetime
    data: Mapping[str, object]
    event_id: UUID = field(default_factory=uuid.uuid4)

    def payload(self) -> dict[str, object]:
        return {
            "event_id": str(self.event_id),
            "type": self.type.value,
            "case_id": str(self.case_id),
            "report_id": self.report_id,
            "hold_id": None if self.hold_id is None else str(self.hold_id),
            "occurred_at": self.occurred_at.isoformat(),
            "data": dict(self.data),
        }


def hold_data(hold: Hold) -> dict[str, object]:
    """What every hold event says of the hold (the account masked, amounts as decimal strings)."""
    return {
        "institution_code": hold.institution_code,
        "account": mask_account_number(hold.account_number),
        "layer": hold.layer,
        "currency": hold.currency,
        "amount_asked": format_amount(hold.amount_asked),
        "amount_stopped": format_amount(hold.amount_stopped),
        "amount_frozen": format_amount(hold.amount_frozen),
        "amount_returned": format_amount(hold.amount_returned),
        "state": hold.state.value,
    }


def case_opened(case: Case) -> CaseEvent:
    return CaseEvent(
        CaseEventType.CASE_OPENED,
        case.id,
        case.report_id,
        None,
        case.opened_at,
        {
            "agency_code": case.agency_code,
            "holds": [
                {"hold_id": str(h.id), **hold_data(h)}
                for h in sorted(case.holds, key=lambda h: str(h.id))
            ],
        },
    )


def transition_events(
    hold: Hold, transitions: Sequence[Transition], report_id: str
) -> list[CaseEvent]:
    """The events of `transitions` made on `hold` (which is as they left it)."""
    events = []
    for t in transitions:
        kind = EVENT_OF_STATE.get(t.to_state)
        if kind is None or t.from_state is None or t.from_state is t.to_state:
            continue
        data = {**hold_data(hold), "from_state": t.from_state.value, "state": t.to_state.value}
        events.append(CaseEvent(kind, hold.case_id, report_id, hold.id, t.at, data))
    return events


def trail_followed(hold: Hold, at: datetime, report_id: str) -> CaseEvent:
    """The trail reached a new account: `hold` is the stop asked of it."""
    data = {
        **hold_data(hold),
        "parent_hold_id": None if hold.parent_id is None else str(hold.parent_id),
    }
    return CaseEvent(CaseEventType.TRAIL_FOLLOWED, hold.case_id, report_id, hold.id, at, data)


def stop_expiring(
    hold: Hold, expires_at: datetime | None, at: datetime, report_id: str
) -> CaseEvent:
    """A lapse warning went out for `hold`'s stop (or freeze)."""
    data = {
        **hold_data(hold),
        "kind": "freeze" if hold.state is HoldState.FROZEN else "stop",
        "expires_at": None if expires_at is None else expires_at.isoformat(),
    }
    return CaseEvent(CaseEventType.STOP_EXPIRING, hold.case_id, report_id, hold.id, at, data)


def told(
    changes: Sequence[tuple[HoldRecord, HoldUpdate]],
) -> list[tuple[HoldRecord, HoldUpdate, HoldRecord]]:
    """The changes that owe the agency an event, each with the record as it leaves it (the
    change applied once: it is the hot path of every hold transaction)."""
    telling = []
    for record, change in changes:
        applied = change.applied(record)
        if applied.warnings_sent > record.warnings_sent or any(
            t.to_state in EVENT_OF_STATE and t.from_state not in (None, t.to_state)
            for t in change.transitions
        ):
            telling.append((record, change, applied))
    return telling


def events_of_changes(
    changes: Sequence[tuple[HoldRecord, HoldUpdate]],
    trail_holds: Sequence[tuple[Hold, datetime]],
    report_ids: Mapping[UUID, str],
) -> list[CaseEvent]:
    """The events of hold changes written together, and of the holds the trail added with
    them, in the order they happened (a warning before the lapse it precedes); `report_ids`
    by case id."""
    return events_of_told(told(changes), trail_holds, report_ids)


def events_of_told(
    telling: Sequence[tuple[HoldRecord, HoldUpdate, HoldRecord]],
    trail_holds: Sequence[tuple[Hold, datetime]],
    report_ids: Mapping[UUID, str],
) -> list[CaseEvent]:
    """`events_of_changes` of the changes `told` kept."""
    events: list[CaseEvent] = []
    for record, change, applied in telling:
        report_id = report_ids[record.hold.case_id]
        if applied.warnings_sent > record.warnings_sent:
            expires_at = applied.freeze_expires_at or applied.stop_expires_at
            events.append(stop_expiring(applied.hold, expires_at, change.at, report_id))
        events += transition_events(applied.hold, change.transitions, report_id)
    events += [trail_followed(h, at, report_ids[h.case_id]) for h, at in trail_holds]
    return events
