"""Typed hold changes: each sets what it holds on a copy, and the store has a column for it."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from stopper.adapters.db.models import HoldRow
from stopper.adapters.db.rows import RECORD_FIELDS, hold_row
from stopper.app.hold_changes import (
    AttemptClaimed,
    Backoff,
    Concluded,
    Frozen,
    ReturnOrdered,
    WarningsSent,
)
from stopper.app.ports import HoldRecord, HoldUpdate
from tests.unit.fakes import requested_hold

AT = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def test_a_change_sets_what_it_holds_on_a_copy() -> None:
    record = requested_hold(at=AT)
    before = dataclasses.replace(record)
    claimed = AttemptClaimed(1, AT + timedelta(seconds=5), AT + timedelta(minutes=5), AT).apply(
        record
    )
    assert (claimed.attempts, claimed.next_attempt_at, claimed.sent_at) == (
        1,
        AT + timedelta(seconds=5),
        AT,
    )
    assert claimed.dispatch_deadline_at == AT + timedelta(minutes=5)
    assert record == before  # the record decided on is left as it was
    backed_off = Backoff(AT + timedelta(seconds=9), "timeout").apply(claimed)
    assert (backed_off.attempts, backed_off.state_reason) == (1, "timeout")
    assert Concluded(None).apply(backed_off).next_attempt_at is None


def test_an_update_without_a_change_leaves_the_record() -> None:
    record = requested_hold(at=AT)
    assert HoldUpdate(at=AT).applied(record) is record
    assert HoldUpdate(at=AT, change=WarningsSent(2)).applied(record).warnings_sent == 2


def test_every_record_field_has_its_column_and_a_new_hold_row_sets_every_column() -> None:
    columns = set(HoldRow.__table__.columns.keys())
    assert set(RECORD_FIELDS) <= columns
    assert {f.name for f in dataclasses.fields(HoldRecord)} - set(RECORD_FIELDS) == {"hold"}
    record = requested_hold(at=AT)
    assert set(hold_row(record, version=1, updated_at=AT)) == columns
    update = HoldUpdate(at=AT, change=ReturnOrdered("doc-1", 1, AT, None))
    row = hold_row(record, version=1, update=update)
    assert set(row) == columns
    assert (row["version"], row["return_round"], row["return_document_ref"]) == (2, 1, "doc-1")
    frozen = hold_row(record, version=3, update=HoldUpdate(at=AT, change=Frozen(AT)))
    assert (frozen["freeze_expires_at"], frozen["warnings_sent"]) == (AT, 0)
