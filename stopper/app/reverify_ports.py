"""What re-verification (`stopper.app.reverify`) keeps and reads: its jobs, and the stopped
first-level holds it asks about, page by page."""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from uuid import UUID

from stopper.app.ports import Divergence, HoldUnitOfWork

# The outcome of a hold whose institution could not be asked: not counted as asked.
UNREACHABLE = "unreachable"

# Where a job is in its holds: they are asked in (institution, id) order, so that a page is
# mostly one institution's, asked in one query.
HoldCursor = tuple[str, UUID]


class JobState(enum.StrEnum):
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(frozen=True, slots=True)
class StoppedHold:
    """A stopped first-level hold, as a re-verification asks about it: by the key of its
    current generation's request, and what that request holds by Stopper's record."""

    hold_id: UUID
    institution_code: str
    idempotency_key: str
    amount_first_request: int  # what the request asked (an answer holds at most this)
    amount_held: int  # what Stopper has its answer holding (supplements apart)


@dataclass(frozen=True, slots=True)
class ReverifyProgress:
    """How far a job got: the last hold done (holds are asked in (institution, id) order) and
    how many holds came to each outcome."""

    cursor: HoldCursor | None = None
    outcomes: Mapping[str, int] = field(default_factory=dict)

    @property
    def asked(self) -> int:
        """Holds whose institution was asked and answered (whatever it said)."""
        return sum(n for outcome, n in self.outcomes.items() if outcome != UNREACHABLE)

    @property
    def unreachable(self) -> int:
        return self.outcomes.get(UNREACHABLE, 0)

    def after(self, cursor: HoldCursor, counts: Counter[str]) -> ReverifyProgress:
        """This progress with a page more done, up to `cursor`."""
        total = Counter(self.outcomes)
        total.update(counts)
        return ReverifyProgress(cursor, dict(total))


@dataclass(frozen=True, slots=True)
class Reverification:
    """One re-verification job: every stopped first-level hold (of one institution, or of all)
    asked about again."""

    id: UUID
    institution_code: str | None  # None: every institution
    state: JobState
    holds: int  # stopped first-level holds in its scope when it started
    requested_by: str
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    progress: ReverifyProgress

    @property
    def remaining(self) -> int:
        """Holds still to ask about, by the count at the start (none once finished)."""
        if self.state is JobState.FINISHED:
            return 0
        return max(0, self.holds - self.progress.asked - self.progress.unreachable)


@dataclass(frozen=True, slots=True)
class StartedJob:
    """What asking for a job did: `started`, or refused because `job`, running, overlaps it."""

    job: Reverification
    started: bool


class ReverifyStore(HoldUnitOfWork, Protocol):
    async def start_reverification(
        self, job_id: UUID, institution_code: str | None, requested_by: str, at: datetime
    ) -> StartedJob:
        """Start a job over the stopped first-level holds of `institution_code` (None: every
        institution), counting them; unless a running job overlaps its scope (one of all
        institutions overlaps every job), which is returned instead, not started. Two asking at
        once: one starts, the other gets it."""
        ...

    async def reverification(self, job_id: UUID) -> Reverification | None: ...

    async def reverifications(self, limit: int) -> list[Reverification]:
        """The newest jobs first."""
        ...

    async def claim_reverification(
        self, owner: str, now: datetime, lease_until: datetime
    ) -> Reverification | None:
        """The oldest running job that no other owner holds a lease on (or whose lease lapsed),
        leased to `owner` until `lease_until`; None if there is none."""
        ...

    async def save_reverification(
        self,
        job_id: UUID,
        owner: str,
        progress: ReverifyProgress,
        now: datetime,
        lease_until: datetime,
        *,
        finished: bool,
    ) -> bool:
        """Write the job's progress and renew `owner`'s lease (finished: the job is over and
        its lease given up). False, and nothing written, if `owner` no longer holds it."""
        ...

    async def stopped_first_level_holds(
        self, institution_code: str | None, after: HoldCursor | None, limit: int
    ) -> list[StoppedHold]:
        """Up to `limit` stopped first-level holds (of `institution_code`, or of all), in
        (institution, id) order, after the hold `after`."""
        ...

    async def record_divergence(self, divergence: Divergence) -> None: ...
