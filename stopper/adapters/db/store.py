"""`SqlStore`: the intake store and case queries on SQLAlchemy (PostgreSQL or SQLite)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import (
    Select,
    Table,
    Uuid,
    and_,
    any_,
    bindparam,
    func,
    insert,
    or_,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy import case as sql_case
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import InterfaceError as SAInterfaceError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import TextClause

from stopper.adapters.db.models import (
    AccountRow,
    ApiKeyRow,
    Base,
    CallbackNonceRow,
    CaseRow,
    DivergenceRow,
    HoldRow,
    HoldTransitionRow,
    InstitutionHealthRow,
    OutboxRow,
    PayoutRow,
    Timestamp,
    TrailEdgeRow,
    TransferRow,
    VictimRow,
)
from stopper.app.auth import KeyRole, StoredKey
from stopper.app.health import HealthSnapshot
from stopper.app.ports import (
    CallbackNonce,
    CaseFunds,
    Divergence,
    HoldDecision,
    HoldRecord,
    HoldUpdate,
    OpenedCase,
    OutboxMessage,
    Payout,
    ReconcileItem,
    RecordOutcome,
    ReturnStart,
    VictimTransfer,
)
from stopper.app.views import (
    CaseSummaryView,
    CaseView,
    HoldListView,
    HoldView,
    InstitutionHealthView,
    Overview,
    PayoutView,
    RaceLatencies,
    TrailEdgeView,
    TrailView,
)
from stopper.contracts.institutions import StopRequestV1
from stopper.domain.accounts import account_id, mask_account_number
from stopper.domain.cases import hold_id_for
from stopper.domain.holds import Hold, HoldState, Transition, idempotency_key_for
from stopper.domain.messages import RequestStop
from stopper.domain.returns import FlowEdge
from stopper.domain.trail import TrailNode
from stopper.errors import SchemaNotReady, StoreUnavailable

# A hold still in play: something is owed to it or may still happen to it.
_IN_PLAY = (
    "requested",
    "sent",
    "unconfirmed",
    "stopped",
    "failed",
    "frozen",
    "returning",
)
# States whose next attempt (a retry, a lapsed lease, a status inquiry) the retry sweeper makes.
_ATTEMPTED = ("sent", "unconfirmed")

# Errors that mean "the database is not there right now", as opposed to a bug in a statement.
_UNAVAILABLE = (OperationalError, SAInterfaceError, OSError, ConnectionError)


class SqlStore:
    def __init__(self, engine: AsyncEngine, stop_request_topic: str) -> None:
        self._engine = engine
        self._stop_request_topic = stop_request_topic
        dialect = engine.dialect.name
        self._insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        # Reads run without a transaction on PostgreSQL: under READ COMMITTED each statement
        # sees its own snapshot either way, and BEGIN and ROLLBACK were two of a lone read's
        # three round trips (the api asks for a report's fingerprint before publishing it).
        self._reads = (
            engine.execution_options(isolation_level="AUTOCOMMIT")
            if dialect == "postgresql"
            else engine
        )

    async def ping(self) -> bool:
        try:
            async with self._reads.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except (*_UNAVAILABLE, DBAPIError):
            return False
        return True

    async def case_fingerprint(self, case_id: UUID) -> str | None:
        with _store_errors():
            async with self._reads.connect() as connection:
                fingerprint: str | None = await connection.scalar(
                    select(CaseRow.report_fingerprint).where(CaseRow.id == case_id)
                )
                return fingerprint

    async def record_opened_cases(
        self, cases: Sequence[OpenedCase], claim: HoldDecision | None = None
    ) -> RecordOutcome:
        with _store_errors():
            if self._engine.dialect.name == "postgresql":
                return await self._record_at_once(cases, claim)
            async with self._engine.begin() as connection:
                # Claim the case ids first: a case another transaction (or an earlier delivery)
                # already recorded is skipped whole, so a redelivered report never doubles
                # anything.
                inserted = await connection.execute(
                    self._insert(CaseRow)
                    .values([_case_row(c) for c in cases])
                    .on_conflict_do_nothing()
                    .returning(CaseRow.id)
                )
                created = set(inserted.scalars())
                already_known = await self._fingerprints(
                    connection, {c.case.id for c in cases} - created
                )
                rows = _CaseRows.of([c for c in cases if c.case.id in created], claim)
                if rows.accounts:
                    await connection.execute(
                        self._insert(AccountRow).on_conflict_do_nothing(), rows.accounts
                    )
                for model, values in rows.children():
                    await self._insert_rows(connection, model, values)
        return RecordOutcome(
            created=[c.case.id for c in cases if c.case.id in created],
            already_known=already_known,
            claimed=rows.claimed,
        )

    async def _record_at_once(
        self, cases: Sequence[OpenedCase], claim: HoldDecision | None
    ) -> RecordOutcome:
        """PostgreSQL: every row of the batch in one statement (`_record_cases`), which commits
        by itself: one round trip instead of a transaction of eight. A case that was already
        there is left out whole, as are its rows."""
        rows = _CaseRows.of(cases, claim)
        params: dict[str, list[Any]] = {}
        tables: list[tuple[type[Base], list[dict[str, Any]]]] = [
            (CaseRow, [_case_row(c) for c in cases]),
            *rows.all(),
        ]
        for model, values in tables:
            name = model.__tablename__
            columns = _RECORD_COLUMNS[name]
            written = set(columns)
            for row in values:
                if not row.keys() <= written:
                    raise ValueError(f"{name}: {sorted(row.keys() - written)} not written")
            for column in columns:
                params[f"{name}__{column}"] = [row.get(column) for row in values]
        async with self._reads.connect() as connection:
            inserted = await connection.execute(_record_cases(connection.dialect), params)
            created = set(inserted.scalars())
            already_known = await self._fingerprints(
                connection, {c.case.id for c in cases} - created
            )
        return RecordOutcome(
            created=[c.case.id for c in cases if c.case.id in created],
            already_known=already_known,
            claimed=[(r, c) for r, c in rows.claimed if r.hold.case_id in created],
        )

    async def _fingerprints(self, connection: AsyncConnection, ids: set[UUID]) -> dict[UUID, str]:
        if not ids:
            return {}
        rows = await connection.execute(
            select(CaseRow.id, CaseRow.report_fingerprint).where(CaseRow.id.in_(ids))
        )
        return {row.id: row.report_fingerprint for row in rows}

    async def get_case(self, case_id: UUID) -> CaseView | None:
        with _store_errors():
            async with self._reads.connect() as connection:
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
        with _store_errors():
            async with self._reads.connect() as connection:
                agency = await connection.scalar(
                    select(CaseRow.agency_code).where(CaseRow.id == case_id)
                )
                return None if agency is None else str(agency)

    async def list_cases(
        self, *, active_only: bool, limit: int, agency_code: str | None = None
    ) -> list[CaseSummaryView]:
        """The newest cases first; `active_only`: cases with a hold still in play;
        `agency_code`: that agency's cases only."""
        with _store_errors():
            async with self._reads.connect() as connection:
                query = select(CaseRow).order_by(CaseRow.opened_at.desc()).limit(limit)
                if agency_code is not None:
                    query = query.where(CaseRow.agency_code == agency_code)
                if active_only:
                    query = query.where(
                        CaseRow.id.in_(select(HoldRow.case_id).where(HoldRow.state.in_(_IN_PLAY)))
                    )
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
                                func.min(
                                    sql_case((HoldRow.state == "stopped", HoldRow.stop_expires_at))
                                ),
                                Timestamp,
                            ),
                        )
                        .where(HoldRow.case_id.in_(ids))
                        .group_by(HoldRow.case_id, HoldRow.state, HoldRow.currency)
                    )
                ).all()
        by_state: dict[UUID, dict[str, int]] = {}
        asked: dict[UUID, dict[str, int]] = {}
        stopped: dict[UUID, dict[str, int]] = {}
        lapse: dict[UUID, datetime] = {}
        for case_id, state, currency, count, ask, stop, expires in rows:
            states = by_state.setdefault(case_id, {})
            states[state] = states.get(state, 0) + int(count)
            for into, amount in ((asked, ask), (stopped, stop)):
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
                amount_stopped=stopped.get(c.id, {}),
                next_lapse_at=lapse.get(c.id),
            )
            for c in cases
        ]

    async def list_holds(
        self, *, states: Sequence[str], limit: int, soonest_first: bool = False
    ) -> list[HoldListView]:
        """Holds in `states`: the most recently changed first, or the closest to their
        deadline first."""
        expires = sql_case(
            (HoldRow.state == "stopped", HoldRow.stop_expires_at),
            (HoldRow.state == "frozen", HoldRow.freeze_expires_at),
            # An unconfirmed hold's deadline: when Stopper gives up on hearing from it.
            (HoldRow.state == "unconfirmed", HoldRow.dispatch_deadline_at),
        )
        order = expires.asc() if soonest_first else HoldRow.updated_at.desc()
        with _store_errors():
            async with self._reads.connect() as connection:
                rows = (
                    await connection.execute(
                        select(HoldRow, AccountRow.account_number)
                        .join(AccountRow, AccountRow.id == HoldRow.account_id)
                        .where(HoldRow.state.in_(list(states)))
                        .order_by(order, HoldRow.id)
                        .limit(limit)
                    )
                ).all()
        return [
            HoldListView(
                hold=_hold_view(row),
                case_id=row.case_id,
                state_reason=row.state_reason,
                expires_at=row.stop_expires_at
                if row.state == "stopped"
                else row.freeze_expires_at
                if row.state == "frozen"
                else row.dispatch_deadline_at
                if row.state == "unconfirmed"
                else None,
            )
            for row in rows
        ]

    async def save_health(
        self, instance: str, snapshots: Sequence[HealthSnapshot], at: datetime
    ) -> None:
        if not snapshots:
            return
        rows = [
            {
                "instance": instance,
                "institution_code": s.institution_code,
                "breaker_state": s.breaker_state,
                "attempts": s.attempts,
                "failures": s.failures,
                "latency_p95_ms": s.latency_p95_ms,
                "updated_at": at,
            }
            for s in snapshots
        ]
        statement = self._insert(InstitutionHealthRow).values(rows)
        with _store_errors():
            async with self._engine.begin() as connection:
                await connection.execute(
                    statement.on_conflict_do_update(
                        index_elements=["instance", "institution_code"],
                        set_={
                            name: statement.excluded[name]
                            for name in (
                                "breaker_state",
                                "attempts",
                                "failures",
                                "latency_p95_ms",
                                "updated_at",
                            )
                        },
                    )
                )

    async def institution_health(self, since: datetime) -> list[InstitutionHealthView]:
        """Every institution some instance reported on since `since`, worst view first."""
        with _store_errors():
            async with self._reads.connect() as connection:
                rows = (
                    await connection.execute(
                        select(
                            InstitutionHealthRow.institution_code,
                            func.count(),
                            func.max(InstitutionHealthRow.breaker_state),
                            func.sum(InstitutionHealthRow.attempts),
                            func.sum(InstitutionHealthRow.failures),
                            func.max(InstitutionHealthRow.latency_p95_ms),
                            type_coerce(func.max(InstitutionHealthRow.updated_at), Timestamp),
                        )
                        .where(InstitutionHealthRow.updated_at >= since)
                        .group_by(InstitutionHealthRow.institution_code)
                    )
                ).all()
        return [
            InstitutionHealthView(
                institution_code=code,
                instances=int(instances),
                breaker_state=int(breaker),
                attempts=int(attempts or 0),
                failures=int(failures or 0),
                latency_p95_ms=None if p95 is None else float(p95),
                updated_at=Timestamp.process_result_value(updated, self._engine.dialect) or since,
            )
            for code, instances, breaker, attempts, failures, p95, updated in rows
        ]

    async def add_api_key(self, key: StoredKey) -> None:
        with _store_errors():
            async with self._engine.begin() as connection:
                await connection.execute(
                    insert(ApiKeyRow).values(
                        key_id=key.key_id,
                        agency_code=key.agency_code,
                        role=key.role.value,
                        secret_sha256=key.secret_sha256,
                        label=key.label,
                        created_at=key.created_at,
                        revoked_at=key.revoked_at,
                    )
                )

    async def get_api_key(self, key_id: str) -> StoredKey | None:
        with _store_errors():
            async with self._reads.connect() as connection:
                row = (
                    await connection.execute(select(ApiKeyRow).where(ApiKeyRow.key_id == key_id))
                ).one_or_none()
        return None if row is None else _stored_key(row)

    async def list_api_keys(self) -> list[StoredKey]:
        with _store_errors():
            async with self._reads.connect() as connection:
                rows = await connection.execute(select(ApiKeyRow).order_by(ApiKeyRow.created_at))
                return [_stored_key(row) for row in rows]

    async def revoke_api_key(self, key_id: str, at: datetime) -> bool:
        with _store_errors():
            async with self._engine.begin() as connection:
                done = await connection.execute(
                    update(ApiKeyRow)
                    .where(ApiKeyRow.key_id == key_id, ApiKeyRow.revoked_at.is_(None))
                    .values(revoked_at=at)
                )
                return done.rowcount == 1

    async def get_trail(self, case_id: UUID) -> TrailView | None:
        case = await self.get_case(case_id)
        if case is None:
            return None
        with _store_errors():
            async with self._reads.connect() as connection:
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
        with _store_errors():
            async with self._reads.connect() as connection:
                cases = await connection.scalar(select(func.count()).select_from(CaseRow))
                by_state, pending = await self._counts(connection)
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
        with _store_errors():
            async with self._reads.connect() as connection:
                return await self._counts(connection)

    async def _counts(self, connection: AsyncConnection) -> tuple[dict[str, int], int]:
        by_state = await connection.execute(
            select(HoldRow.state, func.count()).group_by(HoldRow.state)
        )
        pending = await connection.scalar(
            select(func.count()).select_from(OutboxRow).where(OutboxRow.published_at.is_(None))
        )
        return {row[0]: int(row[1]) for row in by_state}, int(pending or 0)

    async def deadline_counts(self, events_topic: str) -> tuple[int, int, int]:
        """Lapse warnings sent, lapses, and silent lapses so far (demo, operators)."""
        with _store_errors():
            async with self._reads.connect() as connection:
                payloads = (
                    await connection.execute(
                        select(OutboxRow.payload).where(OutboxRow.topic == events_topic)
                    )
                ).scalars()
                kinds = [p.get("event") for p in payloads]
                silent = await connection.scalar(
                    select(func.count())
                    .select_from(HoldTransitionRow)
                    .where(
                        HoldTransitionRow.to_state == "expired",
                        HoldTransitionRow.cause.contains("had not gone out"),
                    )
                )
        return kinds.count("stop_expiring"), kinds.count("stop_lapsed"), int(silent or 0)

    async def race_latencies(self) -> RaceLatencies:
        """Every case's and hold's latencies from the report's acceptance (demo, benchmarks)."""

        def ms(later: datetime | None, earlier: datetime | None) -> float | None:
            if later is None or earlier is None:
                return None
            return (later - earlier).total_seconds() * 1000

        with _store_errors():
            async with self._reads.connect() as connection:
                cases = await connection.execute(select(CaseRow.accepted_at, CaseRow.opened_at))
                holds = (
                    await connection.execute(
                        select(
                            HoldRow.report_accepted_at, HoldRow.sent_at, HoldRow.confirmed_at
                        ).where(HoldRow.layer == 1, HoldRow.reapplications == 0)
                    )
                ).all()
        opened = [ms(r.opened_at, r.accepted_at) for r in cases]
        requested = [ms(r.sent_at, r.report_accepted_at) for r in holds]
        confirmed = [ms(r.confirmed_at, r.report_accepted_at) for r in holds]
        return RaceLatencies(
            case_opened_ms=tuple(v for v in opened if v is not None),
            stop_requested_ms=tuple(v for v in requested if v is not None),
            stop_confirmed_ms=tuple(v for v in confirmed if v is not None),
        )

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
        with _store_errors():
            async with self._engine.begin() as connection:
                if nonces:
                    used = await self._remember_nonces(connection, nonces)
                    if replayed is not None:
                        replayed.update(used)
                    decisions = {h: d for h, d in decisions.items() if h not in used}
                    if not decisions:
                        return []
                # Lock the rows, in id order so two batches never wait on each other in a
                # circle: the decisions below see what is written, and nobody writes in between.
                ids = list(decisions)
                rows = await connection.execute(
                    select(HoldRow, AccountRow.account_number)
                    .join(AccountRow, AccountRow.id == HoldRow.account_id)
                    .where(self._id_among(HoldRow.id, ids))
                    .order_by(HoldRow.id)
                    .with_for_update(of=HoldRow)
                )
                changes = []
                for row in rows.all():
                    record = _hold_record(row)
                    change = decisions[record.hold.id](record)
                    if change is not None:
                        changes.append((record, row.version, change))
                await self._write_locked(connection, changes)
        return [(record, change) for record, _, change in changes]

    def _id_among(self, column: Any, ids: Sequence[UUID]) -> Any:
        """`column IN ids`; on PostgreSQL `= ANY($1)`, one statement whatever the number of
        ids, so it is prepared once (an IN list is a new statement for each length)."""
        if self._engine.dialect.name == "postgresql":
            return column == any_(bindparam("ids", ids, type_=postgresql.ARRAY(Uuid)))
        return column.in_(ids)

    async def _insert_rows(
        self, connection: AsyncConnection, model: type[Base], rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """Insert rows that all have the same keys. On PostgreSQL: one statement over `unnest`
        arrays, whatever the number of rows (one round trip, one execution, prepared once; an
        executemany is one execution per row). On SQLite, the embedded default, an
        executemany."""
        if not rows:
            return
        table = model.__table__
        assert isinstance(table, Table)
        if connection.dialect.name != "postgresql":
            await connection.execute(insert(table), list(rows))
            return
        columns = tuple(rows[0])
        await connection.execute(
            _unnest_insert(connection.dialect, table, columns),
            {column: [row[column] for row in rows] for column in columns},
        )

    async def _write_hold(
        self, connection: AsyncConnection, record: HoldRecord, version: int, change: HoldUpdate
    ) -> bool:
        """Write `change` if the hold is still at `version`; False if someone changed it."""
        written = await connection.execute(
            update(HoldRow)
            .where(HoldRow.id == record.hold.id, HoldRow.version == version)
            .values(_hold_columns(record, version, change))
        )
        if written.rowcount != 1:
            return False
        await self._write_with(connection, [(record, change)])
        return True

    async def _write_locked(
        self, connection: AsyncConnection, changes: Sequence[tuple[HoldRecord, int, HoldUpdate]]
    ) -> None:
        """Write the changes (record, version read, change) of holds this transaction has
        locked: every change sets the same columns (`_hold_columns`), so one statement for all."""
        if not changes:
            return
        rows = [
            {"hold_id": record.hold.id, **_hold_columns(record, version, change)}
            for record, version, change in changes
        ]
        table = HoldRow.__table__
        assert isinstance(table, Table)
        if connection.dialect.name == "postgresql":
            # One statement over arrays, as `_insert_rows` does for inserts.
            shape = tuple(rows[0])[1:]
            await connection.execute(
                _unnest_update(connection.dialect, table, shape),
                {c: [row[c] for row in rows] for c in ("hold_id", *shape)},
            )
        else:
            statement = update(table).where(table.c.id == bindparam("hold_id"))
            await connection.execute(statement, rows)
        await self._write_with(connection, [(record, change) for record, _, change in changes])

    async def _write_with(
        self, connection: AsyncConnection, changes: Sequence[tuple[HoldRecord, HoldUpdate]]
    ) -> None:
        """What goes with written hold changes: transitions, outbox events, the trail, payouts."""
        transitions = [t for _, change in changes for t in change.transitions]
        await self._insert_rows(connection, HoldTransitionRow, _transition_rows(transitions))
        events = [
            {
                "topic": e.topic,
                "key": e.key,
                "payload": dict(e.payload),
                "headers": {},
                "created_at": change.at,
                "published_at": None,
            }
            for _, change in changes
            for e in change.events
        ]
        if events:
            await connection.execute(insert(OutboxRow), events)
        follows = [(record, change) for record, change in changes if change.follow is not None]
        if follows:
            await self._follow_trails(connection, follows)
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

    async def start_returns(
        self, case_id: UUID, decide: Callable[[CaseFunds], Sequence[ReturnStart]]
    ) -> Sequence[ReturnStart] | None:
        with _store_errors():
            for _ in range(_MAX_CONFLICT_RETRIES):
                async with self._engine.begin() as connection:
                    locked = await connection.execute(
                        select(CaseRow.id).where(CaseRow.id == case_id).with_for_update()
                    )
                    if locked.one_or_none() is None:
                        return None
                    funds = await self._case_funds(connection, case_id)
                    starts = decide(funds)
                    records = {r.hold.id: r for r in funds.holds}
                    conflict = False
                    for start in starts:
                        if not await self._write_hold(
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
                            [
                                {
                                    "case_id": case_id,
                                    "hold_id": p.hold_id,
                                    "round": p.round,
                                    "victim_ref": p.victim_ref,
                                    "currency": p.currency,
                                    "amount": p.amount,
                                    "institution_code": p.institution_code,
                                    "account_number": p.account_number,
                                    "status": p.status,
                                    "ordered_at": ordered_at,
                                    "settled_at": None,
                                }
                                for p in payouts
                            ],
                        )
                    return starts
        raise StoreUnavailable(f"holds kept changing under {_MAX_CONFLICT_RETRIES} attempts")

    async def _case_funds(self, connection: AsyncConnection, case_id: UUID) -> CaseFunds:
        holds = await connection.execute(
            select(HoldRow, AccountRow.account_number)
            .join(AccountRow, AccountRow.id == HoldRow.account_id)
            .where(HoldRow.case_id == case_id)
        )
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
                TrailEdgeRow.outcome.in_(("followed", "merged")),
                TrailEdgeRow.to_hold_id.is_not(None),
            )
            .order_by(TrailEdgeRow.id)
        )
        payouts = await connection.execute(
            select(PayoutRow).where(PayoutRow.case_id == case_id).order_by(PayoutRow.id)
        )
        return CaseFunds(
            holds=[_hold_record(row) for row in holds],
            transfers=[VictimTransfer(*row) for row in transfers],
            edges=[FlowEdge(*row) for row in edges],
            payouts=[_payout(row) for row in payouts],
        )

    async def payouts_of(self, hold_id: UUID, round: int) -> list[Payout]:
        with _store_errors():
            async with self._reads.connect() as connection:
                rows = await connection.execute(
                    select(PayoutRow)
                    .where(PayoutRow.hold_id == hold_id, PayoutRow.round == round)
                    .order_by(PayoutRow.victim_ref)
                )
                return [_payout(row) for row in rows]

    async def returns_due(self, now: datetime, limit: int) -> list[UUID]:
        with _store_errors():
            async with self._reads.connect() as connection:
                rows = await connection.execute(
                    select(HoldRow.id)
                    .where(HoldRow.state == "returning", HoldRow.return_next_attempt_at <= now)
                    .order_by(HoldRow.return_next_attempt_at)
                    .limit(limit)
                )
                return list(rows.scalars())

    async def _follow_trails(
        self, connection: AsyncConnection, follows: Sequence[tuple[HoldRecord, HoldUpdate]]
    ) -> None:
        """Follow the money trail of every answer in the transaction that found money moved
        on: their cases locked and read at once, each plan seeing what the plans before it in
        the same case added, and what they add written with one statement per table."""
        case_ids = sorted({record.hold.case_id for record, _ in follows})
        # One trail change per case at a time: sibling answers may reach the same account.
        # Locked in id order, so two transactions never wait on each other in a circle.
        await connection.execute(
            select(CaseRow.id)
            .where(self._id_among(CaseRow.id, case_ids))
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
            .where(self._id_among(HoldRow.case_id, case_ids))
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
        accounts: dict[UUID, dict[str, Any]] = {}
        holds: list[dict[str, Any]] = []
        audit: list[Transition] = []  # births and merges
        requests: list[dict[str, Any]] = []
        raised: dict[UUID, tuple[int, datetime]] = {}
        edges: list[dict[str, Any]] = []
        for record, change in follows:
            assert change.follow is not None
            case_id, at = record.hold.case_id, change.at
            plan = change.follow(nodes[case_id])
            nodes[case_id] = [
                replace(n, amount_asked=plan.raised.get(n.hold_id, n.amount_asked))
                for n in nodes[case_id]
            ] + [TrailNode.of(h) for h in plan.new_holds]
            for h in plan.new_holds:
                accounts.setdefault(
                    account_id(h.institution_code, h.account_number),
                    {
                        "id": account_id(h.institution_code, h.account_number),
                        "institution_code": h.institution_code,
                        "account_number": h.account_number,
                        "holder_name": None,
                        "first_seen_at": at,
                    },
                )
                born = HoldRecord.born(
                    h, requested_at=at, report_accepted_at=record.report_accepted_at
                )
                holds.append(_hold_row(born, version=h.version, updated_at=at))
                requests.append(_stop_request_row(self._stop_request_topic, h.stop_request(at), at))
            audit += plan.births + plan.merges
            raised.update({hold_id: (amount, at) for hold_id, amount in plan.raised.items()})
            edges += [
                {
                    "case_id": case_id,
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
        if accounts:
            await connection.execute(
                self._insert(AccountRow).values(list(accounts.values())).on_conflict_do_nothing()
            )
        # One statement per table whatever the number of rows (`_insert_rows`): the follows
        # run inside the answers' shared transaction, which waits on every trip.
        await self._insert_rows(connection, HoldRow, holds)
        await self._insert_rows(connection, HoldTransitionRow, _transition_rows(audit))
        if requests:
            # JSON payloads: no array parameter for them, an executemany.
            await connection.execute(insert(OutboxRow), requests)
        for raised_id, (amount, at) in raised.items():
            await connection.execute(
                update(HoldRow)
                .where(HoldRow.id == raised_id)
                .values(amount_asked=amount, version=HoldRow.version + 1, updated_at=at)
            )
        await self._insert_rows(connection, TrailEdgeRow, edges)

    async def get_hold(self, hold_id: UUID) -> HoldRecord | None:
        with _store_errors():
            async with self._reads.connect() as connection:
                row = (await connection.execute(_hold_with_account(hold_id))).one_or_none()
        return None if row is None else _hold_record(row)

    async def holds_near_deadline(
        self,
        now: datetime,
        stop_leads: Sequence[timedelta],
        freeze_leads: Sequence[timedelta],
        limit: int,
    ) -> list[UUID]:
        def due(state: str, expires: Any, leads: Sequence[timedelta]) -> Any:
            owed_warning = [
                and_(HoldRow.warnings_sent == i, expires <= now + lead)
                for i, lead in enumerate(sorted(leads, reverse=True))
            ]
            # The bound by the longest lead says nothing new, but lets the (state, expiry)
            # index find the few that are close rather than reading every stopped hold.
            return and_(
                HoldRow.state == state,
                expires <= now + max(leads, default=timedelta(0)),
                or_(expires <= now, *owed_warning),
            )

        with _store_errors():
            async with self._reads.connect() as connection:
                rows = await connection.execute(
                    select(HoldRow.id)
                    .where(
                        or_(
                            due("stopped", HoldRow.stop_expires_at, stop_leads),
                            due("frozen", HoldRow.freeze_expires_at, freeze_leads),
                        )
                    )
                    # The most urgent first: a backlog delays the warnings that can wait.
                    .order_by(
                        sql_case(
                            (HoldRow.state == "stopped", HoldRow.stop_expires_at),
                            else_=HoldRow.freeze_expires_at,
                        )
                    )
                    .limit(limit)
                )
                return list(rows.scalars())

    async def freezes_due(self, now: datetime, limit: int) -> list[UUID]:
        with _store_errors():
            async with self._reads.connect() as connection:
                rows = await connection.execute(
                    select(HoldRow.id)
                    .where(
                        HoldRow.state.in_(("stopped", "frozen")),
                        HoldRow.freeze_next_attempt_at <= now,
                    )
                    .order_by(HoldRow.freeze_next_attempt_at)
                    .limit(limit)
                )
                return list(rows.scalars())

    async def count_expiring(self, now: datetime, within: timedelta) -> int:
        with _store_errors():
            async with self._reads.connect() as connection:
                count = await connection.scalar(
                    select(func.count())
                    .select_from(HoldRow)
                    .where(HoldRow.state == "stopped", HoldRow.stop_expires_at <= now + within)
                )
                return int(count or 0)

    async def due_holds(self, now: datetime, requested_before: datetime, limit: int) -> list[UUID]:
        with _store_errors():
            async with self._reads.connect() as connection:
                rows = await connection.execute(
                    select(HoldRow.id)
                    .where(
                        or_(
                            and_(
                                HoldRow.state.in_(_ATTEMPTED),
                                HoldRow.next_attempt_at <= now,
                            ),
                            and_(
                                HoldRow.state == "requested",
                                HoldRow.requested_at <= requested_before,
                                or_(
                                    HoldRow.next_attempt_at.is_(None),
                                    HoldRow.next_attempt_at <= now,
                                ),
                            ),
                        )
                    )
                    .order_by(HoldRow.next_attempt_at)
                    .limit(limit)
                )
                return list(rows.scalars())

    async def renew_leases(self, claims: Mapping[UUID, int], until: datetime) -> list[UUID]:
        if not claims:
            return []
        with _store_errors():
            async with self._engine.begin() as connection:
                # Locked in id order, as `update_holds` locks, and skipping rows it holds.
                rows = await connection.execute(
                    select(HoldRow.id, HoldRow.attempts)
                    .where(
                        self._id_among(HoldRow.id, list(claims)),
                        HoldRow.state == "sent",
                        HoldRow.next_attempt_at < until,
                    )
                    .order_by(HoldRow.id)
                    .with_for_update(skip_locked=True)
                )
                renewed = [r.id for r in rows if claims.get(r.id) == r.attempts]
                if renewed:
                    await connection.execute(
                        update(HoldRow)
                        .where(self._id_among(HoldRow.id, renewed))
                        .values(next_attempt_at=until)
                    )
        return renewed

    async def relay_outbox(
        self, publish: Callable[[Sequence[OutboxMessage]], Awaitable[None]], limit: int
    ) -> int:
        with _store_errors():
            # Polled 20 times a second by every instance: an empty outbox costs one read
            # rather than a transaction of three round trips.
            async with self._reads.connect() as connection:
                pending = await connection.execute(
                    select(OutboxRow.id).where(OutboxRow.published_at.is_(None)).limit(1)
                )
                if pending.first() is None:
                    return 0
            async with self._engine.begin() as connection:
                rows = (
                    await connection.execute(
                        select(OutboxRow)
                        .where(OutboxRow.published_at.is_(None))
                        .order_by(OutboxRow.id)
                        .limit(limit)
                        .with_for_update(skip_locked=True)
                    )
                ).all()
                if not rows:
                    return 0
                await publish(
                    [OutboxMessage(r.id, r.topic, r.key, r.payload, r.headers) for r in rows]
                )
                await connection.execute(
                    update(OutboxRow)
                    .where(OutboxRow.id.in_([r.id for r in rows]))
                    .values(published_at=func.now())
                )
                return len(rows)

    async def holds_to_reconcile(
        self, institution_code: str, accepted_before: datetime, limit: int
    ) -> list[ReconcileItem]:
        """The institution's holds whose outcome Stopper does not know: unconfirmed since
        before `accepted_before`, or failed after a request was sent; oldest change first."""
        with _store_errors():
            async with self._reads.connect() as connection:
                rows = await connection.execute(
                    select(HoldRow.id, HoldRow.state, HoldRow.reapplications)
                    .where(
                        HoldRow.institution_code == institution_code,
                        or_(
                            and_(
                                HoldRow.state == HoldState.UNCONFIRMED.value,
                                HoldRow.accepted_at <= accepted_before,
                            ),
                            and_(HoldRow.state == HoldState.FAILED.value, HoldRow.attempts > 0),
                        ),
                    )
                    .order_by(HoldRow.updated_at)
                    .limit(limit)
                )
                return [
                    ReconcileItem(
                        r.id, idempotency_key_for(r.id, r.reapplications), HoldState(r.state)
                    )
                    for r in rows
                ]

    async def record_divergence(self, divergence: Divergence) -> None:
        with _store_errors():
            async with self._engine.begin() as connection:
                await connection.execute(insert(DivergenceRow).values(asdict(divergence)))

    async def recent_divergences(self, limit: int) -> list[Divergence]:
        with _store_errors():
            async with self._reads.connect() as connection:
                rows = await connection.execute(
                    select(DivergenceRow).order_by(DivergenceRow.found_at.desc()).limit(limit)
                )
                return [
                    Divergence(
                        r.hold_id,
                        r.institution_code,
                        r.stopper_state,
                        r.institution_status,
                        r.found_at,
                    )
                    for r in rows
                ]

    async def count_unconfirmed(self, accepted_before: datetime) -> int:
        """Holds unconfirmed since before `accepted_before` (the alert's gauge)."""
        with _store_errors():
            async with self._reads.connect() as connection:
                count = await connection.scalar(
                    select(func.count())
                    .select_from(HoldRow)
                    .where(
                        HoldRow.state == HoldState.UNCONFIRMED.value,
                        HoldRow.accepted_at <= accepted_before,
                    )
                )
                return int(count or 0)

    async def _remember_nonces(
        self, connection: AsyncConnection, nonces: Mapping[UUID, CallbackNonce]
    ) -> set[UUID]:
        """Remember the callbacks' nonces; the holds whose nonce was already used."""
        inserted = await connection.execute(
            self._insert(CallbackNonceRow)
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
            .on_conflict_do_nothing()
            .returning(CallbackNonceRow.institution_code, CallbackNonceRow.nonce)
        )
        fresh = {(r.institution_code, r.nonce) for r in inserted}
        return {
            hold_id for hold_id, n in nonces.items() if (n.institution_code, n.nonce) not in fresh
        }


_MAX_CONFLICT_RETRIES = 5


@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    """The database not being there is `StoreUnavailable` (retryable); a table or column it does
    not have is `SchemaNotReady` (a migration has not run yet); anything else is a bug."""
    try:
        yield
    except DBAPIError as e:
        # The driver's own error: SQLite says "no such table: ..." or "no such column: ...";
        # PostgreSQL's SQLSTATE is 42P01 (undefined table) or 42703 (undefined column).
        said = str(getattr(e.orig, "__cause__", None) or e.orig).partition("\n")[0]
        if getattr(e.orig, "sqlstate", None) in ("42P01", "42703") or said.startswith(
            ("no such table", "no such column")
        ):
            raise SchemaNotReady(
                f"the database schema is behind this Stopper ({said}): run `stopper migrate`"
            ) from e
        if isinstance(e, _UNAVAILABLE):
            raise StoreUnavailable(f"database unreachable: {type(e).__name__}") from e
        raise
    except _UNAVAILABLE as e:
        raise StoreUnavailable(f"database unreachable: {type(e).__name__}") from e


@dataclass(slots=True)
class _CaseRows:
    """The rows of opened cases other than the cases themselves, and the claims decided on
    their new holds (which change the holds' rows and add transitions)."""

    accounts: list[dict[str, Any]]
    victims: list[dict[str, Any]]
    holds: list[dict[str, Any]]
    transfers: list[dict[str, Any]]
    transitions: list[dict[str, Any]]
    claimed: list[tuple[HoldRecord, HoldUpdate]]

    @classmethod
    def of(cls, cases: Sequence[OpenedCase], claim: HoldDecision | None) -> _CaseRows:
        accounts: dict[UUID, dict[str, Any]] = {}
        rows = cls([], [], [], [], [], [])
        for opened in cases:
            case = opened.case
            rows.victims += [
                {"case_id": case.id, "victim_ref": v.victim_ref, "name": v.name}
                for v in opened.victims
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
                        "hold_id": hold_id_for(case.id, account),
                        "amount": t.amount,
                        "currency": t.currency,
                        "transferred_at": t.transferred_at,
                        "channel": t.channel,
                        "reference": t.reference,
                    }
                )
            rows.transitions += _transition_rows(opened.births)
            for h in case.holds:
                version = h.version  # as born: a claim moves the hold on
                born = HoldRecord.born(
                    h, requested_at=case.opened_at, report_accepted_at=opened.accepted_at
                )
                change = None if claim is None else claim(born)
                if change is None:
                    rows.holds.append(_hold_row(born, version=version, updated_at=case.opened_at))
                    continue
                rows.holds.append(_hold_row(born, version=version, update=change))
                rows.transitions += _transition_rows(change.transitions)
                rows.claimed.append((born, change))
        # In id order: two batches that share accounts take their index entries in one order.
        rows.accounts = [accounts[k] for k in sorted(accounts)]
        return rows

    def children(self) -> list[tuple[type[Base], list[dict[str, Any]]]]:
        """What is inserted after the cases and accounts, parents first."""
        return [
            (VictimRow, self.victims),
            (HoldRow, self.holds),
            (TransferRow, self.transfers),
            (HoldTransitionRow, self.transitions),
        ]

    def all(self) -> list[tuple[type[Base], list[dict[str, Any]]]]:
        return [(AccountRow, self.accounts), *self.children()]


# The columns `_record_cases` writes, per table (what `_case_row`, `_CaseRows` and
# `_hold_row` give).
_RECORD_COLUMNS: dict[str, tuple[str, ...]] = {
    "cases": (
        "id",
        "report_id",
        "agency_code",
        "report_fingerprint",
        "source",
        "reported_at",
        "accepted_at",
        "opened_at",
    ),
    "accounts": ("id", "institution_code", "account_number", "holder_name", "first_seen_at"),
    "victims": ("case_id", "victim_ref", "name"),
    "holds": tuple(HoldRow.__table__.columns.keys()),
    "transfers": (
        "case_id",
        "seq",
        "victim_ref",
        "victim_institution_code",
        "victim_account_number",
        "receiving_account_id",
        "hold_id",
        "amount",
        "currency",
        "transferred_at",
        "channel",
        "reference",
    ),
    "hold_transitions": ("hold_id", "from_state", "to_state", "event", "cause", "actor", "at"),
}


@functools.cache
def _record_cases(dialect: Dialect) -> TextClause:
    """One statement for a batch of opened cases: the cases that are new (`ON CONFLICT DO
    NOTHING` on their ids), then only their victims, holds, transfers and transitions; the
    accounts any of them name. Returns the ids of the new cases. Foreign keys are checked at
    the end of the statement, when every row is in."""
    tables = {t.name: t for t in Base.metadata.sorted_tables}

    def rows(name: str) -> str:
        columns = _RECORD_COLUMNS[name]
        arrays = _arrays(dialect, tables[name], columns, prefix=f"{name}__")
        return f"SELECT * FROM unnest({arrays}) AS r({', '.join(columns)})"

    def insert(name: str) -> str:
        return f"INSERT INTO {name} ({', '.join(_RECORD_COLUMNS[name])}) "

    return text(
        f"WITH new_cases AS ({insert('cases')}{rows('cases')} "
        "ON CONFLICT DO NOTHING RETURNING id), "
        f"new_accounts AS ({insert('accounts')}{rows('accounts')} ON CONFLICT DO NOTHING), "
        f"new_victims AS ({insert('victims')}SELECT * FROM ({rows('victims')}) v "
        "WHERE v.case_id IN (SELECT id FROM new_cases)), "
        f"new_holds AS ({insert('holds')}SELECT * FROM ({rows('holds')}) h "
        "WHERE h.case_id IN (SELECT id FROM new_cases) RETURNING id), "
        f"new_transfers AS ({insert('transfers')}SELECT * FROM ({rows('transfers')}) t "
        "WHERE t.case_id IN (SELECT id FROM new_cases)), "
        f"new_transitions AS ({insert('hold_transitions')}"
        f"SELECT * FROM ({rows('hold_transitions')}) x "
        "WHERE x.hold_id IN (SELECT id FROM new_holds)) "
        "SELECT id FROM new_cases"
    )


def _arrays(dialect: Dialect, table: Table, columns: Sequence[str], prefix: str = "") -> str:
    """`CAST(:prefix<column> AS <type>[]), ...`: each column's values as one array parameter."""
    return ", ".join(
        f"CAST(:{prefix}{name} AS {table.c[name].type.compile(dialect=dialect)}[])"
        for name in columns
    )


@functools.cache
def _unnest_insert(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> TextClause:
    """`INSERT INTO table (columns) SELECT * FROM unnest($1::type[], ...)`, built once per
    shape; a text statement is cached by SQLAlchemy and prepared once per connection."""
    names = ", ".join(f'"{name}"' for name in columns)
    return text(
        f'INSERT INTO "{table.name}" ({names}) '
        f"SELECT * FROM unnest({_arrays(dialect, table, columns)})"
    )


@functools.cache
def _unnest_update(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> TextClause:
    """`UPDATE table SET column = v.column, ... FROM unnest(...) AS v WHERE id = v.hold_id`:
    rows of one shape (the columns set) in one statement, built once per shape."""
    names = ", ".join(f'"{name}"' for name in columns)
    sets = ", ".join(f'"{name}" = v."{name}"' for name in columns)
    return text(
        f'UPDATE "{table.name}" SET {sets} '
        f"FROM unnest(CAST(:hold_id AS UUID[]), {_arrays(dialect, table, columns)}) "
        f'AS v(hold_id, {names}) WHERE "{table.name}".id = v.hold_id'
    )


def _hold_with_account(hold_id: UUID) -> Select[Any]:
    return (
        select(HoldRow, AccountRow.account_number)
        .join(AccountRow, AccountRow.id == HoldRow.account_id)
        .where(HoldRow.id == hold_id)
    )


# The one list of a hold's columns besides the domain hold's own: every field of `HoldRecord`
# but `hold` is stored in the column of its name (`_hold_record` reads them, `_hold_state`
# writes them).
_RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(HoldRecord) if f.name != "hold")


def _hold_state(record: HoldRecord) -> dict[str, Any]:
    """The columns a change of the hold may set: its state, amounts and bookkeeping."""
    hold = record.hold
    return {
        "state": hold.state.value,
        "amount_stopped": hold.amount_stopped,
        "amount_frozen": hold.amount_frozen,
        "amount_returned": hold.amount_returned,
        "reapplications": hold.reapplications,
        **{name: getattr(record, name) for name in _RECORD_FIELDS},
    }


def _hold_columns(record: HoldRecord, version: int, update: HoldUpdate) -> dict[str, Any]:
    """The hold's columns after `update`, which was decided on the hold at `version`."""
    return {**_hold_state(update.applied(record)), "version": version + 1, "updated_at": update.at}


def _transition_rows(transitions: Sequence[Transition]) -> list[dict[str, Any]]:
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


def _hold_row(
    record: HoldRecord,
    *,
    version: int,
    updated_at: datetime | None = None,
    update: HoldUpdate | None = None,
) -> dict[str, Any]:
    """Every column of a new hold: as born (at `version`, `updated_at`), or as `update` leaves it
    (decided on the hold at `version`)."""
    hold = record.hold
    if update is not None:
        columns = _hold_columns(record, version, update)
    else:
        assert updated_at is not None
        columns = {**_hold_state(record), "version": version, "updated_at": updated_at}
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


def _stop_request_row(topic: str, request: RequestStop, at: datetime) -> dict[str, Any]:
    return {
        "topic": topic,
        "key": str(request.hold_id),
        "payload": StopRequestV1.from_command(request).model_dump(mode="json"),
        "headers": {},
        "created_at": at,
        "published_at": None,
    }


def _hold_record(row: Any) -> HoldRecord:
    h = row  # a Core row: the hold's columns and the account number, flat
    hold = Hold(
        id=h.id,
        case_id=h.case_id,
        institution_code=h.institution_code,
        account_number=row.account_number,
        currency=h.currency,
        amount_asked=h.amount_asked,
        layer=h.layer,
        parent_id=h.parent_hold_id,
        state=HoldState(h.state),
        version=h.version,
        amount_stopped=h.amount_stopped,
        amount_frozen=h.amount_frozen,
        amount_returned=h.amount_returned,
        reapplications=h.reapplications,
    )
    return HoldRecord(hold=hold, **{name: getattr(h, name) for name in _RECORD_FIELDS})


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


def _stored_key(row: Any) -> StoredKey:  # a Core row of api_keys
    return StoredKey(
        key_id=row.key_id,
        agency_code=row.agency_code,
        role=KeyRole(row.role),
        secret_sha256=row.secret_sha256,
        label=row.label,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def _payout(row: Any) -> Payout:  # a Core row of the payouts table
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


def _case_row(opened: OpenedCase) -> dict[str, Any]:
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
