"""The simulated world: the institutions' idempotency (one callback per key), their answers to
status inquiries, their ledger, and their callback sender, driven through the simulator's app
against a hand-written Stopper on loopback; and the load generator's count of the holds its
reports call for."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import httpx

from bench.loadgen import holds_called_for
from stopper.app.intake import parse_report, to_opened_case
from stopper.contracts.amounts import parse_amount
from stopper.contracts.institutions import (
    KnownMuleV1,
    ReleaseRequestV1,
    StopRequestV1,
    StopStatusesV1,
    StopStatusV1,
    StopSupplementV1,
)
from stopper.registry import load_registry
from stopper.simulation.callbacks import CALLBACK_SENDERS
from stopper.simulation.institutions import Simulation
from stopper.simulation.mules import MulePlan
from stopper.simulation.profiles import Behaviour
from stopper.simulation.reports import ReportFactory
from stopper.simulation.server import create_simulation_app

REGISTRY = load_registry()
CODES = list(REGISTRY)
# No faults, no latency, every account found and all its money still there.
AT_ONCE = Behaviour(
    latency_median_ms=0.0, missing_account_rate=0.0, reject_rate=0.0, move_on_rate=0.0
)
BY_CALLBACK = replace(AT_ONCE, answers_by_callback=True, callback_delay_ms=0.0)


class SlowStopper:
    """Answers every callback with 204 after `delay_s`, keeping what it received and counting
    how many connections it holds at once."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.open = 0
        self.most_open = 0
        self.callbacks: list[dict[str, Any]] = []

    @property
    def received(self) -> int:
        return len(self.callbacks)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                body = await reader.readexactly(length)
                await asyncio.sleep(self.delay_s)
                self.callbacks.append(json.loads(body))
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()


@dataclass
class World:
    simulation: Simulation
    client: httpx.AsyncClient  # to the simulator's app, in process
    stopper: SlowStopper


@asynccontextmanager
async def simulated(
    behaviours: dict[str, Behaviour], stopper: SlowStopper | None = None
) -> AsyncIterator[World]:
    """The simulator's app, started, with its callbacks going to a `SlowStopper` on loopback."""
    stopper = stopper or SlowStopper()
    server = await asyncio.start_server(stopper.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    simulation = Simulation(
        REGISTRY,
        {code: behaviours.get(code, AT_ONCE) for code in REGISTRY},
        secret_for=lambda ref: "secret",
        stopper_url=f"http://127.0.0.1:{port}",
    )
    transport = httpx.ASGITransport(app=create_simulation_app(simulation))
    async with server:
        await simulation.start()  # the in-process transport runs no lifespan
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
                yield World(simulation, client, stopper)
        finally:
            await simulation.stop()


def stop_request(code: str, *, hold_id: UUID | None = None, generation: int = 0) -> StopRequestV1:
    hold_id = hold_id or uuid4()
    return StopRequestV1(
        hold_id=hold_id,
        case_id=uuid4(),
        institution_code=code,
        account_number="NL00SIMU0123456789",
        currency="EUR",
        amount=10_000,
        layer=1,
        idempotency_key=f"stopper-{hold_id}-{generation}",
        generation=generation,
        requested_at=datetime.now(UTC),
    )


async def post_stop(client: httpx.AsyncClient, request: StopRequestV1) -> httpx.Response:
    return await client.post(
        f"/institutions/{request.institution_code}/stops",
        content=request.model_dump_json(),
        headers={"Idempotency-Key": request.idempotency_key, "content-type": "application/json"},
    )


async def eventually(holds: Callable[[], bool], within_s: float = 3.0) -> None:
    deadline = time.monotonic() + within_s
    while not holds():
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.01)


