"""Intake's storage: opened cases recorded, with their first stop requests claimed."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from sqlalchemy import select

from stopper.adapters.db.case_events import event_rows
from stopper.adapters.db.dialects import CaseRows, Row
from stopper.adapters.db.errors import store_errors
from stopper.adapters.db.models import CaseRow
from stopper.adapters.db.rows import case_row, hold_row, transition_rows
from stopper.adapters.db.storage import Storage
from stopper.app.case_events import case_opened, transition_events
from stopper.app.ports import HoldDecision, HoldRecord, HoldUpdate, OpenedCase, RecordOutcome
from stopper.domain.cases import hold_id_for
from stopper.domain.mules import mule_cases_of


class IntakeStorage(Storage):
    async def case_fingerprint(self, case_id: UUID) -> str | None:
        with store_errors():
            async with self._db.read() as connection:
                fingerprint: str | None = await connection.scalar(
                    select(CaseRow.report_fingerprint).where(CaseRow.id == case_id)
                )
                return fingerprint

    async def record_opened_cases(
        self, cases: Sequence[OpenedCase], claim: HoldDecision | None = None
    ) -> RecordOutcome:
        """The cases that are new, whole, in one transaction (see `Database.record_cases`);
        `claim` decided on each of their holds as born, and written with the hold."""
        rows, claimed = _case_rows(cases, claim, self._case_events_topic)
        with store_errors():
            recorded = await self._db.record_cases(rows)
            created = recorded.created
            already_known = await self._fingerprints({c.case.id for c in cases} - created)
        new = [c.case for c in cases if c.case.id in created]
        return RecordOutcome(
            created=[case.id for case in new],
            already_known=already_known,
            claimed=[(r, c) for r, c in claimed if r.hold.case_id in created],
            mule_cases=mule_cases_of(new, recorded.earlier_cases),
        )

    async def _fingerprints(self, ids: set[UUID]) -> dict[UUID, str]:
        if not ids:
            return {}
        async with self._db.read() as connection:
            rows = await connection.execute(
                select(CaseRow.id, CaseRow.report_fingerprint).where(CaseRow.id.in_(ids))
            )
            return {row.id: row.report_fingerprint for row in rows}


def _case_rows(
    cases: Sequence[OpenedCase], claim: HoldDecision | None, events_topic: str
) -> tuple[CaseRows, list[tuple[HoldRecord, HoldUpdate]]]:
    """The rows of opened cases (with their case events), and the claims decided on their
    holds (which change the holds' rows and add transitions)."""
    rows = CaseRows(cases=[case_row(c) for c in cases])
    claimed: list[tuple[HoldRecord, HoldUpdate]] = []
    accounts: dict[UUID, Row] = {}
    for opened in cases:
        case = opened.case
        hold_ids = {(h.institution_code, h.account_number): h.id for h in case.holds}
        rows.victims += [
            {"case_id": case.id, "victim_ref": v.victim_ref, "name": v.name} for v in opened.victims
        ]
        for seq, t in enumerate(case.transfers):
            account = t.receiving_account
            accounts.setdefault(
                account.id,
                {
                    "id": account.id,
                    "institution_code": account.institution_code,
                    "account_number": account.account_number,
                    "holder_name": account.name,
                    "first_seen_at": case.opened_at,
                },
            )
            rows.transfers.append(
                {
                    "case_id": case.id,
                    "seq": seq,
                    "victim_ref": t.victim_ref,
                    "victim_institution_code": t.victim_account.institution_code,
                    "victim_account_number": t.victim_account.account_number,
                    "receiving_account_id": account.id,
                    "hold_id": hold_ids.get(account.key) or hold_id_for(case.id, account),
                    "amount": t.amount,
                    "currency": t.currency,
                    "transferred_at": t.transferred_at,
                    "channel": t.channel,
                    "reference": t.reference,
                }
            )
        rows.transitions += transition_rows(opened.births)
        told = [case_opened(case)]  # the holds as born, before a claim moves them on
        for h in case.holds:
            version = h.version  # as born: a claim moves the hold on
            born = HoldRecord.born(
                h, requested_at=case.opened_at, report_accepted_at=opened.accepted_at
            )
            change = None if claim is None else claim(born)
            if change is None:
                rows.holds.append(hold_row(born, version=version, updated_at=case.opened_at))
                continue
            rows.holds.append(hold_row(born, version=version, update=change))
            rows.transitions += transition_rows(change.transitions)
            told += transition_events(change.applied(born).hold, change.transitions, case.report_id)
            claimed.append((born, change))
        rows.events += event_rows(events_topic, told)
    # In id order: two batches that share accounts take their index entries in one order.
    rows.accounts = [accounts[k] for k in sorted(accounts)]
    return rows, claimed
