"""Re-verification: every stopped first-level hold asked about again, as the practice
re-verifies first-level accounts weekly, without taking from live reports.

Business rules:
- a job (`Reverifier.start`: `POST /v1/reverifications`, `stopper reverify`) covers the stopped
  first-level holds of one institution or of all, counted when it starts. A job whose scope
  overlaps a running one's (a job of all institutions overlaps every job) is not started: the
  running job is returned instead (409 over HTTP);
- a worker runs it page by page (`ReverifyPolicy.page` holds in (institution, id) order, so a
  page is one institution's but where one ends) at most `ReverifyPolicy.holds_per_s` holds per
  second (a pause after each page makes up the rest); each institution is
  asked about its share of a page in one status query
  (`POST {endpoint}/stops/status`, the reconciler's), one institution at a time, in the
  gateway's bulk lane: behind every live call, and never in more than a share of the
  institution's slots (`stopper.app.slots`);
- what an institution says of a hold's request (by the key of its current generation):
  * stopped, holding what Stopper has: ``confirmed``;
  * the stop no longer stands there: ``lifted`` (released, or lifted on its own decision),
    ``unknown`` (no record of the request), ``not_found`` or ``rejected``: the hold moves to
    ``expired`` (`stop_lifted`, audit cause ``reverified: ...``), from where a person may
    re-apply or release it; a divergence, logged (no account numbers), counted and recorded
    for the console (outcome ``lifted``);
  * stopped, holding another amount: ``amount_differs``, a divergence recorded; the hold is
    left as it is (the table has no move for it: a person looks);
  * pending: ``pending``, nothing changes;
  * a status about a key not asked, or about another hold: refused, counted, nothing changes;
  * a hold that changed meanwhile (frozen, released, ...): ``moved``, nothing applied;
- an institution that cannot be asked: its holds of the page are ``unreachable``, and the job
  goes on (another job for that institution asks them later);
- progress (the last hold done, outcomes) is saved after every page with the job's lease,
  so a restart, or another worker once the lease lapsed, resumes after the last page saved (a
  page asked but not saved is asked again: harmless, nothing applies twice);
- every hold asked about is counted in `stopper_reverified_total{outcome}`; the running job's
  holds still to ask about in `stopper_reverify_remaining`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from dataclasses import replace
from uuid import UUID

from stopper import metrics
from stopper.app.dispatch import Dispatcher
from stopper.app.hold_changes import Concluded
from stopper.app.policies import ReverifyPolicy
from stopper.app.ports import Clock, HoldDecision, HoldRecord, HoldUpdate
from stopper.app.reverify_ports import (
    UNREACHABLE,
    Reverification,
    ReverifyProgress,
    ReverifyStore,
    StartedJob,
    StoppedHold,
)
from stopper.app.status_answers import answer_each, record_divergence, refuse_status, said
from stopper.domain.holds import HoldEvent, HoldState, idempotency_key_for
from stopper.domain.messages import AnswerKind, StatusKind, StopStatus
from stopper.errors import InstitutionError
from stopper.registry import Institution

log = logging.getLogger(__name__)

CONFIRMED = "confirmed"
LIFTED = "lifted"
AMOUNT_DIFFERS = "amount_differs"
MOVED = "moved"
FOUND_BY = "reverification"
# What an institution says of a stopped hold's request when its stop no longer stands there.
_NOT_IN_FORCE = frozenset({"lifted", "unknown", "not_found", "rejected"})


class Reverifier:
    def __init__(
        self,
        store: ReverifyStore,
        dispatcher: Dispatcher,
        clock: Clock,
        *,
        owner: str,
        policy: ReverifyPolicy | None = None,
    ) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self._gateway = dispatcher.gateway
        self._registry = dispatcher.gateway.registry
        self._clock = clock
        self._owner = owner
        self._policy = policy or ReverifyPolicy()
        self._job: Reverification | None = None  # the job this worker runs now
        # Set when a job starts in this process: its worker loop need not wait its interval.
        self.started = asyncio.Event()

    async def start(self, institution_code: str | None, requested_by: str) -> StartedJob:
        """A new job over the stopped first-level holds of `institution_code` (None: of every
        institution), or the running job its scope overlaps (not started)."""
        begun = await self._store.start_reverification(
            uuid.uuid4(), institution_code, requested_by, self._clock.now()
        )
        if begun.started:
            log.info(
                "re-verification started",
                extra={
                    "job_id": str(begun.job.id),
                    "institution": institution_code or "all",
                    "holds": begun.job.holds,
                },
            )
            self.started.set()
        return begun

    async def job(self, job_id: UUID) -> Reverification | None:
        return await self._store.reverification(job_id)

    async def jobs(self, limit: int) -> list[Reverification]:
        return await self._store.reverifications(limit)

    async def run_once(self) -> int:
        """The worker's step: one page of the running job (claimed first if this worker has
        none), then the pause that keeps to the rate. Returns the holds asked about, 1 for a job
        just finished (the next may be claimed at once), 0 when there is no job or another
        worker took it over."""
        self.started.clear()
        try:
            return await self._page()
        except BaseException:
            self._job = None  # claimed again next time, from what was saved
            raise

    async def _page(self) -> int:
        now = self._clock.now()
        job = self._job
        if job is None:
            job = await self._store.claim_reverification(self._owner, now, now + self._policy.lease)
            if job is None:
                metrics.REVERIFY_REMAINING.set(0)
                return 0
        began = asyncio.get_running_loop().time()
        holds = await self._store.stopped_first_level_holds(
            job.institution_code, job.progress.cursor, self._policy.page
        )
        if not holds:
            if not await self._save(job, job.progress, finished=True):
                return 0
            log.info(
                "re-verification finished",
                extra={"job_id": str(job.id), "outcomes": dict(job.progress.outcomes)},
            )
            return 1
        counts: Counter[str] = Counter()
        by_institution: dict[str, list[StoppedHold]] = {}
        for hold in holds:
            by_institution.setdefault(hold.institution_code, []).append(hold)
        for code, its_holds in by_institution.items():
            counts.update(await self._ask(code, its_holds))
        for outcome, n in counts.items():
            metrics.REVERIFIED.labels(outcome).inc(n)
        last = holds[-1]
        progress = job.progress.after((last.institution_code, last.hold_id), counts)
        if not await self._save(job, progress, finished=False):
            return 0
        # Real time, not the clock port's: the pace is the machine's, not business time.
        took = asyncio.get_running_loop().time() - began
        await asyncio.sleep(max(0.0, len(holds) / self._policy.holds_per_s - took))
        return len(holds)

    async def _save(
        self, job: Reverification, progress: ReverifyProgress, *, finished: bool
    ) -> bool:
        now = self._clock.now()
        saved = await self._store.save_reverification(
            job.id, self._owner, progress, now, now + self._policy.lease, finished=finished
        )
        self._job = replace(job, progress=progress) if saved and not finished else None
        metrics.REVERIFY_REMAINING.set(0 if self._job is None else self._job.remaining)
        if not saved:
            log.warning(
                "re-verification taken over by another worker", extra={"job_id": str(job.id)}
            )
        return saved

    async def _ask(self, code: str, holds: list[StoppedHold]) -> Counter[str]:
        """Ask one institution about its holds of a page, and act on what it says."""
        institution = self._registry.get(code)
        if institution is None:  # no longer in the registry: nobody to ask
            return Counter({UNREACHABLE: len(holds)})
        by_key = {hold.idempotency_key: hold for hold in holds}
        try:
            statuses = await self._gateway.stop_statuses(institution, list(by_key), bulk=True)
        except InstitutionError as e:
            log.warning(
                "re-verification could not ask", extra={"institution": code, "error": str(e)}
            )
            return Counter({UNREACHABLE: len(holds)})
        lifted: dict[UUID, str] = {}

        async def judge(hold: StoppedHold, status: StopStatus) -> str:
            if status.hold_id is not None and status.hold_id != hold.hold_id:
                return refuse_status(institution.code, "other_hold")
            word = said(status)
            if word in _NOT_IN_FORCE:
                lifted[hold.hold_id] = word
                return LIFTED  # if it still is stopped when written (`_lift`)
            if status.kind is StatusKind.PENDING:
                return "pending"
            if status.answer is None or status.answer.kind is not AnswerKind.STOPPED:
                return refuse_status(institution.code, "malformed")
            held = min(status.answer.amount_held or 0, hold.amount_first_request)
            if held == hold.amount_held:
                return CONFIRMED
            more = "stopped_more" if held > hold.amount_held else "stopped_less"
            await self._diverged(hold.hold_id, code, more)
            return AMOUNT_DIFFERS

        counts = await answer_each(
            statuses,
            by_key,
            judge,
            lambda reason: refuse_status(institution.code, reason),
        )
        if lifted:
            written = await self._lift(institution, lifted, {h.hold_id: h for h in holds})
            moved = len(lifted) - len(written)
            counts[LIFTED] -= moved
            counts[MOVED] += moved
            for hold_id in written:
                await self._diverged(hold_id, code, lifted[hold_id])
        return +counts

    async def _lift(
        self, institution: Institution, lifted: dict[UUID, str], holds: dict[UUID, StoppedHold]
    ) -> set[UUID]:
        """Move the holds whose stop no longer stands to expired, in one transaction; those
        written (a hold that changed since its page was read is left alone)."""
        now = self._clock.now()

        def decide(word: str, key: str) -> HoldDecision:
            def decided(record: HoldRecord) -> HoldUpdate | None:
                hold = record.hold
                if hold.state is not HoldState.STOPPED or key != idempotency_key_for(
                    hold.id, hold.reapplications
                ):
                    return None
                transition = hold.apply(
                    HoldEvent.STOP_LIFTED,
                    cause=f"reverified: the institution says {word}",
                    actor=f"institution:{institution.code}",
                    at=now,
                )
                reason = f"re-verification: the institution no longer holds the stop ({word})"
                return HoldUpdate(at=now, transitions=[transition], change=Concluded(reason))

            return decided

        written = await self._store.update_holds(
            {
                hold_id: decide(word, holds[hold_id].idempotency_key)
                for hold_id, word in lifted.items()
            }
        )
        return {record.hold.id for record, _ in written}

    async def _diverged(self, hold_id: UUID, code: str, institution_status: str) -> None:
        await record_divergence(
            self._store,
            hold_id,
            code,
            HoldState.STOPPED.value,
            institution_status,
            self._clock.now(),
            found_by=FOUND_BY,
        )
