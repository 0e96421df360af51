"""Hand-written fakes of Stopper's ports, for unit tests."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID, uuid4

from stopper.app.case_events import CaseEvent, case_opened, events_of_changes
from stopper.app.ports import (
    CallbackNonce,
    CaseFunds,
    Divergence,
    HoldDecision,
    HoldRecord,
    HoldUpdate,
    Message,
    OpenedCase,
    OutboxEvent,
    OutboxMessage,
    Payout,
    ReconcileItem,
    RecordOutcome,
    ReturnStart,
    VictimTransfer,
)
from stopper.app.supplement_ports import SupplementDecision, SupplementRecord, SupplementWritten
from stopper.contracts.institutions import (
    FreezeAnswerV1,
    ReleaseAnswerV1,
    ReturnAnswerV1,
    StopRequestV1,
)
from stopper.domain.cases import hold_id_for
from stopper.domain.holds import (
    Hold,
    HoldState,
    MergeAsks,
    Transition,
    idempotency_key_for,
    merge_asks,
)
from stopper.domain.messages import (
    InstitutionAnswer,
    OrderAnswer,
    OrderFreeze,
    OrderRelease,
    OrderReturn,
    RequestStop,
    StatusKind,
    StopStatus,
)
from stopper.domain.mules import mule_cases_of
from stopper.domain.returns import FlowEdge
from stopper.domain.supplements import Supplement
from stopper.domain.trail import TrailEdge, TrailNode
from stopper.errors import InstitutionError, StoreUnavailable
from stopper.registry import Institution
from tests.unit.fake_mules import FakeMuleReads
from tests.unit.fake_reverifications import FakeReverifications


class FixedClock:
    def __init__(self, at: datetime | None = None) -> None:
        self.at = at or datetime.now(UTC)

    def now(self) -> datetime:
        return self.at


@dataclass
class Published:
    topic: str
    key: str | None
    value: bytes
    headers: dict[str, str]


@dataclass
class FakePublisher:
    sent: list[Published] = field(default_factory=list)

    async def publish(
        self, topic: str, key: str | None, value: bytes, headers: Mapping[str, str] | None = None
    ) -> None:
        self.sent.append(Published(topic, key, value, dict(headers or {})))


class FakeSubscription:
    """Hands out prepared batches; records what was committed."""

    def __init__(self, batches: list[list[Message]], stopping: asyncio.Event) -> None:
        self._batches = batches
        self._stopping = stopping
        self.committed: list[list[int]] = []
        self.closed = False

    async def next_batch(self) -> Sequence[Message]:
        if not self._batches:
            self._stopping.set()
            return []
        return self._batches.pop(0)

    async def commit(self, batch: Sequence[Message]) -> None:
        self.committed.append([m.offset for m in batch])

    def lag(self) -> int | None:
        return sum(len(batch) for batch in self._batches)

    async def close(self) -> None:
        self.closed = True


def message(
    value: bytes, offset: int = 0, key: str | None = None, headers: dict[str, str] | None = None
) -> Message:
    return Message("stopper.reports", 0, offset, key, value, datetime.now(UTC), headers or {})


class FakeDispatchStore(FakeMuleReads, FakeReverifications):
    """The store in dicts and lists, keeping the contract `tests/integration/test_store_contract.py`
    holds it to beside the real store. `update_hold` runs without awaiting, so it is atomic like
    the real one."""

    def __init__(
        self,
        stop_request_topic: str = "stopper.stop-requests",
        case_events_topic: str = "stopper.case-events",
    ) -> None:
        self.stop_request_topic = stop_request_topic
        self.case_events_topic = case_events_topic
        self.cases: dict[UUID, OpenedCase] = {}
        self.holds: dict[UUID, HoldRecord] = {}
        self.transitions: list[Transition] = []
        self.nonces: set[tuple[str, str]] = set()
        self.edges: list[TrailEdge] = []
        self.events: list[OutboxEvent] = []
        self.transfers: list[VictimTransfer] = []
        self.payouts: list[Payout] = []
        self.divergences: list[Divergence] = []
        self.outbox: list[OutboxMessage] = []
        self.published: set[int] = set()  # ids of the outbox messages relayed
        self.supplements: dict[tuple[UUID, int], SupplementRecord] = {}
        FakeReverifications.__init__(self)

    def add(self, record: HoldRecord) -> None:
        self.holds[record.hold.id] = record

    async def case_fingerprint(self, case_id: UUID) -> str | None:
        case = self.cases.get(case_id)
        return case.fingerprint if case else None

    async def record_opened_cases(
        self, cases: Sequence[OpenedCase], claim: HoldDecision | None = None
    ) -> RecordOutcome:
        created, known, claimed = [], {}, []
        accounts = [t.receiving_account.id for c in cases for t in c.case.transfers]
        earlier = self.earlier_cases(accounts)  # before the batch, as the real write reads it
        for opened in cases:
            case = opened.case
            if case.id in self.cases:
                known[case.id] = self.cases[case.id].fingerprint
                continue
            self.cases[case.id] = opened
            created.append(case.id)
            self._tell([case_opened(case)])  # the holds as born, before a claim moves them
            self.transitions += opened.births
            self.transfers += [
                VictimTransfer(
                    t.victim_ref,
                    hold_id_for(case.id, t.receiving_account),
                    t.currency,
                    t.amount,
                    t.victim_account.institution_code,
                    t.victim_account.account_number,
                )
                for t in case.transfers
            ]
            for hold in case.holds:
                born = new_record(hold, case.opened_at, opened.accepted_at)
                version = hold.version
                change = None if claim is None else claim(born)
                if change is None:
                    self.add(copy.deepcopy(born))
                    continue
                written = change.applied(copy.deepcopy(born))
                written.hold.version = version + 1
                self.add(written)
                self.transitions += change.transitions
                self._tell(events_of_changes([(born, change)], [], {case.id: case.report_id}))
                claimed.append((born, change))
        new = [self.cases[case_id].case for case_id in created]
        return RecordOutcome(
            created=created,
            already_known=known,
            claimed=claimed,
            mule_cases=mule_cases_of(new, earlier),
        )

    async def holds_to_reconcile(
        self, institution_code: str, accepted_before: datetime, limit: int
    ) -> list[ReconcileItem]:
        found = [
            ReconcileItem(
                r.hold.id, idempotency_key_for(r.hold.id, r.hold.reapplications), r.hold.state
            )
            for r in self.holds.values()
            if r.hold.institution_code == institution_code
            and (
                (
                    r.hold.state is HoldState.UNCONFIRMED
                    and r.accepted_at is not None
                    and r.accepted_at <= accepted_before
                )
                or (r.hold.state is HoldState.FAILED and r.attempts > 0)
            )
        ] + [
            ReconcileItem(h, s.supplement.idempotency_key, s.supplement.state)
            for (h, _), s in self.supplements.items()
            if self.holds[h].hold.institution_code == institution_code
            and (
                (
                    s.supplement.state is HoldState.UNCONFIRMED
                    and s.accepted_at is not None
                    and s.accepted_at <= accepted_before
                )
                or (s.supplement.state is HoldState.FAILED and s.attempts > 0)
            )
        ]
        return found[:limit]

    async def record_divergence(self, divergence: Divergence) -> None:
        self.divergences.append(divergence)

    async def update_hold(
        self, hold_id: UUID, decide: HoldDecision
    ) -> tuple[HoldRecord, HoldUpdate] | None:
        stored = self.holds.get(hold_id)
        if stored is None:
            return None
        record = copy.deepcopy(stored)
        change = decide(record)
        if change is None:
            return None
        written = change.applied(copy.deepcopy(record))
        written.hold.version = stored.hold.version + 1  # one write, one version
        self._write(written, change)
        trail = self._follow(written, change) if change.follow is not None else []
        self._tell_changes([(record, change)], trail)
        return record, change

    async def update_holds(
        self,
        decisions: Mapping[UUID, HoldDecision],
        nonces: Mapping[UUID, CallbackNonce] | None = None,
        replayed: set[UUID] | None = None,
    ) -> list[tuple[HoldRecord, HoldUpdate]]:
        done = []
        for hold_id, nonce in (nonces or {}).items():
            if (nonce.institution_code, nonce.nonce) in self.nonces:
                if replayed is not None:
                    replayed.add(hold_id)
                decisions = {h: d for h, d in decisions.items() if h != hold_id}
            else:
                self.nonces.add((nonce.institution_code, nonce.nonce))
        for hold_id, decide in decisions.items():
            result = await self.update_hold(hold_id, decide)
            if result is not None:
                done.append(result)
        return done

    def _write(self, written: HoldRecord, change: HoldUpdate) -> None:
        self.holds[written.hold.id] = written
        self.transitions += change.transitions
        self.events += change.events
        for e in change.events:
            self._enqueue(e.topic, e.key, dict(e.payload))
        if change.settle_payouts is not None:
            self.payouts = [
                replace(p, status=change.settle_payouts)
                if p.hold_id == written.hold.id
                and p.round == written.return_round
                and p.status == "pending"
                else p
                for p in self.payouts
            ]

    async def start_returns(
        self, case_id: UUID, decide: Callable[[CaseFunds], Sequence[ReturnStart]]
    ) -> Sequence[ReturnStart] | None:
        if case_id not in self.cases and not any(
            r.hold.case_id == case_id for r in self.holds.values()
        ):
            return None
        for _ in range(5):
            starts = self._start_returns(case_id, decide)
            if starts is not None:
                return starts
        raise StoreUnavailable("holds kept changing under 5 attempts")

    def _start_returns(
        self, case_id: UUID, decide: Callable[[CaseFunds], Sequence[ReturnStart]]
    ) -> Sequence[ReturnStart] | None:
        """One attempt: None if a start was decided on a version of its hold no longer
        stored, and then nothing is written."""
        records = {
            r.hold.id: copy.deepcopy(r) for r in self.holds.values() if r.hold.case_id == case_id
        }
        edges = [
            FlowEdge(e.from_hold_id, e.to_hold_id, e.amount_traced)
            for e in self.edges
            if e.to_hold_id is not None and e.outcome.value in ("followed", "merged")
        ]
        funds = CaseFunds(
            list(records.values()),
            [t for t in self.transfers if t.hold_id in records],
            edges,
            [p for p in self.payouts if p.hold_id in records],
        )
        starts = decide(funds)
        if any(self.holds[s.hold_id].hold.version != s.version for s in starts):
            return None
        for start in starts:
            written = start.update.applied(copy.deepcopy(records[start.hold_id]))
            written.hold.version = start.version + 1
            self._write(written, start.update)
            self._tell_changes([(records[start.hold_id], start.update)], [])
            self.payouts += start.payouts
        return starts

    async def payouts_of(self, hold_id: UUID, round: int) -> list[Payout]:
        return [p for p in self.payouts if p.hold_id == hold_id and p.round == round]

    async def returns_due(self, now: datetime, limit: int) -> list[UUID]:
        return [
            r.hold.id
            for r in self.holds.values()
            if r.hold.state is HoldState.RETURNING
            and r.return_next_attempt_at is not None
            and r.return_next_attempt_at <= now
        ][:limit]

    def _tell_changes(
        self,
        changes: Sequence[tuple[HoldRecord, HoldUpdate]],
        trail: Sequence[tuple[Hold, datetime]],
    ) -> None:
        """Case events, derived as the real store derives them (`events_of_changes`)."""
        report_ids = {case_id: opened.case.report_id for case_id, opened in self.cases.items()}
        case_ids = {r.hold.case_id for r, _ in changes} | {h.case_id for h, _ in trail}
        # A hold a unit test added without its case: told with no report id.
        report_ids.update({c: "" for c in case_ids if c not in report_ids})
        self._tell(events_of_changes(changes, trail, report_ids))

    def _tell(self, events: Sequence[CaseEvent]) -> None:
        for e in events:
            self._enqueue(self.case_events_topic, str(e.case_id), e.payload())

    def _follow(self, parent: HoldRecord, change: HoldUpdate) -> list[tuple[Hold, datetime]]:
        assert change.follow is not None
        nodes = [
            TrailNode.of(r.hold)
            for r in self.holds.values()
            if r.hold.case_id == parent.hold.case_id
        ]
        plan = change.follow(nodes)
        for hold in plan.new_holds:
            self.add(new_record(hold, change.at, parent.report_accepted_at))
            request = StopRequestV1.from_command(hold.stop_request(change.at))
            self._enqueue(self.stop_request_topic, str(hold.id), request.model_dump(mode="json"))
        for hold_id, amount in plan.raised.items():
            self.holds[hold_id].hold.amount_asked = amount
            self.holds[hold_id].hold.version += 1
        for merge, more in zip(plan.merges, plan.merged_amounts, strict=True):
            self._ask_more(self.holds[merge.hold_id].hold, more, parent.hold.id, change.at)
        self.transitions += plan.births + plan.merges
        self.edges += plan.edges
        return [(hold, change.at) for hold in plan.new_holds]

    def _ask_more(self, hold: Hold, more: int, merged_from: UUID, at: datetime) -> None:
        """What a merge asks of the institution, as the real store decides it (`merge_asks`)."""
        asks = merge_asks(hold.state, hold.supplements)
        if asks is MergeAsks.FIRST_REQUEST:
            hold.amount_first_request += more
        elif asks is MergeAsks.SUPPLEMENT:
            hold.supplements += 1
            supplement = Supplement(
                hold.id, hold.supplements, hold.reapplications, more, merged_from, at
            )
            self.supplements[(hold.id, supplement.number)] = SupplementRecord(supplement)
            request = StopRequestV1.from_command(supplement.request(hold))
            self._enqueue(self.stop_request_topic, str(hold.id), request.model_dump(mode="json"))

    async def update_supplement(
        self,
        hold_id: UUID,
        number: int,
        decide: SupplementDecision,
        nonce: CallbackNonce | None = None,
    ) -> tuple[bool, SupplementWritten | None]:
        if nonce is not None:
            if (nonce.institution_code, nonce.nonce) in self.nonces:
                return False, None
            self.nonces.add((nonce.institution_code, nonce.nonce))
        stored, stored_supplement = self.holds.get(hold_id), self.supplements.get((hold_id, number))
        if stored is None or stored_supplement is None:
            return True, None
        record, supplement = copy.deepcopy(stored), copy.deepcopy(stored_supplement)
        change = decide(record, supplement)
        if change is None:
            return True, None
        written = change.hold.applied(copy.deepcopy(record))
        written.hold.version = stored.hold.version + 1
        self._write(written, change.hold)
        trail = self._follow(written, change.hold) if change.hold.follow is not None else []
        self._tell_changes([(record, change.hold)], trail)
        self.supplements[(hold_id, number)] = copy.deepcopy(change.supplement)
        return True, (record, supplement, change)

    async def supplements_due(
        self, now: datetime, requested_before: datetime, limit: int
    ) -> list[tuple[UUID, int]]:
        due = [
            key
            for key, s in self.supplements.items()
            if (
                s.supplement.state in (HoldState.SENT, HoldState.UNCONFIRMED)
                and s.next_attempt_at is not None
                and s.next_attempt_at <= now
            )
            or (
                s.supplement.state is HoldState.REQUESTED
                and s.supplement.requested_at <= requested_before
            )
        ]
        return due[:limit]

    async def supplements_of(self, hold_id: UUID) -> list[SupplementRecord]:
        return [
            copy.deepcopy(s)
            for (h, _), s in sorted(self.supplements.items(), key=lambda kv: kv[0][1])
            if h == hold_id
        ]

    async def get_hold(self, hold_id: UUID) -> HoldRecord | None:
        record = self.holds.get(hold_id)
        return copy.deepcopy(record) if record else None

    async def renew_leases(self, claims: Mapping[UUID, int], until: datetime) -> list[UUID]:
        renewed = []
        for hold_id, attempt in claims.items():
            stored = self.holds.get(hold_id)
            if (
                stored is not None
                and stored.hold.state is HoldState.SENT
                and stored.attempts == attempt
                and stored.next_attempt_at is not None
                and stored.next_attempt_at < until
            ):
                self.holds[hold_id] = replace(stored, next_attempt_at=until)
                renewed.append(hold_id)
        return renewed

    async def due_holds(self, now: datetime, requested_before: datetime, limit: int) -> list[UUID]:
        due = [
            r.hold.id
            for r in self.holds.values()
            if (
                r.hold.state in (HoldState.SENT, HoldState.UNCONFIRMED)
                and r.next_attempt_at
                and r.next_attempt_at <= now
            )
            or (
                r.hold.state is HoldState.REQUESTED
                and r.requested_at <= requested_before
                and (r.next_attempt_at is None or r.next_attempt_at <= now)
            )
        ]
        window = due[: limit * 4]  # as far as the real store looks for known mules
        mules = await self.mule_cases(window)
        return sorted(window, key=lambda h: h not in mules)[:limit]  # known mules first

    async def holds_near_deadline(
        self,
        now: datetime,
        stop_leads: Sequence[timedelta],
        freeze_leads: Sequence[timedelta],
        limit: int,
    ) -> list[UUID]:
        def due(expires: datetime | None, sent: int, leads: Sequence[timedelta]) -> bool:
            ordered = sorted(leads, reverse=True)
            return expires is not None and (
                expires <= now or (sent < len(ordered) and expires <= now + ordered[sent])
            )

        found = [
            (r.stop_expires_at if r.hold.state is HoldState.STOPPED else r.freeze_expires_at, r)
            for r in self.holds.values()
            if (
                r.hold.state is HoldState.STOPPED
                and due(r.stop_expires_at, r.warnings_sent, stop_leads)
            )
            or (
                r.hold.state is HoldState.FROZEN
                and due(r.freeze_expires_at, r.warnings_sent, freeze_leads)
            )
        ]
        # The most urgent first, as the real store orders them.
        return [r.hold.id for at, r in sorted(found, key=lambda f: f[0] or now)][:limit]

    async def freezes_due(self, now: datetime, limit: int) -> list[UUID]:
        return [
            r.hold.id
            for r in self.holds.values()
            if r.hold.state in (HoldState.STOPPED, HoldState.FROZEN)
            and r.freeze_next_attempt_at is not None
            and r.freeze_next_attempt_at <= now
        ][:limit]

    async def releases_due(self, now: datetime, limit: int) -> list[UUID]:
        due = [
            r
            for r in self.holds.values()
            if r.hold.state is HoldState.RELEASING
            and r.release_next_attempt_at is not None
            and r.release_next_attempt_at <= now
        ]
        return [r.hold.id for r in sorted(due, key=lambda r: r.release_next_attempt_at or now)][
            :limit
        ]

    async def case_hold_ids(self, case_id: UUID) -> list[UUID] | None:
        ids = sorted(r.hold.id for r in self.holds.values() if r.hold.case_id == case_id)
        if case_id not in self.cases and not ids:
            return None
        return ids

    async def count_expiring(self, now: datetime, within: timedelta) -> int:
        return sum(
            1
            for r in self.holds.values()
            if r.hold.state is HoldState.STOPPED
            and r.stop_expires_at is not None
            and r.stop_expires_at <= now + within
        )

    async def relay_outbox(
        self, publish: Callable[[Sequence[OutboxMessage]], Awaitable[None]], limit: int
    ) -> int:
        pending = [m for m in self.outbox if m.id not in self.published][:limit]
        if not pending:
            return 0
        await publish(pending)
        self.published.update(m.id for m in pending)
        return len(pending)

    def _enqueue(self, topic: str, key: str, payload: dict[str, Any]) -> None:
        self.outbox.append(OutboxMessage(len(self.outbox) + 1, topic, key, payload, {}))


class FakeIntakeStore(FakeDispatchStore):
    """The store fake as intake uses it; `fail_next` makes the next calls fail like a lost
    database."""

    def __init__(self, fail_next: int = 0) -> None:
        super().__init__()
        self.fail_next = fail_next

    async def record_opened_cases(
        self, cases: Sequence[OpenedCase], claim: HoldDecision | None = None
    ) -> RecordOutcome:
        if self.fail_next:
            self.fail_next -= 1
            raise StoreUnavailable("fake database down")
        return await super().record_opened_cases(cases, claim)


Scripted = InstitutionAnswer | InstitutionError
_A = TypeVar("_A")


class ScriptedAdapter:
    """Answers from a script per institution (the last entry repeats); records every request."""

    def __init__(self, script: dict[str, list[Scripted]]) -> None:
        self.script = script
        self.requests: list[RequestStop] = []
        self.freezes: list[OrderFreeze] = []
        self.freeze_script: dict[str, list[FreezeAnswerV1 | InstitutionError]] = {}
        self.returns: list[OrderReturn] = []
        self.return_script: dict[str, list[ReturnAnswerV1 | InstitutionError]] = {}
        # Releases: by default each key is released once, what its stop held (the amount in
        # `held`, by hold) freed; a repeated key answers what the first answer said, as an
        # institution answers from its stored result.
        self.releases: list[OrderRelease] = []
        self.release_script: dict[str, list[ReleaseAnswerV1 | InstitutionError]] = {}
        self.held: dict[UUID, int] = {}
        self.released: dict[str, OrderAnswer] = {}
        # Status inquiries: an institution's script of what its record says (last repeats);
        # without one, every key is still pending. `statuses` records every key asked.
        self.status_script: dict[str, list[StopStatus | InstitutionError]] = {}
        self.statuses: list[str] = []
        self.status_queries: list[list[str]] = []

    async def request_stop(
        self, institution: Institution, request: RequestStop
    ) -> InstitutionAnswer:
        self.requests.append(request)
        steps = self.script[institution.code]
        step = steps.pop(0) if len(steps) > 1 else steps[0]
        await asyncio.sleep(0)
        if isinstance(step, InstitutionError):
            raise step
        return step

    async def stop_status(self, institution: Institution, idempotency_key: str) -> StopStatus:
        self.statuses.append(idempotency_key)
        return await _answer_from(
            self.status_script.get(institution.code, []),
            StopStatus(idempotency_key, StatusKind.PENDING),
        )

    async def stop_statuses(
        self, institution: Institution, idempotency_keys: Sequence[str]
    ) -> list[StopStatus]:
        self.status_queries.append(list(idempotency_keys))
        return [await self.stop_status(institution, key) for key in idempotency_keys]

    async def request_freeze(self, institution: Institution, request: OrderFreeze) -> OrderAnswer:
        self.freezes.append(request)
        answer = await _answer_from(
            self.freeze_script.get(institution.code, []),
            FreezeAnswerV1(status="frozen", amount_frozen=request.amount),
        )
        return answer.to_domain()

    async def request_return(self, institution: Institution, request: OrderReturn) -> OrderAnswer:
        self.returns.append(request)
        answer = await _answer_from(
            self.return_script.get(institution.code, []),
            ReturnAnswerV1(status="returned", amount_returned=request.amount),
        )
        return answer.to_domain()

    async def request_release(self, institution: Institution, request: OrderRelease) -> OrderAnswer:
        self.releases.append(request)
        known = self.released.get(request.idempotency_key)
        if known is not None:
            await asyncio.sleep(0)
            return known
        answer = (
            await _answer_from(
                self.release_script.get(institution.code, []),
                ReleaseAnswerV1(
                    status="released", amount_released=self.held.get(request.hold_id, 0)
                ),
            )
        ).to_domain()
        self.released[request.idempotency_key] = answer
        return answer


async def _answer_from(steps: list[_A | InstitutionError], default: _A) -> _A:
    step = (steps.pop(0) if len(steps) > 1 else steps[0]) if steps else default
    await asyncio.sleep(0)
    if isinstance(step, InstitutionError):
        raise step
    return step


def requested_hold(
    institution_code: str = "BK01", amount: int = 100_000, at: datetime | None = None
) -> HoldRecord:
    at = at or datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    hold = Hold(
        id=uuid4(),
        case_id=uuid4(),
        institution_code=institution_code,
        account_number="6222111122223333",
        currency="CNY",
        amount_asked=amount,
    )
    return new_record(hold, at, at)


def new_record(hold: Hold, requested_at: datetime, accepted_at: datetime | None) -> HoldRecord:
    return HoldRecord.born(hold, requested_at=requested_at, report_accepted_at=accepted_at)