async def test_a_repeated_accepted_key_is_accepted_again_and_owes_no_second_callback() -> None:
    code = CODES[0]
    async with simulated({code: BY_CALLBACK}) as world:
        request = stop_request(code)
        for _ in range(5):
            answer = await post_stop(world.client, request)
            assert (answer.status_code, answer.json()) == (202, {"status": "accepted"})
        await eventually(lambda: world.stopper.received == 1)
        for _ in range(3):  # asked again after the callback came
            assert (await post_stop(world.client, request)).status_code == 202
        other = stop_request(code)
        assert (await post_stop(world.client, other)).status_code == 202
        await eventually(lambda: world.stopper.received == 2)
        await asyncio.sleep(0.2)  # time for any callback wrongly owed to arrive
        stats = world.simulation.stats()
    keys = [c["idempotency_key"] for c in world.stopper.callbacks]
    assert keys == [request.idempotency_key, other.idempotency_key]
    counts = stats["institutions"][code]
    assert counts["stop_requests"] == counts["requests"] == 9
    assert counts["stops_executed"] == 2 and counts["double_stops"] == 0
    assert counts["callbacks_owed"] == counts["callbacks_sent"] == 2
    assert stats["totals"]["stop_requests"] == 9 and stats["totals"]["callbacks_owed"] == 2


async def test_a_callback_is_owed_when_the_stop_is_decided_even_if_its_answer_is_lost() -> None:
    code = CODES[0]
    async with simulated({code: replace(BY_CALLBACK, malformed_rate=1.0)}) as world:
        request = stop_request(code)
        for _ in range(3):
            assert "gateway" in (await post_stop(world.client, request)).text
        await eventually(lambda: world.stopper.received == 1)
        await asyncio.sleep(0.2)
    assert world.stopper.received == 1
    assert world.simulation.institutions[code].counts.callbacks_owed == 1


async def test_a_double_callback_delivers_the_one_callback_owed_twice() -> None:
    code = CODES[0]
    async with simulated({code: replace(BY_CALLBACK, double_callback_rate=1.0)}) as world:
        request = stop_request(code)
        for _ in range(2):
            await post_stop(world.client, request)
        await eventually(lambda: world.stopper.received == 2)
        await asyncio.sleep(0.2)
    first, second = world.stopper.callbacks
    assert first == second and first["idempotency_key"] == request.idempotency_key
    counts = world.simulation.institutions[code].counts
    assert (counts.callbacks_owed, counts.callbacks_sent) == (1, 2)


def test_a_callback_institution_knows_its_outcome_only_once_the_callback_is_due() -> None:
    code = CODES[0]
    simulation = Simulation(
        REGISTRY,
        dict.fromkeys(REGISTRY, replace(BY_CALLBACK, callback_delay_ms=1000.0)),
        secret_for=lambda ref: "secret",
        stopper_url="http://127.0.0.1:9",
    )
    sim = simulation.institutions[code]
    request = stop_request(code)
    key = request.idempotency_key
    record = sim.execute(request, now=100.0)
    assert 100.5 <= record.known_at < 101.5  # the delay, drawn between half and one and a half
    pending = {"idempotency_key": key, "status": "pending", "hold_id": str(request.hold_id)}
    assert sim.status(key, now=100.0) == pending
    assert sim.status(key, now=record.known_at - 0.001) == pending
    assert sim.execute(request, now=500.0) is record  # a repeat changes nothing
    assert sim.status(key, now=record.known_at) == {
        "idempotency_key": key,
        "hold_id": str(request.hold_id),
        "status": "stopped",
        "amount_held": 10_000,
        "reason": None,
        "onward": [],
    }


async def test_an_inquiry_says_pending_until_the_callback_is_due_then_gives_the_outcome() -> None:
    code = CODES[0]
    async with simulated({code: replace(BY_CALLBACK, callback_delay_ms=400.0)}) as world:
        request = stop_request(code)
        url = f"/institutions/{code}/stops/{request.idempotency_key}"
        sent = time.monotonic()
        assert (await post_stop(world.client, request)).status_code == 202
        answer = await world.client.get(url)
        assert answer.status_code == 202
        assert answer.json() == {
            "idempotency_key": request.idempotency_key,
            "status": "pending",
            "hold_id": str(request.hold_id),
        }
        inquiries = 1
        while answer.status_code == 202:
            assert time.monotonic() - sent < 2.0
            await asyncio.sleep(0.02)
            answer = await world.client.get(url)
            inquiries += 1
        known_after_s = time.monotonic() - sent
        await eventually(lambda: world.stopper.received == 1)
    assert answer.status_code == 200 and 0.2 <= known_after_s
    status = StopStatusV1.model_validate_json(answer.content)
    assert (status.idempotency_key, status.hold_id) == (request.idempotency_key, request.hold_id)
    assert (status.status, status.amount_held) == ("stopped", 10_000)
    assert world.stopper.callbacks[0]["status"] == "stopped"
    assert world.simulation.stats()["totals"]["status_inquiries"] == inquiries


