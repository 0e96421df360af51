"""The money trail, followed inside the transaction of the answers that found money moved on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from uuid import UUID

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from stopper.adapters.db.dialects import Database, Row
from stopper.adapters.db.models import (
    AccountRow,
    CaseRow,
    HoldRow,
    HoldSupplementRow,
    HoldTransitionRow,
    OutboxRow,
    TrailEdgeRow,
)
from stopper.adapters.db.rows import (
    account_row,
    hold_row,
    stop_request_row,
    supplement_row,
    transition_rows,
)
from stopper.adapters.db.states import MERGEABLE, values
from stopper.app.ports import HoldRecord, HoldUpdate
from stopper.app.supplement_ports import SupplementRecord
from stopper.domain.holds import Hold, HoldState, MergeAsks, Transition, merge_asks
from stopper.domain.supplements import Supplement
from stopper.domain.trail import TrailNode, TrailPlan


async def follow_trails(
    db: Database,
    connection: AsyncConnection,
    follows: Sequence[tuple[HoldRecord, HoldUpdate]],
    stop_request_topic: str,
) -> list[tuple[Hold, datetime]]:
    """Follow the money trail of every answer in the transaction that found money moved on:
    their cases locked and read at once, each plan seeing what the plans before it in the
    same case added, and what they add written with one statement per table. Returns the
    holds added, each with when."""
    case_ids = sorted({record.hold.case_id for record, _ in follows})
    # One trail change per case at a time: sibling answers may reach the same account.
    # Locked in id order, so two transactions never wait on each other in a circle.
    await connection.execute(
        select(CaseRow.id)
        .where(db.id_among(CaseRow.id, case_ids))
        .order_by(CaseRow.id)
        .with_for_update()
    )
    rows = await connection.execute(
        select(
            HoldRow.case_id,
            HoldRow.id,
            HoldRow.institution_code,
            AccountRow.account_number,
            HoldRow.layer,
            HoldRow.parent_hold_id,
            HoldRow.amount_asked,
            HoldRow.currency,
            HoldRow.state,
        )
        .join(AccountRow, AccountRow.id == HoldRow.account_id)
        .where(db.id_among(HoldRow.case_id, case_ids))
    )
    nodes: dict[UUID, list[TrailNode]] = {case_id: [] for case_id in case_ids}
    for row in rows:
        nodes[row.case_id].append(
            TrailNode(
                row.id,
                row.institution_code,
                row.account_number,
                row.layer,
                row.parent_hold_id,
                row.amount_asked,
                row.currency,
                HoldState(row.state),
            )
        )
    written = _TrailRows(stop_request_topic)
    for record, change in follows:
        assert change.follow is not None
        case_id = record.hold.case_id
        written.nodes.update({n.hold_id: n for n in nodes[case_id]})
        plan = change.follow(nodes[case_id])
        nodes[case_id] = [
            replace(n, amount_asked=plan.raised.get(n.hold_id, n.amount_asked))
            for n in nodes[case_id]
        ] + [TrailNode.of(h) for h in plan.new_holds]
        written.add(plan, record, change.at)
    if written.accounts:
        await connection.execute(db.insert_new(AccountRow).values(list(written.accounts.values())))
    # One statement per table whatever the number of rows (`insert_rows`): the follows run
    # inside the answers' shared transaction, which waits on every trip.
    await db.insert_rows(connection, HoldRow, written.holds)
    # A merge raises what the hold asks for in the state the hold is in when the row is
    # locked: the case's holds were read unlocked, and an answer committed meanwhile moved the
    # hold on. The update takes the row lock and says that state; the merge's audit row records
    # it (never a state the hold has left: a gap in its trail), and a hold whose state no
    # longer takes a merge is not raised. What the merges ask of the institution is decided on
    # that state too (`merge_asks`, the same rule as `Hold.apply`'s): a first request not out
    # yet asks for the raised amount; one out, or a stop in force, gets one supplement per
    # merge, written with its stop request in the outbox.
    merges: list[Transition] = []
    for raised_id, (amount, at) in written.raised.items():
        now_in = (
            await connection.execute(
                update(HoldRow)
                .where(HoldRow.id == raised_id, HoldRow.state.in_(values(MERGEABLE)))
                .values(amount_asked=amount, version=HoldRow.version + 1, updated_at=at)
                .returning(
                    HoldRow.state,
                    HoldRow.amount_first_request,
                    HoldRow.supplements,
                    HoldRow.reapplications,
                )
            )
        ).one_or_none()
        if now_in is None:
            continue
        state = HoldState(now_in.state)
        merges += [
            replace(m, from_state=state, to_state=state)
            for m in written.merges
            if m.hold_id == raised_id
        ]
        first, supplements = now_in.amount_first_request, now_in.supplements
        for more, merged_from in written.more[raised_id]:
            asks = merge_asks(state, supplements)
            if asks is MergeAsks.FIRST_REQUEST:
                first += more
            elif asks is MergeAsks.SUPPLEMENT:
                supplements += 1
                written.supplement(
                    raised_id, supplements, now_in.reapplications, more, merged_from, at
                )
        if (first, supplements) != (now_in.amount_first_request, now_in.supplements):
            await connection.execute(
                update(HoldRow)
                .where(HoldRow.id == raised_id)
                .values(amount_first_request=first, supplements=supplements)
            )
    await db.insert_rows(connection, HoldTransitionRow, transition_rows(written.births + merges))
    await db.insert_rows(connection, HoldSupplementRow, written.supplements)
    await db.insert_rows(connection, OutboxRow, written.requests)
    await db.insert_rows(connection, TrailEdgeRow, written.edges)
    return written.born


class _TrailRows:
    """What the plans of one transaction add, table by table."""

    def __init__(self, topic: str) -> None:
        self._topic = topic
        self.nodes: dict[UUID, TrailNode] = {}  # the holds of the cases followed
        self.case_of: dict[UUID, UUID] = {}  # raised hold -> its case
        self.accounts: dict[UUID, Row] = {}
        self.holds: list[Row] = []
        self.births: list[Transition] = []
        self.merges: list[Transition] = []
        self.requests: list[Row] = []
        self.raised: dict[UUID, tuple[int, datetime]] = {}
        # Per raised hold, each merge's amount and the hold it left, in the order written.
        self.more: dict[UUID, list[tuple[int, UUID]]] = {}
        self.supplements: list[Row] = []
        self.edges: list[Row] = []
        self.born: list[tuple[Hold, datetime]] = []

    def add(self, plan: TrailPlan, parent: HoldRecord, at: datetime) -> None:
        for h in plan.new_holds:
            account = account_row(h, first_seen_at=at)
            self.accounts.setdefault(account["id"], account)
            born = HoldRecord.born(h, requested_at=at, report_accepted_at=parent.report_accepted_at)
            self.holds.append(hold_row(born, version=h.version, updated_at=at))
            self.requests.append(stop_request_row(self._topic, h.stop_request(at), at))
            self.born.append((h, at))
        self.births += plan.births
        self.merges += plan.merges
        self.raised.update({hold_id: (amount, at) for hold_id, amount in plan.raised.items()})
        for merge, amount in zip(plan.merges, plan.merged_amounts, strict=True):
            self.more.setdefault(merge.hold_id, []).append((amount, parent.hold.id))
            self.case_of[merge.hold_id] = parent.hold.case_id
        self.edges += [
            {
                "case_id": parent.hold.case_id,
                "from_hold_id": e.from_hold_id,
                "to_hold_id": e.to_hold_id,
                "kind": e.transfer.kind.value,
                "institution_code": e.transfer.institution_code,
                "account_number": e.transfer.account_number,
                "amount": e.transfer.amount,
                "amount_traced": e.amount_traced,
                "transferred_at": e.transfer.transferred_at,
                "outcome": e.outcome.value,
                "recorded_at": at,
            }
            for e in plan.edges
        ]

    def supplement(
        self,
        hold_id: UUID,
        number: int,
        generation: int,
        amount: int,
        merged_from: UUID,
        at: datetime,
    ) -> None:
        """Supplement `number` of `hold_id` in its `generation`, for `amount` merged from the
        hold `merged_from`, with its stop request."""
        node = self.nodes[hold_id]
        supplement = Supplement(hold_id, number, generation, amount, merged_from, at)
        self.supplements.append(supplement_row(SupplementRecord(supplement), at))
        request = supplement.request_for(
            self.case_of[hold_id],
            node.institution_code,
            node.account_number,
            node.currency,
            node.layer,
        )
        self.requests.append(stop_request_row(self._topic, request, at))
