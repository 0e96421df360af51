"""Rows of the tables, from and to what the use cases see (`HoldRecord`, `Transition`, ...).

A hold's columns are listed once: every field of `HoldRecord` but `hold` is stored in the
column of its name (`RECORD_FIELDS`), beside the domain hold's own; a supplement's likewise
(`SUPPLEMENT_FIELDS`).
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Select, select

from stopper.adapters.db.dialects import Row
from stopper.adapters.db.models import AccountRow, HoldRow
from stopper.app.ports import HoldRecord, HoldUpdate, OpenedCase, Payout
from stopper.app.supplement_ports import SupplementRecord
from stopper.contracts.institutions import StopRequestV1
from stopper.domain.accounts import account_id
from stopper.domain.holds import Hold, HoldState, Transition
from stopper.domain.messages import RequestStop
from stopper.domain.supplements import Supplement

RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(HoldRecord) if f.name != "hold")
# A supplement's bookkeeping, likewise: every field of `SupplementRecord` but the supplement.
SUPPLEMENT_FIELDS = tuple(
    f.name for f in dataclasses.fields(SupplementRecord) if f.name != "supplement"
)
# A row's bookkeeping columns in `HoldRecord`'s field order, read at once (the hot path).
_record_columns = operator.attrgetter(*RECORD_FIELDS)
# A stored state's member by a dict look-up: `HoldState(value)` costs a microsecond a row.
_STATE_OF = {s.value: s for s in HoldState}


def holds_with_accounts() -> Select[Any]:
    """Holds with their account numbers: what `hold_record` reads."""
    return select(HoldRow, AccountRow.account_number).join(
        AccountRow, AccountRow.id == HoldRow.account_id
    )


def hold_state(record: HoldRecord) -> Row:
    """The columns a change of the hold may set: its state, amounts and bookkeeping."""
    hold = record.hold
    return {
        "state": hold.state.value,
        "amount_stopped": hold.amount_stopped,
        "amount_frozen": hold.amount_frozen,
        "amount_returned": hold.amount_returned,
        "reapplications": hold.reapplications,
        "amount_first_request": hold.amount_first_request,
        "amount_stopped_by_supplements": hold.amount_stopped_by_supplements,
        "supplements": hold.supplements,
        **{name: getattr(record, name) for name in RECORD_FIELDS},
    }


def hold_columns(record: HoldRecord, version: int, update: HoldUpdate) -> Row:
    """The hold's columns after `update`, which was decided on the hold at `version`."""
    return {**hold_state(update.applied(record)), "version": version + 1, "updated_at": update.at}


def hold_row(
    record: HoldRecord,
    *,
    version: int,
    updated_at: datetime | None = None,
    update: HoldUpdate | None = None,
) -> Row:
    """Every column of a new hold: as born (at `version`, `updated_at`), or as `update` leaves it
    (decided on the hold at `version`)."""
    hold = record.hold
    if update is not None:
        columns = hold_columns(record, version, update)
    else:
        assert updated_at is not None
        columns = {**hold_state(record), "version": version, "updated_at": updated_at}
    return {
        "id": hold.id,
        "case_id": hold.case_id,
        "account_id": account_id(hold.institution_code, hold.account_number),
        "institution_code": hold.institution_code,
        "currency": hold.currency,
        "amount_asked": hold.amount_asked,
        "layer": hold.layer,
        "parent_hold_id": hold.parent_id,
        **columns,
    }


def hold_record(row: Any) -> HoldRecord:
    """A hold as stored, from a Core row of `holds_with_accounts()`."""
    hold = Hold(
        id=row.id,
        case_id=row.case_id,
        institution_code=row.institution_code,
        account_number=row.account_number,
        currency=row.currency,
        amount_asked=row.amount_asked,
        layer=row.layer,
        parent_id=row.parent_hold_id,
        state=_STATE_OF[row.state],
        version=row.version,
        amount_stopped=row.amount_stopped,
        amount_frozen=row.amount_frozen,
        amount_returned=row.amount_returned,
        reapplications=row.reapplications,
        amount_first_request=row.amount_first_request,
        amount_stopped_by_supplements=row.amount_stopped_by_supplements,
        supplements=row.supplements,
    )
    return HoldRecord(hold, *_record_columns(row))


def supplement_row(record: SupplementRecord, updated_at: datetime) -> Row:
    """Every column of a supplement's row, as `record` has it."""
    sup = record.supplement
    return {
        "hold_id": sup.hold_id,
        "number": sup.number,
        "generation": sup.generation,
        "amount": sup.amount,
        "merged_from_hold_id": sup.merged_from,
        "state": sup.state.value,
        "amount_held": sup.amount_held,
        "requested_at": sup.requested_at,
        **{name: getattr(record, name) for name in SUPPLEMENT_FIELDS},
        "updated_at": updated_at,
    }


def supplement_record(row: Any) -> SupplementRecord:
    """A supplement as stored, from a Core row of its table."""
    supplement = Supplement(
        hold_id=row.hold_id,
        number=row.number,
        generation=row.generation,
        amount=row.amount,
        merged_from=row.merged_from_hold_id,
        requested_at=row.requested_at,
        state=HoldState(row.state),
        amount_held=row.amount_held,
    )
    return SupplementRecord(supplement, **{name: getattr(row, name) for name in SUPPLEMENT_FIELDS})


def account_row(hold: Hold, first_seen_at: datetime, holder_name: str | None = None) -> Row:
    return {
        "id": account_id(hold.institution_code, hold.account_number),
        "institution_code": hold.institution_code,
        "account_number": hold.account_number,
        "holder_name": holder_name,
        "first_seen_at": first_seen_at,
    }


def transition_rows(transitions: Sequence[Transition]) -> list[Row]:
    return [
        {
            "hold_id": t.hold_id,
            "from_state": t.from_state.value if t.from_state else None,
            "to_state": t.to_state.value,
            "event": t.event.value if t.event else None,
            "cause": t.cause,
            "actor": t.actor,
            "at": t.at,
        }
        for t in transitions
    ]


def outbox_row(topic: str, key: str, payload: dict[str, Any], at: datetime) -> Row:
    return {
        "topic": topic,
        "key": key,
        "payload": payload,
        "headers": {},
        "created_at": at,
        "published_at": None,
    }


def stop_request_row(topic: str, request: RequestStop, at: datetime) -> Row:
    payload = StopRequestV1.from_command(request).model_dump(mode="json")
    return outbox_row(topic, str(request.hold_id), payload, at)


def case_row(opened: OpenedCase) -> Row:
    case = opened.case
    return {
        "id": case.id,
        "report_id": case.report_id,
        "agency_code": case.agency_code,
        "report_fingerprint": opened.fingerprint,
        "source": opened.source,
        "reported_at": case.reported_at,
        "accepted_at": opened.accepted_at,
        "opened_at": case.opened_at,
    }


def payout_row(case_id: UUID, payout: Payout, ordered_at: datetime) -> Row:
    return {
        "case_id": case_id,
        **dataclasses.asdict(payout),
        "ordered_at": ordered_at,
        "settled_at": None,
    }


def payout(row: Any) -> Payout:
    """A payout, from a Core row of the payouts table."""
    return Payout(
        hold_id=row.hold_id,
        round=row.round,
        victim_ref=row.victim_ref,
        currency=row.currency,
        amount=row.amount,
        institution_code=row.institution_code,
        account_number=row.account_number,
        status=row.status,
    )
