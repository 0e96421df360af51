"""Re-verification's jobs and pages over the unit fake's dicts (`FakeDispatchStore` mixes this in),
keeping the contract `tests/integration/test_store_contract.py` holds the real store to."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from uuid import UUID

from stopper.app.ports import HoldRecord
from stopper.app.reverify_ports import (
    HoldCursor,
    JobState,
    Reverification,
    ReverifyProgress,
    StartedJob,
    StoppedHold,
)
from stopper.domain.holds import HoldState, idempotency_key_for


class FakeReverifications:
    holds: dict[UUID, HoldRecord]

    def __init__(self) -> None:
        self.jobs: dict[UUID, Reverification] = {}
        self.leases: dict[UUID, tuple[str, datetime]] = {}  # by job: owner, until

    def _stopped_first_level(self, institution_code: str | None) -> list[HoldRecord]:
        return sorted(
            (
                r
                for r in self.holds.values()
                if r.hold.state is HoldState.STOPPED
                and r.hold.layer == 1
                and institution_code in (None, r.hold.institution_code)
            ),
            key=lambda r: (r.hold.institution_code, r.hold.id),
        )

    async def start_reverification(
        self, job_id: UUID, institution_code: str | None, requested_by: str, at: datetime
    ) -> StartedJob:
        for job in sorted(self.jobs.values(), key=lambda j: j.started_at):
            if job.state is JobState.RUNNING and (
                job.institution_code is None or institution_code in (None, job.institution_code)
            ):
                return StartedJob(job, started=False)
        job = Reverification(
            id=job_id,
            institution_code=institution_code,
            state=JobState.RUNNING,
            holds=len(self._stopped_first_level(institution_code)),
            requested_by=requested_by,
            started_at=at,
            updated_at=at,
            finished_at=None,
            progress=ReverifyProgress(),
        )
        self.jobs[job_id] = job
        return StartedJob(job, started=True)

    async def reverification(self, job_id: UUID) -> Reverification | None:
        return self.jobs.get(job_id)

    async def reverifications(self, limit: int) -> list[Reverification]:
        newest = sorted(self.jobs.values(), key=lambda j: (-j.started_at.timestamp(), j.id))
        return newest[:limit]

    async def claim_reverification(
        self, owner: str, now: datetime, lease_until: datetime
    ) -> Reverification | None:
        for job in sorted(self.jobs.values(), key=lambda j: j.started_at):
            lease = self.leases.get(job.id)
            if job.state is JobState.RUNNING and (
                lease is None or lease[0] == owner or lease[1] <= now
            ):
                self.leases[job.id] = (owner, lease_until)
                return job
        return None

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
        job = self.jobs.get(job_id)
        lease = self.leases.get(job_id)
        if job is None or job.state is not JobState.RUNNING or lease is None or lease[0] != owner:
            return False
        self.jobs[job_id] = replace(
            job,
            progress=progress,
            updated_at=now,
            state=JobState.FINISHED if finished else JobState.RUNNING,
            finished_at=now if finished else None,
        )
        if finished:
            del self.leases[job_id]
        else:
            self.leases[job_id] = (owner, lease_until)
        return True

    async def stopped_first_level_holds(
        self, institution_code: str | None, after: HoldCursor | None, limit: int
    ) -> list[StoppedHold]:
        return [
            StoppedHold(
                r.hold.id,
                r.hold.institution_code,
                idempotency_key_for(r.hold.id, r.hold.reapplications),
                r.hold.amount_first_request,
                r.hold.amount_stopped_by_first,
            )
            for r in self._stopped_first_level(institution_code)
            if after is None or (r.hold.institution_code, r.hold.id) > after
        ][:limit]
