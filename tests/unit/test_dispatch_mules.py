"""Known mule accounts in the fan-out, with hand-written fakes: their stop requests go first and
say in how many cases the account is named; the registry never holds a stop up."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from uuid import UUID, uuid4

from stopper.app.dispatch import Dispatcher
from stopper.app.gateway import InstitutionGateway
from stopper.app.ports import HoldRecord
from stopper.config import DispatchSettings
from stopper.domain.holds import Hold
from stopper.domain.messages import AnswerKind, InstitutionAnswer, RequestStop
from stopper.errors import StoreUnavailable
from stopper.metrics import MULE_STOP_REQUESTS
from stopper.registry import Institution, Registry, load_registry
from tests.unit.fakes import FakeDispatchStore, FixedClock, ScriptedAdapter, new_record

STOPPED = InstitutionAnswer(AnswerKind.STOPPED, amount_held=1_000)
NOW = FixedClock().now()


def hold_on(account: str, institution_code: str = "BK01") -> HoldRecord:
    """A requested hold of a case of its own, on `account`, requested a minute ago."""
    hold = Hold(uuid4(), uuid4(), institution_code, account, "CNY", 100_000)
    return new_record(hold, NOW - timedelta(minutes=1), NOW - timedelta(minutes=1))


def setup(
    store: FakeDispatchStore, reg: Registry | None = None
) -> tuple[Dispatcher, ScriptedAdapter]:
    reg = reg or load_registry()
    adapter = ScriptedAdapter({code: [STOPPED] for code in reg})
    rng = random.Random(3)
    gateway = InstitutionGateway(adapter, reg, hedge=False, rng=rng)
    dispatcher = Dispatcher(store, gateway, FixedClock(NOW), DispatchSettings().policy(), rng)
    return dispatcher, adapter


def sent(adapter: ScriptedAdapter) -> list[tuple[UUID, int]]:
    return [(r.hold_id, r.mule_cases) for r in adapter.requests]


async def test_the_sweeper_sends_known_mules_first_and_says_in_how_many_cases() -> None:
    store = FakeDispatchStore()
    plain = hold_on("6222000000000001")
    mules = [hold_on("6222000000000099") for _ in range(3)]
    for record in (plain, *mules):
        store.add(record)
    dispatcher, adapter = setup(store)
    before = MULE_STOP_REQUESTS.labels("BK01")._value.get()
    await dispatcher.sweep_once()
    await dispatcher.wait_idle()
    assert sent(adapter)[3:] == [(plain.hold.id, 0)]
    assert sorted(sent(adapter)[:3]) == sorted((m.hold.id, 3) for m in mules)
    assert MULE_STOP_REQUESTS.labels("BK01")._value.get() - before == 3


async def test_intakes_first_attempts_start_with_the_known_mules_it_read() -> None:
    store = FakeDispatchStore()
    dispatcher, adapter = setup(store)
    plain, mule = hold_on("6222000000000002"), hold_on("6222000000000003")
    claimed = []
    for record in (plain, mule):
        change = dispatcher.claim_new(record)
        assert change is not None
        store.add(change.applied(record))
        claimed.append((record, change))
    await dispatcher.start_new(claimed, {mule.hold.id: 2})
    await dispatcher.wait_idle()
    assert sent(adapter) == [(mule.hold.id, 2), (plain.hold.id, 0)]


class RegistryDown(FakeDispatchStore):
    async def mule_cases(self, hold_ids: Sequence[UUID]) -> dict[UUID, int]:
        raise StoreUnavailable("the registry's read timed out")


async def test_a_registry_that_cannot_be_read_holds_no_stop_up() -> None:
    store = RegistryDown()
    records = [hold_on("6222000000000004") for _ in range(2)]
    for record in records:
        store.add(record)
    dispatcher, adapter = setup(store)
    await dispatcher.attempt(records[0].hold.id, first=True)
    assert sent(adapter) == [(records[0].hold.id, 0)]
    assert store.holds[records[0].hold.id].hold.state.value == "stopped"


class Gate:
    """An adapter whose answers wait for `release`; records the order requests reached it."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.order: list[UUID] = []

    async def request_stop(
        self, institution: Institution, request: RequestStop
    ) -> InstitutionAnswer:
        self.order.append(request.hold_id)
        await self.release.wait()
        return STOPPED


async def test_a_known_mule_takes_its_institutions_next_free_slot_ahead_of_the_others() -> None:
    base = load_registry()
    one_at_a_time = replace(base["BK07"], concurrency=1)  # JSON: one hold per request
    reg = Registry({**base.institutions, "BK07": one_at_a_time})
    gate = Gate()
    gateway = InstitutionGateway(gate, reg, hedge=False)  # type: ignore[arg-type]
    requests = [
        replace(hold_on(f"62220000000001{n}", "BK07").hold.stop_request(NOW), mule_cases=cases)
        for n, cases in ((0, 0), (1, 0), (2, 0), (3, 4))
    ]
    calls = []
    for request in requests:  # the first takes the one slot; the others wait in this order
        calls.append(asyncio.create_task(gateway.request_stop(one_at_a_time, request)))
        await asyncio.sleep(0)
    gate.release.set()
    await asyncio.gather(*calls)
    ids = [r.hold_id for r in requests]
    assert gate.order == [ids[0], ids[3], ids[1], ids[2]]
