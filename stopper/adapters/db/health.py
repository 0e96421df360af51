"""The database's own readiness, and the institutions' health as each instance saw it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, text, type_coerce
from sqlalchemy.exc import DBAPIError

from stopper.adapters.db.errors import UNAVAILABLE, store_errors
from stopper.adapters.db.models import InstitutionHealthRow, Timestamp
from stopper.adapters.db.storage import Storage
from stopper.app.health import HealthSnapshot
from stopper.app.views import InstitutionHealthView


class HealthStorage(Storage):
    async def ping(self) -> bool:
        try:
            async with self._db.read() as connection:
                await connection.execute(text("SELECT 1"))
        except (*UNAVAILABLE, DBAPIError):
            return False
        return True

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
        statement = self._db.upsert(InstitutionHealthRow, rows, ("instance", "institution_code"))
        with store_errors():
            async with self._db.begin() as connection:
                await connection.execute(statement)

    async def institution_health(self, since: datetime) -> list[InstitutionHealthView]:
        """Every institution some instance reported on since `since`, worst view first."""
        with store_errors():
            async with self._db.read() as connection:
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
        dialect = self._db.engine.dialect
        return [
            InstitutionHealthView(
                institution_code=code,
                instances=int(instances),
                breaker_state=int(breaker),
                attempts=int(attempts or 0),
                failures=int(failures or 0),
                latency_p95_ms=None if p95 is None else float(p95),
                updated_at=Timestamp.process_result_value(updated, dialect) or since,
            )
            for code, instances, breaker, attempts, failures, p95, updated in rows
        ]
