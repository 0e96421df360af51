"""Re-verification with hand-written fakes: every stopped first-level hold asked about again,
one status query per institution and page in the gateway's bulk lane; a stop no longer in force
moves its hold to expired with the cause `reverified` and a divergence; jobs resume from their
cursor, and one running job per scope."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from uuid import UUID

from stopper.app.dispatch import Dispatcher
from stopper.app.gateway import InstitutionGateway
from stopper.app.policies import ReverifyPolicy
from stopper.app.ports import HoldRecord
from stopper.app.reverify import Reverifier
from stopper.app.reverify_ports import JobState
from stopper.config import DispatchSettings
from stopper.domain.holds import HoldEvent, HoldState
from stopper.domain.messages import (
    AnswerKind,
    InstitutionAnswer,
    RequestStop,
    StatusKind,
    StopStatus,
)
from stopper.errors import InstitutionUnavailable
from stopper.metrics import REVERIFIED
from stopper.registry import Institution, load_registry
from tests.unit.fakes import FakeDispatchStore, FixedClock, ScriptedAdapter, requested_hold

REGISTRY = load_registry()
NOW = requested_hold().requested_at + timedelta(days=3)
HELD = 100_000


def stopped(code: str = "BK01", layer: int = 1, held: int = HELD) -> HoldRecord:
    record = requested_hold(code)
    record.hold.state = HoldState.STOPPED
    record.hold.layer = layer
    record.hold.amount_stopped = held
    return replace(record, attempts=1, sent_at=NOW, confirmed_at=NOW)


def key(record: HoldRecord) -> str:
    return f"stopper-{record.hold.id}-0"


def says(
    record: HoldRecord, kind: StatusKind, answer: InstitutionAnswer | None = None
) -> StopStatus:
    return StopStatus(key(record), kind, record.hold.id, answer)


def still_stopped(record: HoldRecord, held: int = HELD) -> StopStatus:
    return says(record, StatusKind.ANSWERED, InstitutionAnswer(AnswerKind.STOPPED, held))


def setup(
    adapter: ScriptedAdapter | None = None,
    page: int = 500,
    store: FakeDispatchStore | None = None,
    clock: FixedClock | None = None,
    owner: str = "w1",
) -> tuple[Reverifier, FakeDispatchStore, ScriptedAdapter, FixedClock]:
    """A worker's re-verifier (`owner`); another worker shares the store, institutions and clock."""
    store = store or FakeDispatchStore()
    adapter = adapter or ScriptedAdapter(
        {code: [InstitutionAnswer(AnswerKind.ACCEPTED)] for code in REGISTRY}
    )
    clock = clock or FixedClock(NOW)
    rng = random.Random(1)
    dispatcher = Dispatcher(
        store,
        InstitutionGateway(adapter, REGISTRY, hedge=False, rng=rng),
        clock,
        DispatchSettings().policy(),
        rng,
    )
    policy = ReverifyPolicy(page=page, holds_per_s=1e9, lease=timedelta(seconds=60))
    return Reverifier(store, dispatcher, clock, owner=owner, policy=policy), store, adapter, clock


def in_id_order(*records: HoldRecord) -> list[HoldRecord]:
    """In the order a job asks about them: by institution, then id."""
    return sorted(records, key=lambda r: (r.hold.institution_code, r.hold.id))


async def run_to_the_end(reverifier: Reverifier) -> int:
    pages = 0
    while await reverifier.run_once():
        pages += 1
    return pages


