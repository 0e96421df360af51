"""The hold's unit of work: load locked, let the use case decide, write the change with
everything that goes with it (transitions, outbox events, the trail, payouts), commit once."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from stopper.adapters.db.case_events import case_events, event_rows
from stopper.adapters.db.dialects import Database
from stopper.adapters.db.errors import store_errors
from stopper.adapters.db.models import (
    CallbackNonceRow,
    CaseRow,
    HoldRow,
    HoldTransitionRow,
    OutboxRow,
    PayoutRow,
)
from stopper.adapters.db.rows import (
    hold_columns,
    hold_record,
    holds_with_accounts,
    outbox_row,
    transition_rows,
)
from stopper.adapters.db.states import LEASED
from stopper.adapters.db.storage import Storage
from stopper.adapters.db.trail import follow_trails
from stopper.app.ports import CallbackNonce, HoldDecision, HoldRecord, HoldUpdate


class HoldStorage(Storage):
    async def update_hold(
        self, hold_id: UUID, decide: HoldDecision
    ) -> tuple[HoldRecord, HoldUpdate] | None:
        """`update_holds` for one hold: its row locked while deciding, so a writer racing
        batches waits its turn."""
        written = await self.update_holds({hold_id: decide})
        return written[0] if written else None

    async def update_holds(
        self,
        decisions: Mapping[UUID, HoldDecision],
        nonces: Mapping[UUID, CallbackNonce] | None = None,
        replayed: set[UUID] | None = None,
    ) -> list[tuple[HoldRecord, HoldUpdate]]:
        if not decisions:
            return []
        with store_errors():
            async with self._db.begin() as connection:
                if nonces:
                    used = await remember_nonces(self._db, connection, nonces)
                    if replayed is not None:
                        replayed.update(used)
                    decisions = {h: d for h, d in decisions.items() if h not in used}
                    if not decisions:
                        return []
                # Lock the rows, in id order so two batches never wait on each other in a
                # circle: the decisions below see what is written, and nobody writes in between.
                # The cases' report ids come along for the events the changes owe.
                rows = await connection.execute(self._locked_read, {"ids": list(decisions)})
                changes = []
                report_ids: dict[UUID, str] = {}
                for row in rows.all():
                    record = hold_record(row)
                    change = decisions[record.hold.id](record)
                    if change is not None:
                        changes.append((record, row.version, change))
                        report_ids[row.case_id] = row.report_id
                await self._write_locked(connection, changes, report_ids)
        return [(record, change) for record, _, change in changes]

    @functools.cached_property
    def _locked_read(self) -> Select[Any]:
        # Built once, the ids bound when it runs: every hold transaction starts with it, most
        # of them (callbacks, small claim batches) of a hold or a few, where building the
        # statement (a join, an entity's columns, the lock) cost more than running it.
        return (
            holds_with_accounts()
            .add_columns(CaseRow.report_id)
            .join(CaseRow, CaseRow.id == HoldRow.case_id)
            .where(self._db.among_ids(HoldRow.id))
            .order_by(HoldRow.id)
            .with_for_update(of=HoldRow)
        )

    async def get_hold(self, hold_id: UUID) -> HoldRecord | None:
        with store_errors():
            async with self._db.read() as connection:
                row = (
                    await connection.execute(holds_with_accounts().where(HoldRow.id == hold_id))
                ).one_or_none()
        return None if row is None else hold_record(row)

    async def renew_leases(self, claims: Mapping[UUID, int], until: datetime) -> list[UUID]:
        if not claims:
            return []
        with store_errors():
            async with self._db.begin() as connection:
                # Locked in id order, as `update_holds` locks, and skipping rows it holds.
                rows = await connection.execute(
                    select(HoldRow.id, HoldRow.attempts)
                    .where(
                        self._db.id_among(HoldRow.id, list(claims)),
                        HoldRow.state == LEASED.value,
                        HoldRow.next_attempt_at < until,
                    )
                    .order_by(HoldRow.id)
                    .with_for_update(skip_locked=True)
                )
                renewed = [r.id for r in rows if claims.get(r.id) == r.attempts]
                if renewed:
                    await connection.execute(
                        update(HoldRow)
                        .where(self._db.id_among(HoldRow.id, renewed))
                        .values(next_attempt_at=until)
                    )
        return renewed

    async def _write_locked(
        self,
        connection: AsyncConnection,
        changes: Sequence[tuple[HoldRecord, int, HoldUpdate]],
        report_ids: Mapping[UUID, str] | None = None,
    ) -> None:
        """Write the changes (record, version read, change) of holds this transaction has
        locked: every change sets the same columns (`hold_columns`), so one statement for all."""
        if not changes:
            return
        rows = [
            {"row_id": record.hold.id, **hold_columns(record, version, change)}
            for record, version, change in changes
        ]
        await self._db.update_by_id(connection, HoldRow, rows)
        await self._write_with(
            connection, [(record, change) for record, _, change in changes], report_ids
        )

    async def _write_checked(
        self, connection: AsyncConnection, record: HoldRecord, version: int, change: HoldUpdate
    ) -> bool:
        """Write `change` if the hold is still at `version`; False if someone changed it (a
        hold this transaction has not locked)."""
        written = await connection.execute(
            update(HoldRow)
            .where(HoldRow.id == record.hold.id, HoldRow.version == version)
            .values(hold_columns(record, version, change))
        )
        if written.rowcount != 1:
            return False
        await self._write_with(connection, [(record, change)])
        return True

    async def _write_with(
        self,
        connection: AsyncConnection,
        changes: Sequence[tuple[HoldRecord, HoldUpdate]],
        report_ids: Mapping[UUID, str] | None = None,
    ) -> None:
        """What goes with written hold changes: transitions, outbox events, the trail, payouts
        (`report_ids`: what the caller read of the changes' cases, by case id)."""
        transitions = [t for _, change in changes for t in change.transitions]
        await self._db.insert_rows(connection, HoldTransitionRow, transition_rows(transitions))
        follows = [(record, change) for record, change in changes if change.follow is not None]
        trail_holds = (
            await follow_trails(self._db, connection, follows, self._stop_request_topic)
            if follows
            else []
        )
        # What the agency is told is derived from what is written here, so no change misses it.
        told = await case_events(self._db, connection, changes, trail_holds, report_ids)
        events = [
            outbox_row(e.topic, e.key, dict(e.payload), change.at)
            for _, change in changes
            for e in change.events
        ] + event_rows(self._case_events_topic, told)
        await self._db.insert_rows(connection, OutboxRow, events)
        for record, change in changes:
            if change.settle_payouts is not None:
                await connection.execute(
                    update(PayoutRow)
                    .where(
                        PayoutRow.hold_id == record.hold.id,
                        PayoutRow.round == record.return_round,
                        PayoutRow.status == "pending",
                    )
                    .values(status=change.settle_payouts, settled_at=change.at)
                )


async def remember_nonces(
    db: Database, connection: AsyncConnection, nonces: Mapping[UUID, CallbackNonce]
) -> set[UUID]:
    """Remember the callbacks' nonces; the holds whose nonce was already used."""
    inserted = await connection.execute(
        db.insert_new(CallbackNonceRow)
        .values(
            [
                {
                    "institution_code": n.institution_code,
                    "nonce": n.nonce,
                    "received_at": n.received_at,
                }
                for n in nonces.values()
            ]
        )
        .returning(CallbackNonceRow.institution_code, CallbackNonceRow.nonce)
    )
    fresh = {(r.institution_code, r.nonce) for r in inserted}
    return {hold_id for hold_id, n in nonces.items() if (n.institution_code, n.nonce) not in fresh}
