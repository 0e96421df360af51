"""The simulated world: the institutions' callback sender, against a hand-written slow Stopper
on loopback, and the load generator's count of the holds its reports call for."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from uuid import uuid4

from bench.loadgen import holds_called_for
from stopper.app.intake import parse_report, to_opened_case
from stopper.contracts.institutions import StopRequestV1
from stopper.registry import load_registry
from stopper.simulation.institutions import CALLBACK_SENDERS, Behaviour, Simulation
from stopper.simulation.reports import ReportFactory

REGISTRY = load_registry()


class SlowStopper:
    """Answers every callback with 204 after `delay_s`, counting how many it holds at once."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.open = 0
        self.most_open = 0
        self.received = 0

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
                await reader.readexactly(length)
                await asyncio.sleep(self.delay_s)
                self.received += 1
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()


def stop_request(code: str) -> StopRequestV1:
    return StopRequestV1(
        hold_id=uuid4(),
        case_id=uuid4(),
        institution_code=code,
        account_number="NL00SIMU0123456789",
        currency="EUR",
        amount=10_000,
        layer=1,
        idempotency_key=uuid4().hex,
        requested_at=datetime.now(UTC),
    )


async def test_a_burst_of_callbacks_leaves_a_bounded_number_at_a_time_and_all_arrive() -> None:
    stopper = SlowStopper(delay_s=0.05)
    server = await asyncio.start_server(stopper.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    at_once = Behaviour(answers_by_callback=True, callback_delay_ms=0)
    behaviours = dict.fromkeys(REGISTRY, at_once)
    simulation = Simulation(
        REGISTRY,
        behaviours,
        secret_for=lambda ref: "secret",
        stopper_url=f"http://127.0.0.1:{port}",
    )
    owed = 4 * CALLBACK_SENDERS
    code = next(iter(REGISTRY))
    sim = simulation.institutions[code]
    async with server:
        await simulation.start()
        try:
            for _ in range(owed):
                simulation.owe_callback(sim, stop_request(code), {"status": "not_found"})
            for _ in range(200):
                if sim.counts.callbacks_sent + sim.counts.callbacks_failed >= owed:
                    break
                await asyncio.sleep(0.05)
        finally:
            await simulation.stop()
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
