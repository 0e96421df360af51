"""The read ports of the HTTP API and the operator console.

They read through these Protocols, never the concrete store: the store implements them
structurally (nothing here is subclassed). Everything returned is a read model
(`stopper.app.views`), account numbers already masked. API keys are read through
`stopper.app.auth.KeyStore`, report fingerprints through `stopper.app.acceptance.KnownReports`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol
from uuid import UUID

from stopper.app.ports import Divergence
from stopper.app.views import (
    ActivityView,
    AuditEntryView,
    CaseSummaryView,
    CaseView,
    HoldListView,
    InstitutionHealthView,
    Overview,
    TrailView,
)


class CaseQueries(Protocol):
    """Cases, holds, institution health and divergences, as operators and agencies see them."""

    async def get_case(self, case_id: UUID) -> CaseView | None: ...

    async def case_agency(self, case_id: UUID) -> str | None:
        """The agency whose report opened `case_id`; None if no such case."""
        ...

    async def get_trail(self, case_id: UUID) -> TrailView | None: ...

    async def list_cases(
        self, *, active_only: bool, limit: int, agency_code: str | None = None
    ) -> Sequence[CaseSummaryView]:
        """Newest first; `active_only`: with a hold still in play; `agency_code`: only its."""
        ...

    async def list_holds(
        self,
        *,
        states: Sequence[str],
        limit: int,
        soonest_first: bool = False,
        unhandled_only: bool = False,
    ) -> Sequence[HoldListView]:
        """Holds in `states`: last changed first, or closest to lapsing first;
        `unhandled_only`: leaving out those a person marked handled since their last
        transition."""
        ...

    async def case_audit(self, case_id: UUID, limit: int) -> Sequence[AuditEntryView]:
        """The case's holds' transitions and notes, oldest first (the first `limit`)."""
        ...

    async def activity(
        self, *, hour_since: datetime, day_since: datetime, needs_a_person: Sequence[str]
    ) -> ActivityView:
        """Since `hour_since` (reports, holds, stop latencies) and `day_since` (amount
        stopped); holds in `needs_a_person` states not marked handled."""
        ...

    async def overview(self) -> Overview: ...

    async def institution_health(self, since: datetime) -> Sequence[InstitutionHealthView]:
        """Per institution, what the instances that reported after `since` saw."""
        ...

    async def recent_divergences(self, limit: int) -> Sequence[Divergence]:
        """Newest first."""
        ...


class DatabaseProbe(Protocol):
    async def ping(self) -> bool:
        """True if the database answers (readiness); never raises."""
        ...
