"""What a demo run reports beyond the overview, read from the store's tables: the race's
latencies and the deadline sweeper's work. Only `stopper demo` asks; the product's store does
not."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from stopper.adapters.db.errors import store_errors
from stopper.adapters.db.models import CaseRow, HoldRow, HoldTransitionRow, OutboxRow
from stopper.domain.holds import HoldEvent, leads_to


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