async def test_each_stopped_first_level_hold_is_asked_and_a_lifted_stop_moves_to_expired() -> None:
    reverifier, store, adapter, _ = setup()
    confirmed, lifted, unknown, not_found, less = in_id_order(*(stopped() for _ in range(5)))
    layer_two, frozen = stopped(layer=2), stopped()
    frozen.hold.state = HoldState.FROZEN
    for record in (confirmed, lifted, unknown, not_found, less, layer_two, frozen):
        store.add(record)
    adapter.status_script["BK01"] = [
        still_stopped(confirmed),
        says(lifted, StatusKind.LIFTED),
        says(unknown, StatusKind.UNKNOWN),
        says(not_found, StatusKind.ANSWERED, InstitutionAnswer(AnswerKind.NOT_FOUND)),
        still_stopped(less, HELD - 1),
    ]
    lifted_before = REVERIFIED.labels("lifted")._value.get()
    begun = await reverifier.start(None, "operator:ana")
    assert (begun.started, begun.job.holds) == (True, 5)
    await run_to_the_end(reverifier)
    assert adapter.status_queries == [
        [key(r) for r in (confirmed, lifted, unknown, not_found, less)]
    ]
    job = await reverifier.job(begun.job.id)
    assert job is not None and job.state is JobState.FINISHED and job.finished_at == NOW
    assert dict(job.progress.outcomes) == {"confirmed": 1, "lifted": 3, "amount_differs": 1}
    assert (job.progress.asked, job.remaining) == (5, 0)
    assert REVERIFIED.labels("lifted")._value.get() == lifted_before + 3
    for record in (lifted, unknown, not_found):
        hold = store.holds[record.hold.id].hold
        assert hold.state is HoldState.EXPIRED
        assert hold.history[-1].event is HoldEvent.STOP_LIFTED
        assert hold.history[-1].cause.startswith("reverified: the institution says")
    for record in (confirmed, less):
        assert store.holds[record.hold.id].hold.state is HoldState.STOPPED
    assert sorted(
        (d.hold_id, d.institution_status, d.found_by) for d in store.divergences
    ) == sorted(
        [
            (lifted.hold.id, "lifted", "reverification"),
            (unknown.hold.id, "unknown", "reverification"),
            (not_found.hold.id, "not_found", "reverification"),
            (less.hold.id, "stopped_less", "reverification"),
        ]
    )


class _Answering(ScriptedAdapter):
    """Status queries answered by `answer(keys)`, each query recorded."""

    def __init__(self, answer: Callable[[Sequence[str]], list[StopStatus]]) -> None:
        super().__init__({code: [InstitutionAnswer(AnswerKind.ACCEPTED)] for code in REGISTRY})
        self._answer = answer

    async def stop_statuses(
        self, institution: Institution, idempotency_keys: Sequence[str]
    ) -> list[StopStatus]:
        self.status_queries.append(list(idempotency_keys))
        return self._answer(idempotency_keys)


async def test_pages_go_in_id_order_and_a_restart_resumes_after_the_last_page_saved() -> None:
    records = in_id_order(*(stopped() for _ in range(5)))
    by_key = {key(r): r for r in records}
    adapter = _Answering(lambda keys: [still_stopped(by_key[k]) for k in keys])
    reverifier, store, _, clock = setup(adapter, page=2)
    for record in records:
        store.add(record)
    begun = await reverifier.start("BK01", "operator:ana")
    assert await reverifier.run_once() == 2
    # The worker stops; another (or the same after a restart: a new owner) takes the job over
    # once the lease has lapsed.
    resumed, *_ = setup(adapter, page=2, store=store, clock=clock, owner="w2")
    assert await resumed.run_once() == 0  # w1's lease still holds
    clock.at = NOW + timedelta(minutes=2)
    await run_to_the_end(resumed)
    assert adapter.status_queries == [
        [key(r) for r in records[0:2]],
        [key(r) for r in records[2:4]],
        [key(r) for r in records[4:]],
    ]
    job = await resumed.job(begun.job.id)
    assert job is not None and job.state is JobState.FINISHED
    assert dict(job.progress.outcomes) == {"confirmed": 5}
    # The first worker's lease was taken over: what it still has in hand is not saved.
    assert await reverifier.run_once() == 0


async def test_one_running_job_per_scope_and_a_job_of_every_institution_overlaps_all() -> None:
    reverifier, store, _, _ = setup()
    store.add(stopped("BK01"))
    store.add(stopped("BK02"))
    bk01 = await reverifier.start("BK01", "operator:ana")
    assert (await reverifier.start("BK02", "operator:ana")).started
    again = await reverifier.start("BK01", "operator:bo")
    assert (again.started, again.job.id) == (False, bk01.job.id)
    every = await reverifier.start(None, "operator:bo")
    assert (every.started, every.job.id) == (False, bk01.job.id)
    await run_to_the_end(reverifier)
    assert (await reverifier.start(None, "operator:bo")).started
    assert (await reverifier.start("BK02", "operator:bo")).started is False
    assert len(await reverifier.jobs(10)) == 3


