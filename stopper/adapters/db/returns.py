"""Returns' storage: a case's funds read and its return orders written in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from uuid import UUID

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from stopper.adapters.db.errors import store_errors
from stopper.adapters.db.holds import HoldStorage
from stopper.adapters.db.models import CaseRow, HoldRow, PayoutRow, TrailEdgeRow, TransferRow
from stopper.adapters.db.rows import hold_record, holds_with_accounts, payout, payout_row
from stopper.app.ports import CaseFunds, Payout, ReturnStart, VictimTransfer
from stopper.domain.returns import FlowEdge
from stopper.domain.trail import EdgeOutcome
from stopper.errors import StoreUnavailable

_MAX_CONFLICT_RETRIES = 5
# The trail's edges along which money reached a hold.
_MONEY_MOVED = (EdgeOutcome.FOLLOWED.value, EdgeOutcome.MERGED.value)


class ReturnStorage(HoldStorage):
    async def start_returns(
        self, case_id: UUID, decide: Callable[[CaseFunds], Sequence[ReturnStart]]
    ) -> Sequence[ReturnStart] | None:
        with store_errors():
            for _ in range(_MAX_CONFLICT_RETRIES):
                async with self._db.begin() as connection:
                    locked = await connection.execute(
                        select(CaseRow.id).where(CaseRow.id == case_id).with_for_update()
                    )
                    if locked.one_or_none() is None:
                        return None
                    funds = await _case_funds(connection, case_id)
                    starts = decide(funds)
                    records = {r.hold.id: r for r in funds.holds}
                    conflict = False
                    for start in starts:
                        if not await self._write_checked(
                            connection, records[start.hold_id], start.version, start.update
                        ):
                            conflict = True
                            break
                    if conflict:
                        await connection.rollback()
                        continue
                    payouts = [p for start in starts for p in start.payouts]
                    if payouts:
                        ordered_at = starts[0].update.at
                        await connection.execute(
                            insert(PayoutRow),
                            [payout_row(case_id, p, ordered_at) for p in payouts],
                        )
                    return starts
        raise StoreUnavailable(f"holds kept changing under {_MAX_CONFLICT_RETRIES} attempts")

    async def payouts_of(self, hold_id: UUID, round: int) -> list[Payout]:
        with store_errors():
            async with self._db.read() as connection:
                rows = await connection.execute(
                    select(PayoutRow)
                    .where(PayoutRow.hold_id == hold_id, PayoutRow.round == round)
                    .order_by(PayoutRow.victim_ref)
                )
                return [payout(row) for row in rows]


async def _case_funds(connection: AsyncConnection, case_id: UUID) -> CaseFunds:
    holds = await connection.execute(holds_with_accounts().where(HoldRow.case_id == case_id))
    transfers = await connection.execute(
        select(
            TransferRow.victim_ref,
            TransferRow.hold_id,
            TransferRow.currency,
            TransferRow.amount,
            TransferRow.victim_institution_code,
            TransferRow.victim_account_number,
        )
        .where(TransferRow.case_id == case_id)
        .order_by(TransferRow.seq)
    )
    edges = await connection.execute(
        select(TrailEdgeRow.from_hold_id, TrailEdgeRow.to_hold_id, TrailEdgeRow.amount_traced)
        .where(
            TrailEdgeRow.case_id == case_id,
            TrailEdgeRow.outcome.in_(_MONEY_MOVED),
            TrailEdgeRow.to_hold_id.is_not(None),
        )
        .order_by(TrailEdgeRow.id)
    )
    payouts = await connection.execute(
        select(PayoutRow).where(PayoutRow.case_id == case_id).order_by(PayoutRow.id)
    )
    return CaseFunds(
        holds=[hold_record(row) for row in holds],
        transfers=[VictimTransfer(*row) for row in transfers],
        edges=[FlowEdge(*row) for row in edges],
        payouts=[payout(row) for row in payouts],
    )
