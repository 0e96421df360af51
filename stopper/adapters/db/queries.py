"""Read models for the API and the operator console (`stopper.app.views`): cases, holds, the
money trail, the overview. Account numbers leave masked."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, exists, func, select, type_coerce
from sqlalchemy import case as sql_case
from sqlalchemy.ext.asyncio import AsyncConnection

from stopper.adapters.db.errors import store_errors
from stopper.adapters.db.models import (
    AccountRow,
    CaseRow,
    HoldNoteRow,
    HoldRow,
    HoldTransitionRow,
    OutboxRow,
    PayoutRow,
    Timestamp,
    TrailEdgeRow,
    TransferRow,
    VictimRow,
)
from stopper.adapters.db.states import (
    FREEZE_IN_FORCE,
    IN_PLAY,
    STOP_IN_FORCE,
    UNCONFIRMED,
    values,
)
from stopper.adapters.db.storage import Storage
from stopper.app.views import (
    CaseSummaryView,
    CaseView,
    HoldListView,
    HoldView,
    Overview,
    PayoutView,
    TrailEdgeView,
    TrailView,
)
from stopper.domain.accounts import mask_account_number

# When a hold in each state lapses, or is given up on: the stop's and the freeze's expiry, and
# for an unconfirmed hold when Stopper stops waiting for its institution's answer.
_DEADLINES = (
    (STOP_IN_FORCE, HoldRow.stop_expires_at),
    (FREEZE_IN_FORCE, HoldRow.freeze_expires_at),
    (UNCONFIRMED, HoldRow.dispatch_deadline_at),
)


class CaseReadModels(Storage):
    async def get_case(self, case_id: UUID) -> CaseView | None:
        with store_errors():
            async with self._db.read() as connection:
                case = (
                    await connection.execute(select(CaseRow).where(CaseRow.id == case_id))
                ).one_or_none()
                if case is None:
                    return None
                victim_count = await connection.scalar(
                    select(func.count()).select_from(VictimRow).where(VictimRow.case_id == case_id)
                )
                transfer_count = await connection.scalar(
                    select(func.count())
                    .select_from(TransferRow)
                    .where(TransferRow.case_id == case_id)
                )
                holds = await connection.execute(
                    select(HoldRow, AccountRow.account_number)
                    .join(AccountRow, AccountRow.id == HoldRow.account_id)
                    .where(HoldRow.case_id == case_id)
                    .order_by(HoldRow.layer, HoldRow.requested_at, HoldRow.id)
                )
                hold_views = tuple(_hold_view(h) for h in holds)
                payouts = await connection.execute(
                    select(PayoutRow).where(PayoutRow.case_id == case_id).order_by(PayoutRow.id)
                )
                payout_views = tuple(
                    PayoutView(
                        hold_id=p.hold_id,
                        round=p.round,
                        victim_ref=p.victim_ref,
                        currency=p.currency,
                        amount=p.amount,
                        account_masked=mask_account_number(p.account_number),
                        status=p.status,
                    )
                    for p in payouts
                )
        return CaseView(
            case_id=case.id,
            report_id=case.report_id,
            agency_code=case.agency_code,
            reported_at=case.reported_at,
            accepted_at=case.accepted_at,
            opened_at=case.opened_at,
            victim_count=int(victim_count or 0),
            transfer_count=int(transfer_count or 0),
            holds=hold_views,
            payouts=payout_views,
        )

    async def case_agency(self, case_id: UUID) -> str | None:
        with store_errors():
            async with self._db.read() as connection:
                agency = await connection.scalar(
                    select(CaseRow.agency_code).where(CaseRow.id == case_id)
                )
                return None if agency is None else str(agency)

    async def list_cases(
        self, *, active_only: bool, limit: int, agency_code: str | None = None
    ) -> list[CaseSummaryView]:
        """The newest cases first; `active_only`: cases with a hold still in play;
        `agency_code`: that agency's cases only."""
        stopped = HoldRow.state == STOP_IN_FORCE.value
        with store_errors():
            async with self._db.read() as connection:
                query = select(CaseRow).order_by(CaseRow.opened_at.desc()).limit(limit)
                if agency_code is not None:
                    query = query.where(CaseRow.agency_code == agency_code)
                if active_only:
                    in_play = select(HoldRow.case_id).where(HoldRow.state.in_(values(IN_PLAY)))
                    query = query.where(CaseRow.id.in_(in_play))
                cases = (await connection.execute(query)).all()
                ids = [c.id for c in cases]
                rows = (
                    await connection.execute(
                        select(
                            HoldRow.case_id,
                            HoldRow.state,
                            HoldRow.currency,
                            func.count(),
                            func.sum(sql_case((HoldRow.layer == 1, HoldRow.amount_asked), else_=0)),
                            func.sum(HoldRow.amount_stopped),
                            type_coerce(
                                func.min(sql_case((stopped, HoldRow.stop_expires_at))), Timestamp
                            ),
                        )
                        .where(HoldRow.case_id.in_(ids))
                        .group_by(HoldRow.case_id, HoldRow.state, HoldRow.currency)
                    )
                ).all()
        by_state: dict[UUID, dict[str, int]] = {}
        asked: dict[UUID, dict[str, int]] = {}
        stopped_sums: dict[UUID, dict[str, int]] = {}
        lapse: dict[UUID, datetime] = {}
        for case_id, state, currency, count, ask, stop, expires in rows:
            states = by_state.setdefault(case_id, {})
            states[state] = states.get(state, 0) + int(count)
            for into, amount in ((asked, ask), (stopped_sums, stop)):
                sums = into.setdefault(case_id, {})
                sums[currency] = sums.get(currency, 0) + int(amount or 0)
            if expires is not None and (case_id not in lapse or expires < lapse[case_id]):
                lapse[case_id] = expires
        return [
            CaseSummaryView(
                case_id=c.id,
                report_id=c.report_id,
                agency_code=c.agency_code,
                opened_at=c.opened_at,
                holds_by_state=by_state.get(c.id, {}),
                amount_asked=asked.get(c.id, {}),
                amount_stopped=stopped_sums.get(c.id, {}),
                next_lapse_at=lapse.get(c.id),
            )
            for c in cases
        ]

    async def list_holds(
        self,
        *,
        states: Sequence[str],
        limit: int,
        soonest_first: bool = False,
        unhandled_only: bool = False,
    ) -> list[HoldListView]:
        """Holds in `states`: the most recently changed first, or the closest to their
        deadline first; `unhandled_only`: not marked handled since their last transition."""
        expires = sql_case(*((HoldRow.state == state.value, at) for state, at in _DEADLINES))
        order = expires.asc() if soonest_first else HoldRow.updated_at.desc()
        query = (
            select(HoldRow, AccountRow.account_number)
            .join(AccountRow, AccountRow.id == HoldRow.account_id)
            .where(HoldRow.state.in_(list(states)))
        )
        if unhandled_only:
            query = query.where(~handled())
        with store_errors():
            async with self._db.read() as connection:
                rows = (
                    await connection.execute(query.order_by(order, HoldRow.id).limit(limit))
                ).all()
        return [
            HoldListView(
                hold=_hold_view(row),
                case_id=row.case_id,
                state_reason=row.state_reason,
                expires_at=_deadline(row),
            )
            for row in rows
        ]

    async def get_trail(self, case_id: UUID) -> TrailView | None:
        case = await self.get_case(case_id)
        if case is None:
            return None
        with store_errors():
            async with self._db.read() as connection:
                rows = await connection.execute(
                    select(TrailEdgeRow)
                    .where(TrailEdgeRow.case_id == case_id)
                    .order_by(TrailEdgeRow.id)
                )
                edges = tuple(
                    TrailEdgeView(
                        from_hold_id=e.from_hold_id,
                        to_hold_id=e.to_hold_id,
                        kind=e.kind,
                        institution_code=e.institution_code,
                        account_masked=(
                            mask_account_number(e.account_number) if e.account_number else None
                        ),
                        amount=e.amount,
                        amount_traced=e.amount_traced,
                        transferred_at=e.transferred_at,
                        outcome=e.outcome,
                    )
                    for e in rows
                )
        return TrailView(case_id=case_id, holds=case.holds, edges=edges)

    async def overview(self) -> Overview:
        with store_errors():
            async with self._db.read() as connection:
                cases = await connection.scalar(select(func.count()).select_from(CaseRow))
                by_state, pending = await _counts(connection)
                amounts = (
                    await connection.execute(
                        select(
                            HoldRow.currency,
                            # What victims lost: the first-level asks (deeper holds re-trace it).
                            func.sum(sql_case((HoldRow.layer == 1, HoldRow.amount_asked), else_=0)),
                            func.sum(HoldRow.amount_stopped),
                            func.sum(HoldRow.attempts),
                            func.sum(HoldRow.amount_returned),
                        ).group_by(HoldRow.currency)
                    )
                ).all()
                layers = await connection.execute(
                    select(HoldRow.layer, func.count(), func.sum(HoldRow.amount_stopped))
                    .group_by(HoldRow.layer)
                    .order_by(HoldRow.layer)
                )
                return Overview(
                    cases=int(cases or 0),
                    holds_by_state=by_state,
                    amount_asked_by_currency={row[0]: int(row[1] or 0) for row in amounts},
                    amount_stopped_by_currency={row[0]: int(row[2] or 0) for row in amounts},
                    amount_returned_by_currency={
                        row[0]: int(row[4] or 0) for row in amounts if row[4]
                    },
                    outbox_pending=pending,
                    attempts=sum(int(row[3] or 0) for row in amounts),
                    holds_by_layer={int(row[0]): (int(row[1]), int(row[2] or 0)) for row in layers},
                )

    async def gauge_counts(self) -> tuple[dict[str, int], int]:
        """Holds by state and outbox rows unpublished: what the gauges every process refreshes
        every 5 s need, and no more (`overview` also counts the cases and sums over every hold
        twice more: about 0.2 s of PostgreSQL at 800,000 holds, per process and refresh)."""
        with store_errors():
            async with self._db.read() as connection:
                return await _counts(connection)