async def test_an_institution_that_answers_at_once_knows_at_once() -> None:
    code = CODES[0]
    async with simulated({code: AT_ONCE}) as world:
        request = stop_request(code)
        stopped = await post_stop(world.client, request)
        answer = await world.client.get(f"/institutions/{code}/stops/{request.idempotency_key}")
    assert stopped.status_code == 200 and answer.status_code == 200
    assert answer.json() == {
        "idempotency_key": request.idempotency_key,
        "hold_id": str(request.hold_id),
        "reason": None,
        **stopped.json(),
    }
    assert world.simulation.institutions[code].counts.callbacks_owed == 0


async def test_an_inquiry_about_a_key_never_received_is_404_unknown() -> None:
    code = CODES[0]
    async with simulated({code: BY_CALLBACK}) as world:
        key = f"stopper-{uuid4()}-0"
        answer = await world.client.get(f"/institutions/{code}/stops/{key}")
    assert answer.status_code == 404
    assert answer.json() == {"idempotency_key": key, "status": "unknown"}
    assert StopStatusV1.model_validate_json(answer.content).status == "unknown"
    assert world.simulation.institutions[code].counts.status_inquiries == 1


async def test_a_status_query_answers_every_key_asked_in_the_order_asked() -> None:
    code = CODES[0]
    async with simulated({code: replace(BY_CALLBACK, callback_delay_ms=400.0)}) as world:
        answered, pending = stop_request(code), stop_request(code)
        never = f"stopper-{uuid4()}-0"
        await post_stop(world.client, answered)
        await eventually(lambda: world.stopper.received == 1)  # sent once it is due
        await post_stop(world.client, pending)
        keys = [answered.idempotency_key, pending.idempotency_key, never, answered.idempotency_key]
        answer = await world.client.post(
            f"/institutions/{code}/stops/status", json={"idempotency_keys": keys}
        )
    assert answer.status_code == 200
    statuses = StopStatusesV1.model_validate_json(answer.content).statuses
    assert [s.idempotency_key for s in statuses] == keys
    assert [s.status for s in statuses] == ["stopped", "pending", "unknown", "stopped"]
    assert [s.hold_id for s in statuses] == [
        answered.hold_id,
        pending.hold_id,
        None,
        answered.hold_id,
    ]
    assert statuses[0].amount_held == 10_000 and statuses[1].amount_held is None
    counts = world.simulation.stats()["institutions"][code]
    assert (counts["status_queries"], counts["status_keys_asked"]) == (1, 4)


async def test_an_invalid_status_query_is_refused_with_422() -> None:
    code = CODES[0]
    invalid = [
        b"",
        b"not json",
        b'{"keys": ["k"]}',
        b'{"idempotency_keys": []}',
        b'{"idempotency_keys": [""]}',
        b'{"idempotency_keys": ["k"], "extra": 1}',
        json.dumps({"idempotency_keys": ["k"] * 1001}).encode(),
    ]
    async with simulated({code: AT_ONCE}) as world:
        for body in invalid:
            answer = await world.client.post(f"/institutions/{code}/stops/status", content=body)
            assert answer.status_code == 422, body
    counts = world.simulation.institutions[code].counts
    assert (counts.status_queries, counts.status_keys_asked) == (len(invalid), 0)


async def test_inquiries_are_refused_with_503_during_an_outage() -> None:
    code = CODES[0]
    async with simulated({code: replace(AT_ONCE, outage=(0.0, 3600.0))}) as world:
        one = await world.client.get(f"/institutions/{code}/stops/some-key")
        many = await world.client.post(
            f"/institutions/{code}/stops/status", json={"idempotency_keys": ["some-key"]}
        )
    assert (one.status_code, many.status_code) == (503, 503)
    counts = world.simulation.stats()["totals"]
    assert (counts["status_inquiries"], counts["status_queries"]) == (1, 1)


