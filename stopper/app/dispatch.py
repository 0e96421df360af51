"""Fan-out: every `requested` hold becomes a stop request at its institution.

Business rules:
- a hold is claimed before each attempt (optimistic version check), so two consumers, a
  consumer and the sweeper, or two instances never attempt the same hold at once;
- every attempt carries the idempotency key derived from the hold: a retry, a redelivery or a
  restart never makes the institution stop the same funds twice;
- each attempt is bounded by the institution's timeout; retryable failures (timeout, 5xx,
  unreadable answer, breaker open) are retried with exponential backoff and full jitter; a
  business answer (not found, rejected) is final and never retried;
- a request the institution accepted (202, its answer owed by callback) is never sent again:
  the hold is `unconfirmed`, and once the callback is overdue (`callback_wait_s`) Stopper asks
  the institution about it (a status inquiry), at a slowing cadence (twice as long each time, up
  to `inquiry_max_interval_s`), so an institution slow to call back gets fewer requests, never
  more; only when the institution says it never received the request is it sent again (same
  key); an unconfirmed hold is given up on (`failed`) only when its stop would have lapsed;
- a status answer that is about another request or hold, or contradicts the hold's final
  state, is refused with a counted reason and changes nothing;
- when the retry budget or the overall deadline (`deadline_s` from the first attempt) is
  spent, the hold becomes `failed` with the reason, for a person to act on; a hold is always
  asked for at least once, however long it waited before its first attempt;
- but no answer is not a refusal: when the last attempt timed out or its answer could not be
  read (the institution may have carried it out), the hold is `unconfirmed` (`unanswered`)
  and the institution is asked about it, from one timeout later, at the same slowing cadence,
  for another `deadline_s`: its stored outcome settles it, `pending` makes it accepted (its
  answer owed), and only "never received" or no answer to the inquiries either makes it
  `failed`; so is a hold whose last attempt's lease ran out with no outcome recorded (the
  process making it died): it is asked about, not given up at the sweeper's claim;
- every request goes through the `InstitutionGateway` (at most `concurrency` in flight to one
  institution per process, a circuit breaker per institution that stops hammering one that is
  down, hedging, health and metrics); intake waits (a second at most) only for institutions
  with `max_queued_per_institution` attempts already under way here, so one slow institution
  does not hold up the others; and, however long, while the process has `max_queued` attempts
  under way (it is behind as a whole: a burst then waits on the broker, not in memory against
  its deadline);
- a stop request for a known mule account (`stopper.domain.mules`) goes first: the sweeper
  finds such holds first, claims made together start with them, and they take their
  institution's next free slot before other requests waiting there; the request says in how
  many cases the account is named. What the store knew when the attempt was claimed is what
  it says (intake's claims read it in the write that records the case); the registry never
  holds up a stop: if it cannot be read, the attempts start unflagged.
What each step changes on the hold is decided in `stop_decisions`; this module carries it out.
The extra a trail merge asks of a hold whose request is out (a supplement) is `supplements`'
(`Dispatcher.supplements`), swept and read from the same topic with the holds' requests.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from uuid import UUID

from stopper import metrics
from stopper.app.background import BackgroundWork
from stopper.app.batching import HoldWriter
from stopper.app.gateway import InstitutionGateway
from stopper.app.hold_changes import Unanswered
from stopper.app.policies import DispatchPolicy
from stopper.app.ports import (
    CallbackNonce,
    Clock,
    HoldRecord,
    HoldUpdate,
)
from stopper.app.status_answers import act_on_status
from stopper.app.stop_decisions import (
    LEASE_MARGIN,
    AnswerOutcome,
    Claim,
    StopDecisions,
    mules_first,
)
from stopper.app.supplement_ports import SupplementDispatchStore
from stopper.app.supplements import SupplementDesk
from stopper.domain.holds import HoldState
from stopper.domain.messages import AnswerKind, InstitutionAnswer, StopStatus
from stopper.domain.mules import is_flagged
from stopper.domain.supplements import supplement_of_key
from stopper.domain.trail import TrailPlan
from stopper.errors import InstitutionError, StoreUnavailable
from stopper.registry import Institution

log = logging.getLogger(__name__)

# How long intake waits for the busiest institution before it looks at the others again,
# while the process is at `max_queued` attempts.
_PROCESS_LIMIT_POLL_S = 0.05

# An attempt still waiting in this process (for its institution's connections, or for its
# answer's transaction) when its lease is about to run out gets this much more, so that no
# sweeper repeats an attempt that is only queued; a process that dies stops renewing.
LEASE_RENEWAL = timedelta(seconds=6)


class Dispatcher:
    def __init__(
        self,
        store: SupplementDispatchStore,
        gateway: InstitutionGateway,
        clock: Clock,
        policy: DispatchPolicy,
        rng: random.Random | None = None,
        on_outbox: Callable[[], None] | None = None,
        deadline_clock: Clock | None = None,
    ) -> None:
        self._store = store
        self.gateway = gateway
        self._registry = registry = gateway.registry
        self._clock = clock
        self._policy = policy
        self._rng = rng or random.Random()
        self._on_outbox = on_outbox
        self._deadline_clock = deadline_clock or clock
        # Attempts under way in this process, per institution (backpressure is per institution).
        self._in_flight = {code: BackgroundWork("stop attempt") for code in registry}
        # Attempts this process has started and not finished: hold -> (attempt, lease end).
        self._leases: dict[UUID, tuple[int, datetime]] = {}
        self._writer = HoldWriter(store)
        self._decisions = StopDecisions(gateway, clock, policy, self._rng, self._deadline_clock)
        self.supplements = SupplementDesk(
            store, gateway, clock, policy, self._decisions, self._deadline_clock
        )

    async def attempt(self, hold_id: UUID, *, first: bool) -> None:
        """Claim the hold and make one attempt, waiting for its outcome."""
        claim = await self.claim(hold_id, first=first)
        for marked in await self.with_mule_flags([claim]):
            await self.carry_out(marked)

    async def claim(self, hold_id: UUID, *, first: bool) -> Claim | None:
        """Take the hold for one attempt if it is (still) owed one, or give it up if its
        deadline passed. `first`: its stop request just came through the outbox (intake's holds
        are claimed by `claim_new`); otherwise the sweeper found it due. Once the claim is
        committed the attempt is owed by this process, and by the sweeper after the lease if
        this process dies. The claim's time (`sent_at` of a first attempt) is taken when it is
        decided, its row locked: after any wait for the transaction, one commit before the
        request leaves."""
        claimed = await self._writer.apply(
            hold_id, lambda r: self._decisions.claim(r, self._clock.now(), first)
        )
        if claimed is None:
            return None
        return self._claimed(*claimed)

    def claim_new(self, record: HoldRecord) -> HoldUpdate | None:
        """The claim of a hold's first attempt, decided as intake records the hold (see
        `IntakeStore.record_opened_cases`): its first stop request needs no transaction of its
        own, and leaves once intake's write commits. The same decision as `claim`'s."""
        return self._decisions.claim(record, self._clock.now(), first=True)

    async def start_new(
        self,
        claimed: Sequence[tuple[HoldRecord, HoldUpdate]],
        mule_cases: Mapping[UUID, int],
    ) -> None:
        """Carry out the first attempts intake claimed, in the background, known mules first
        (`mule_cases`: what intake's write read, by hold). Waits first while an institution
        they go to has too many attempts under way (see `wait_for_room`)."""
        await self.wait_for_room(record.hold.institution_code for record, _ in claimed)
        claims = (self._claimed(record, change) for record, change in claimed)
        for claim in mules_first((c for c in claims if c is not None), mule_cases):
            self.start(claim)

    async def with_mule_flags(self, claims: Iterable[Claim | None]) -> list[Claim]:
        """The attempts of committed claims, each stop request saying whether its account is a
        known mule (one read for all), those first (`mules_first`). A store that cannot answer
        holds up nothing: the attempts go unflagged, in the order given."""
        made = [claim for claim in claims if claim is not None]
        stops = [claim.request.hold_id for claim in made if not claim.inquiry]
        mule_cases: Mapping[UUID, int] = {}
        if stops:
            try:
                mule_cases = await self._store.mule_cases(stops)
            except StoreUnavailable as e:
                log.warning("known mules not read; attempts go unflagged", extra={"error": str(e)})
        return mules_first(made, mule_cases)

    def _claimed(self, record: HoldRecord, change: HoldUpdate) -> Claim | None:
        """The attempt a committed claim stands for; None if the claim gave the hold up."""
        now = change.at
        if record.hold.state is HoldState.FAILED:
            self._count_failed(record)
            return None
        if isinstance(change.change, Unanswered):
            return None  # a lapsed last attempt: the institution is asked about it, later
        claim = self._decisions.claim_of(record, change.applied(record).next_attempt_at)
        if claim.inquiry:
            return claim
        institution = self._registry[claim.request.institution_code]
        if claim.first_send and claim.report_accepted_at is not None and claim.request.layer == 1:
            metrics.REPORT_TO_STOP_REQUEST.labels(institution.kind.value, institution.code).observe(
                max(0.0, (now - claim.report_accepted_at).total_seconds())
            )
        if claim.attempt > 1:
            metrics.STOP_RETRIES.labels(institution.code).inc()
        return claim

    async def wait_for_room(self, institutions: Iterable[str]) -> None:
        """Wait while an institution among `institutions` has `max_queued_per_institution`
        attempts under way in this process, so a burst waits on the broker (consumer lag)
        rather than in memory, and one slow institution does not hold up intake for the others
        while it has room; but at most a second, so a slow institution slows intake down to a
        batch a second instead of stopping it."""
        limit = self._policy.max_queued_per_institution
        loop = asyncio.get_running_loop()
        until = loop.time() + 1.0
        for code in set(institutions):
            work = self._in_flight.get(code)
            if work is None or len(work) < limit:
                continue
            if not await work.wait_below(limit, timeout_s=max(0.0, until - loop.time())):
                log.warning(
                    "%d stop attempts under way; starting more anyway",
                    len(work),
                    extra={"institution": code},
                )
        await self._wait_below_process_limit()

    async def _wait_below_process_limit(self) -> None:
        """Wait, however long, while this process has `max_queued` attempts under way: then the
        process itself is behind (short of CPU, every institution busy), not one institution,
        and more attempts would only wait in memory against their deadlines while the burst
        could wait on the broker. One institution cannot bring this about alone: its own
        limit is far below it."""
        limit = self._policy.max_queued
        if self.in_flight() < limit:
            return
        log.warning(
            "%d stop attempts under way in this process; intake waits for room",
            self.in_flight(),
        )
        metrics.INTAKE_WAITS.inc()
        while self.in_flight() >= limit:
            # The busiest institution's next finished attempt makes room; one elsewhere is
            # noticed within the poll.
            busiest = max(self._in_flight.values(), key=len)
            await busiest.wait_below(len(busiest), timeout_s=_PROCESS_LIMIT_POLL_S)

    def in_flight(self) -> int:
        """Attempts and inquiries under way in this process."""
        return sum(len(work) for work in self._in_flight.values())

    def start(self, claim: Claim) -> None:
        """Carry out a claimed attempt in the background, so one slow institution holds up
        nobody else; its lease is renewed while it waits (see `renew_leases`). An inquiry's
        lease is not renewed: a sweeper that asks again only asks."""
        hold_id = claim.request.hold_id
        if claim.lease_until is not None and not claim.inquiry:
            self._leases[hold_id] = (claim.attempt, claim.lease_until)
        if is_flagged(claim.request.mule_cases) and not claim.inquiry:
            metrics.MULE_STOP_REQUESTS.labels(claim.request.institution_code).inc()
        self._in_flight[claim.request.institution_code].start(
            self._carry_out_leased(claim), hold_id=str(hold_id)
        )

    async def _carry_out_leased(self, claim: Claim) -> None:
        hold_id = claim.request.hold_id
        try:
            await self.carry_out(claim)
        finally:
            if self._leases.get(hold_id, (None,))[0] == claim.attempt:
                del self._leases[hold_id]

    async def renew_leases(self) -> int:
        """Extend the leases of this process's attempts that are about to run out while they
        still wait: under a burst, attempts queue for an institution's few connections for
        longer than a lease, and without this every sweeper would attempt them again (one
        attempt in ten in a benchmark run). Returns how many were renewed."""
        now = self._clock.now()
        soon = {
            hold_id: attempt
            for hold_id, (attempt, until) in self._leases.items()
            if until - now <= LEASE_MARGIN
        }
        if not soon:
            return 0
        until = now + LEASE_RENEWAL
        renewed = await self._store.renew_leases(soon, until)
        for hold_id in renewed:
            entry = self._leases.get(hold_id)
            if entry is not None and entry[0] == soon[hold_id]:
                self._leases[hold_id] = (entry[0], until)
        return len(renewed)

    async def wait_idle(self) -> None:
        while self.in_flight() or self.supplements.in_flight():
            for work in self._in_flight.values():
                await work.wait_idle()
            await self.supplements.wait_idle()

    async def close(self) -> None:
        for work in self._in_flight.values():
            await work.close()
        await self.supplements.close()
        await self._writer.close()

    async def carry_out(self, claim: Claim) -> None:
        hold_id = claim.request.hold_id
        institution = self._registry[claim.request.institution_code]
        if claim.inquiry:
            await self._inquire(claim, institution)
            return
        try:
            answer = await self.gateway.request_stop(institution, claim.request)
        except InstitutionError as e:
            await self._after_failure(hold_id, claim, institution, e)
            return
        if answer.kind is AnswerKind.ACCEPTED:
            await self._writer.apply(
                hold_id, lambda r: self._decisions.accepted(r, claim, institution)
            )
            return
        await self.record_answer(hold_id, answer, actor=f"institution:{institution.code}")

    async def _inquire(self, claim: Claim, institution: Institution) -> None:
        """Ask the institution what became of a request it accepted, and act on the answer."""
        request = claim.request
        try:
            status = await self.gateway.stop_status(institution, request.idempotency_key)
        except InstitutionError as e:
            await self._ask_later(claim, institution, f"status inquiry {claim.inquiry}: {e}")
            return
        await self.apply_status(
            status,
            request.hold_id,
            request.idempotency_key,
            institution,
            via="status inquiry",
            on_pending=lambda: self._ask_later(claim, institution, None),
        )

    async def apply_status(
        self,
        status: StopStatus,
        hold_id: UUID,
        key: str,
        institution: Institution,
        *,
        via: str,
        on_pending: Callable[[], Awaitable[None]] | None = None,
    ) -> str:
        """Act on what an institution's record says of one request (a status inquiry, or
        reconciliation), by the ladder of `act_on_status`: `unknown` (it never received it)
        sends an unconfirmed hold's request again. A supplement's key is the supplement's
        (`SupplementDesk.apply_status`)."""
        supplement = supplement_of_key(key)
        if supplement is not None and supplement[0] == hold_id:
            return await self.supplements.apply_status(
                status, hold_id, supplement[1], institution, via=via, on_pending=on_pending
            )

        async def resend() -> bool:
            resent = await self._writer.apply(
                hold_id, lambda r: self._decisions.resend(r, key, institution)
            )
            if resent is None:
                return False
            if resent[0].hold.state is HoldState.FAILED:  # none of its attempts reached it
                self._count_failed(resent[0])
                return False
            await self.attempt(hold_id, first=False)
            return True

        return await act_on_status(
            status,
            hold_id,
            key,
            institution.code,
            record_answer=lambda answer: self.record_answer(
                hold_id, answer, actor=f"institution:{institution.code}", via=via
            ),
            resend=resend,
            on_pending=on_pending,
        )

    async def _ask_later(self, claim: Claim, institution: Institution, why: str | None) -> None:
        await self._writer.apply(
            claim.request.hold_id,
            lambda r: self._decisions.next_inquiry(r, claim, institution, why),
        )

    async def record_answer(
        self,
        hold_id: UUID,
        answer: InstitutionAnswer,
        *,
        actor: str,
        via: str = "institution answer",
        sent_here: Callable[[HoldRecord], bool] | None = None,
        nonce: CallbackNonce | None = None,
    ) -> AnswerOutcome:
        """Apply an institution's final answer (at once, by callback, found by a status inquiry
        or by reconciliation: `via` starts the audit cause); repeats are harmless. A callback's
        answer comes with its `nonce` (remembered in the answer's transaction: a replay decides
        nothing) and `sent_here`, which says whether the answering institution was asked about
        this hold at all (checked on the locked row, not by a read of its own)."""
        now = self._clock.now()
        outcome = AnswerOutcome.UNKNOWN_HOLD

        def decide(record: HoldRecord) -> HoldUpdate | None:
            nonlocal outcome
            outcome, update = self._decisions.answer(
                record, answer, actor=actor, via=via, now=now, sent_here=sent_here, plans=plans
            )
            return update

        plans: list[TrailPlan] = []
        if nonce is None:
            result = await self._writer.apply(hold_id, decide)
        else:
            fresh, result = await self._writer.apply_signed(hold_id, decide, nonce)
            if not fresh:
                return AnswerOutcome.REPLAYED
        if result is not None:
            self._observe_answer(result[0], answer, now)
        for plan in plans[-1:]:  # the plan of the attempt that committed
            self._observe_trail(plan)
        return outcome

    def _observe_trail(self, plan: TrailPlan) -> None:
        for edge in plan.edges:
            metrics.TRAIL_EDGES.labels(edge.outcome.value).inc()
        for new in plan.new_holds:
            metrics.TRAIL_HOLDS.labels(str(new.layer)).inc()
        if plan.new_holds and self._on_outbox is not None:
            self._on_outbox()  # the new holds' stop requests wait in the outbox

    async def sweep_once(self) -> int:
        """Renew the leases of this process's queued attempts, then attempt every hold, and
        every supplement, that is due; returns how many were looked at."""
        await self.renew_leases()
        now = self._clock.now()
        grace = self._policy.first_dispatch_grace
        due = await self._store.due_holds(now, now - grace, limit=500)
        claims = await asyncio.gather(*(self.claim(hold_id, first=False) for hold_id in due))
        for claim in await self.with_mule_flags(claims):
            self.start(claim)
        return len(due) + await self.supplements.sweep_once()

    async def _after_failure(
        self, hold_id: UUID, claim: Claim, institution: Institution, error: InstitutionError
    ) -> None:
        result = await self._writer.apply(
            hold_id, lambda r: self._decisions.retry_or_give_up(r, claim, institution, error)
        )
        if result is not None and result[0].hold.state is HoldState.FAILED:
            self._count_failed(result[0])

    def _count_failed(self, record: HoldRecord) -> None:
        metrics.HOLDS_FAILED.labels(record.hold.institution_code).inc()
        log.warning(
            "hold failed: a person must act",
            extra={"hold_id": str(record.hold.id), "institution": record.hold.institution_code},
        )

    def _observe_answer(self, record: HoldRecord, answer: InstitutionAnswer, now: datetime) -> None:
        hold = record.hold
        if answer.kind is not AnswerKind.STOPPED:
            return
        institution = self._registry[hold.institution_code]
        metrics.AMOUNT_STOPPED.labels(hold.currency).inc(hold.amount_stopped_by_first / 100)
        if record.report_accepted_at is not None and hold.layer == 1:
            metrics.REPORT_TO_STOP_CONFIRMED.labels(
                institution.kind.value, institution.code
            ).observe(max(0.0, (now - record.report_accepted_at).total_seconds()))