async def test_an_institution_that_cannot_be_asked_is_counted_and_the_job_goes_on() -> None:
    reverifier, store, adapter, _ = setup()
    down, up = stopped("BK01"), stopped("BK02")
    store.add(down)
    store.add(up)
    adapter.status_script["BK01"] = [InstitutionUnavailable("503")]
    adapter.status_script["BK02"] = [still_stopped(up)]
    begun = await reverifier.start(None, "operator:ana")
    await run_to_the_end(reverifier)
    job = await reverifier.job(begun.job.id)
    assert job is not None and job.state is JobState.FINISHED
    assert dict(job.progress.outcomes) == {"unreachable": 1, "confirmed": 1}
    assert (job.progress.asked, job.progress.unreachable) == (1, 1)
    assert store.holds[down.hold.id].hold.state is HoldState.STOPPED


async def test_a_hold_that_changed_meanwhile_is_left_alone_and_a_stranger_s_status_refused() -> (
    None
):
    moving, asked = in_id_order(stopped(), stopped())
    stranger = stopped()

    def answered(keys: Sequence[str]) -> list[StopStatus]:
        # While the query is out, a person has the hold frozen.
        store.holds[moving.hold.id].hold.state = HoldState.FROZEN
        return [
            says(moving, StatusKind.LIFTED),
            StopStatus(key(asked), StatusKind.ANSWERED, stranger.hold.id, None),
            still_stopped(stranger),
        ]

    reverifier, store, _, _ = setup(_Answering(answered))
    store.add(moving)
    store.add(asked)
    begun = await reverifier.start("BK01", "operator:ana")
    await run_to_the_end(reverifier)
    job = await reverifier.job(begun.job.id)
    assert job is not None
    assert dict(job.progress.outcomes) == {"moved": 1, "other_hold": 1, "other_request": 1}
    assert store.holds[moving.hold.id].hold.state is HoldState.FROZEN
    assert store.holds[asked.hold.id].hold.state is HoldState.STOPPED
    assert store.divergences == []


class _HangingStatuses(ScriptedAdapter):
    """Status queries that wait until released; stop requests answered at once."""

    def __init__(self) -> None:
        super().__init__({code: [InstitutionAnswer(AnswerKind.STOPPED, HELD)] for code in REGISTRY})
        self.release = asyncio.Event()
        self.queries_in = 0

    async def stop_statuses(
        self, institution: Institution, idempotency_keys: Sequence[str]
    ) -> list[StopStatus]:
        self.queries_in += 1
        await self.release.wait()
        return []


async def test_a_live_stop_request_never_waits_behind_the_bulk_lane() -> None:
    adapter = _HangingStatuses()
    gateway = InstitutionGateway(adapter, REGISTRY, hedge=False, rng=random.Random(1))
    institution = REGISTRY["BK01"]
    keys = [f"stopper-{UUID(int=n)}-0" for n in range(3)]
    bulk = [
        asyncio.create_task(gateway.stop_statuses(institution, keys, bulk=True))
        for _ in range(institution.holds_in_flight)
    ]
    await asyncio.sleep(0)
    assert 1 <= adapter.queries_in < institution.holds_in_flight  # bulk holds only its share
    hold = requested_hold("BK01").hold
    live = await asyncio.wait_for(
        asyncio.gather(
            *(
                gateway.request_stop(institution, hold.stop_request(NOW))
                for _ in range(institution.holds_in_flight - adapter.queries_in)
            )
        ),
        timeout=1,
    )
    assert all(a.kind is AnswerKind.STOPPED for a in live)
    assert all(isinstance(r, RequestStop) for r in adapter.requests)
    adapter.release.set()
    await asyncio.gather(*bulk)