async def test_the_ledger_has_each_holds_newest_generation_as_its_institution_knows_it() -> None:
    at_once, not_found, late = CODES[:3]
    behaviours = {
        at_once: AT_ONCE,
        not_found: replace(AT_ONCE, missing_account_rate=1.0),
        late: replace(BY_CALLBACK, callback_delay_ms=60_000.0),
    }
    async with simulated(behaviours) as world:
        renewed = uuid4()
        first = stop_request(at_once, hold_id=renewed)
        second = stop_request(at_once, hold_id=renewed, generation=1)
        missing, accepted = stop_request(not_found), stop_request(late)
        await post_stop(world.client, first)
        answer = await post_stop(world.client, second)
        await post_stop(world.client, first)  # a late retry of the older generation
        await post_stop(world.client, missing)
        await post_stop(world.client, accepted)
        served = await world.client.get("/ledger")
        in_process = world.simulation.ledger()
    assert served.status_code == 200 and served.json() == {"holds": in_process}

    def entry(request: StopRequestV1, status: str, amount_held: int | None) -> dict[str, Any]:
        return {
            "hold_id": str(request.hold_id),
            "institution_code": request.institution_code,
            "generation": request.generation,
            "idempotency_key": request.idempotency_key,
            "status": status,
            "amount_held": amount_held,
            "supplements": [],
            "known_mule_cases": None,
        }

    assert in_process == [
        entry(second, "stopped", parse_amount(answer.json()["amount_held"])),
        entry(missing, "not_found", None),
        entry(accepted, "pending", None),
    ]


def supplement_of(request: StopRequestV1, number: int, amount: int) -> StopRequestV1:
    """The `number`-th supplement of `request`'s hold: `amount` more on that stop."""
    return request.model_copy(
        update={
            "idempotency_key": f"stopper-{request.hold_id}-s{number}",
            "amount": amount,
            "supplement": StopSupplementV1(
                number=number, adds_to=request.idempotency_key, merged_from_hold_id=uuid4()
            ),
        }
    )


async def test_a_supplement_holds_what_the_balance_allows_once_and_the_ledger_adds_it() -> None:
    code = CODES[0]
    async with simulated({code: AT_ONCE}) as world:
        sim = world.simulation.institutions[code]
        # One account keeps half of whatever reaches it, the other all of it.
        halves, whole = "6222000055550001", "6222000055550002"
        world.simulation.mules.plant(code, halves, MulePlan(keep_share=0.5))
        world.simulation.mules.plant(code, whole, MulePlan(keep_share=1.0))
        first = stop_request(code).model_copy(update={"account_number": halves})
        other = stop_request(code).model_copy(update={"account_number": whole})
        assert parse_amount((await post_stop(world.client, first)).json()["amount_held"]) == 5_000
        await post_stop(world.client, other)
        more = supplement_of(first, 1, 4_000)
        assert "supplement" in json.loads(more.model_dump_json())
        partly = await post_stop(world.client, more)
        again = await post_stop(world.client, more)  # a retry: answered from its record
        fully = await post_stop(world.client, supplement_of(other, 1, 3_000))
        by_hold = {e["hold_id"]: e for e in world.simulation.ledger()}
    assert partly.json() == again.json()
    assert partly.json()["status"] == "stopped"
    assert parse_amount(partly.json()["amount_held"]) == 2_000  # on the wire: "20.00"
    assert parse_amount(fully.json()["amount_held"]) == 3_000
    assert sim.counts.supplements_executed == 2
    assert sim.counts.stops_executed == 2 and sim.counts.double_stops == 0
    entry = by_hold[str(first.hold_id)]
    assert (entry["status"], entry["amount_held"]) == ("stopped", 7_000)
    assert entry["idempotency_key"] == first.idempotency_key  # the stop's own entry
    assert entry["supplements"] == [
        {
            "number": 1,
            "idempotency_key": more.idempotency_key,
            "status": "stopped",
            "amount_held": 2_000,
        }
    ]
    assert by_hold[str(other.hold_id)]["amount_held"] == 13_000


async def test_a_stop_request_for_a_known_mule_is_counted_and_kept_in_the_ledger() -> None:
    code = CODES[0]
    async with simulated({}) as world:
        mule = stop_request(code).model_copy(update={"known_mule": KnownMuleV1(cases=3)})
        plain = stop_request(code)
        for request in (mule, mule, plain):  # a retry is the same request: counted once
            assert (await post_stop(world.client, request)).status_code == 200
        stats = (await world.client.get("/stats")).json()
        ledger = {e["hold_id"]: e["known_mule_cases"] for e in world.simulation.ledger()}
    assert stats["totals"]["mule_flagged"] == stats["institutions"][code]["mule_flagged"] == 1
    assert ledger == {str(mule.hold_id): 3, str(plain.hold_id): None}
    assert "known_mule" not in json.loads(plain.model_dump_json()), (
        "absent unless the account is a mule"
    )
    assert json.loads(mule.model_dump_json())["known_mule"] == {"cases": 3}


