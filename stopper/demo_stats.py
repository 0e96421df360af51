"""What a demo run reports beyond the overview, read from the store's tables: the race's
latencies, the deadline sweeper's work, and the holds by adapter. Only `stopper demo` asks; the
product's store does not."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from stopper.adapters.db.errors import store_errors
from stopper.adapters.db.models import (
    CaseRow,
    HoldRow,
    HoldTransitionRow,
    Iso20022MessageRow,
    OutboxRow,
)
from stopper.domain.holds import HoldEvent, HoldState, leads_to
from stopper.registry import Registry


@dataclass(frozen=True, slots=True)
class RaceLatencies:
    """Per case or first-level hold, in milliseconds from the report's acceptance."""

    case_opened_ms: tuple[float, ...]
    stop_requested_ms: tuple[float, ...]
    stop_confirmed_ms: tuple[float, ...]


async def race_latencies(engine: AsyncEngine) -> RaceLatencies:
    """Every case's and first-level hold's latencies from the report's acceptance."""

    def ms(later: datetime | None, earlier: datetime | None) -> float | None:
        if later is None or earlier is None:
            return None
        return (later - earlier).total_seconds() * 1000

    with store_errors():
        async with engine.connect() as connection:
            cases = await connection.execute(select(CaseRow.accepted_at, CaseRow.opened_at))
            holds = (
                await connection.execute(
                    select(HoldRow.report_accepted_at, HoldRow.sent_at, HoldRow.confirmed_at).where(
                        HoldRow.layer == 1, HoldRow.reapplications == 0
                    )
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


async def deadline_counts(engine: AsyncEngine, events_topic: str) -> tuple[int, int, int]:
    """Lapse warnings sent, lapses, and silent lapses (a lapse whose warnings had not gone
    out ahead) so far."""
    with store_errors():
        async with engine.connect() as connection:
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
                    HoldTransitionRow.to_state == leads_to(HoldEvent.LAPSED).value,
                    HoldTransitionRow.cause.contains("had not gone out"),
                )
            )
    return kinds.count("stop_expiring"), kinds.count("stop_lapsed"), int(silent or 0)


@dataclass(frozen=True, slots=True)
class AdapterCounts:
    """The holds of the institutions one adapter speaks to, and the messages that carried them
    (ISO 20022 only: one camt.056 carries many holds)."""

    holds: int
    stopped: int
    messages: int | None  # None: one request per hold (http_json)
    holds_per_message: float | None = None  # what the messages carried, on average


async def holds_by_adapter(engine: AsyncEngine, registry: Registry) -> dict[str, AdapterCounts]:
    """Holds and stops by the adapter of their institution, with the stop-request messages
    recorded for the iso20022 ones (return instructions left out)."""
    with store_errors():
        async with engine.connect() as connection:
            rows = (
                await connection.execute(
                    select(HoldRow.institution_code, HoldRow.state, func.count()).group_by(
                        HoldRow.institution_code, HoldRow.state
                    )
                )
            ).all()
            messages, carried = (
                await connection.execute(
                    select(
                        func.count(func.distinct(Iso20022MessageRow.message_id)), func.count()
                    ).where(~Iso20022MessageRow.idempotency_key.like("stopper-return-%"))
                )
            ).one()
    holds: Counter[str] = Counter()
    stopped: Counter[str] = Counter()
    for code, state, count in rows:
        institution = registry.get(code)
        adapter = institution.adapter if institution is not None else "unknown"
        holds[adapter] += count
        if state == HoldState.STOPPED.value:
            stopped[adapter] += count
    adapters = sorted({i.adapter for i in registry.values()} | set(holds))
    return {
        adapter: AdapterCounts(
            holds[adapter],
            stopped[adapter],
            int(messages) if adapter == "iso20022" else None,
            round(carried / messages, 1) if adapter == "iso20022" and messages else None,
        )
        for adapter in adapters
    }