def handled() -> ColumnElement[bool]:
    """The hold (`HoldRow`) has a note newer than its last transition: a person dealt with it
    in the state it is in."""
    last_moved = (
        select(func.max(HoldTransitionRow.at))
        # Correlated to the note (the hold's id there), not to `holds`: a subquery two levels
        # down would take `holds` into its own FROM and read every hold's transitions.
        .where(HoldTransitionRow.hold_id == HoldNoteRow.hold_id)
        .scalar_subquery()
    )
    return exists().where(HoldNoteRow.hold_id == HoldRow.id, HoldNoteRow.at >= last_moved)


async def _counts(connection: AsyncConnection) -> tuple[dict[str, int], int]:
    by_state = await connection.execute(select(HoldRow.state, func.count()).group_by(HoldRow.state))
    pending = await connection.scalar(
        select(func.count()).select_from(OutboxRow).where(OutboxRow.published_at.is_(None))
    )
    return {row[0]: int(row[1]) for row in by_state}, int(pending or 0)


def _deadline(row: Any) -> datetime | None:
    """The deadline `_DEADLINES` gives a hold in its state, if any."""
    for state, at in _DEADLINES:
        if row.state == state.value:
            deadline: datetime | None = getattr(row, at.key)
            return deadline
    return None


def _hold_view(h: Any) -> HoldView:  # a Core row: the hold's columns and the account number
    return HoldView(
        hold_id=h.id,
        institution_code=h.institution_code,
        account_masked=mask_account_number(h.account_number),
        state=h.state,
        layer=h.layer,
        currency=h.currency,
        amount_asked=h.amount_asked,
        amount_stopped=h.amount_stopped,
        amount_frozen=h.amount_frozen,
        amount_returned=h.amount_returned,
        parent_hold_id=h.parent_hold_id,
        updated_at=h.updated_at,
    )