async def test_a_burst_of_callbacks_leaves_a_bounded_number_at_a_time_and_all_arrive() -> None:
    stopper = SlowStopper(delay_s=0.05)
    owed = 4 * CALLBACK_SENDERS
    code = CODES[0]
    async with simulated({code: BY_CALLBACK}, stopper) as world:
        sim = world.simulation.institutions[code]
        for _ in range(owed):
            world.simulation.execute(sim, stop_request(code))
        await eventually(lambda: sim.counts.callbacks_sent + sim.counts.callbacks_failed >= owed)
    assert sim.counts.callbacks_owed == owed
    assert sim.counts.callbacks_sent == owed and sim.counts.callbacks_failed == 0
    assert stopper.received == owed
    assert 1 < stopper.most_open <= CALLBACK_SENDERS


def test_the_load_generator_counts_the_holds_intake_opens() -> None:
    """`bench.run` waits for exactly this many holds: it must be intake's own rule."""
    factory = ReportFactory(REGISTRY, seed=3)
    for _ in range(300):
        report = factory.report(datetime.now(UTC))
        now = datetime.now(UTC)
        case = to_opened_case(
            parse_report(json.dumps(report).encode(), REGISTRY),
            accepted_at=now,
            opened_at=now,
            source="kafka",
        )
        assert holds_called_for(report) == len(case.case.holds)


async def test_a_stop_released_or_lifted_at_the_institution_is_reported_lifted() -> None:
    code = CODES[0]
    async with simulated({}) as world:
        kept, lifted = uuid4(), uuid4()
        seeded = await world.client.post(
            f"/institutions/{code}/ledger/stops",
            json={"stops": [{"hold_id": str(h), "amount": 7_000} for h in (kept, lifted)]},
        )
        assert seeded.json() == {"seeded": 2}
        released = stop_request(code)
        await post_stop(world.client, released)
        world.simulation.institutions[code].release(
            ReleaseRequestV1(
                **released.model_dump(
                    include={"hold_id", "case_id", "institution_code", "account_number"}
                ),
                currency="EUR",
                idempotency_key=f"release-{released.hold_id}",
                requested_at=datetime.now(UTC),
                ground="account_cleared",
                generation=0,
            )
        )
        keys = [f"stopper-{kept}-0", f"stopper-{lifted}-0", released.idempotency_key]
        lift = await world.client.post(
            f"/institutions/{code}/ledger/lifted",
            json={"idempotency_keys": [keys[1], keys[2], f"stopper-{uuid4()}-0"]},
        )
        again = await world.client.post(
            f"/institutions/{code}/ledger/lifted", json={"idempotency_keys": [keys[1]]}
        )
        answer = await world.client.post(
            f"/institutions/{code}/stops/status", json={"idempotency_keys": keys}
        )
        refused = await world.client.post(
            f"/institutions/{code}/ledger/stops", json={"stops": [{"hold_id": "x"}]}
        )
    # The released stop is lifted already: only the seeded one is lifted on its own, once.
    assert (lift.json(), again.json(), refused.status_code) == ({"lifted": 1}, {"lifted": 0}, 422)
    statuses = StopStatusesV1.model_validate_json(answer.content).statuses
    assert [(s.status, s.amount_held) for s in statuses] == [
        ("stopped", 7_000),
        ("lifted", None),
        ("lifted", None),
    ]
    assert [s.hold_id for s in statuses] == [kept, lifted, released.hold_id]
    ledger = {e["hold_id"]: e["status"] for e in world.simulation.ledger()}
    assert (ledger[str(kept)], ledger[str(lifted)], ledger[str(released.hold_id)]) == (
        "stopped",
        "lifted",
        "released",
    )
    counts = world.simulation.stats()["institutions"][code]
    assert (counts["seeded_stops"], counts["lifted"]) == (2, 1)
