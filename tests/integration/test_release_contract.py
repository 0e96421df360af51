"""The release's contract at the institution port, held against the hand-written fake
(`ScriptedAdapter`) and the real adapters talking to the simulated institutions over HTTP on
loopback (the JSON adapter, and the ISO 20022 adapter, whose releases take the JSON route: none
of its three message types lifts a stop), so the fake cannot drift:

- a release is done, freeing what the hold's stop held (0 if nothing was held);
- asking again with the same key answers what the first answer said, and releases nothing more.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from stopper.adapters.clock import SystemClock
from stopper.adapters.institutions.http_json import HttpJsonAdapter
from stopper.adapters.institutions.iso20022.adapter import Iso20022Adapter
from stopper.app.message_ports import SentMessage, StopGrounds
from stopper.app.ports import InstitutionAdapter
from stopper.domain.messages import OrderRelease, RequestStop
from stopper.registry import Institution, load_registry
from stopper.serving import serving
from stopper.simulation.institutions import Simulation
from stopper.simulation.profiles import Behaviour
from stopper.simulation.server import create_simulation_app
from tests.unit.fakes import ScriptedAdapter

pytestmark = pytest.mark.integration

REGISTRY = load_registry()
CALM = Behaviour(latency_median_ms=0.0, missing_account_rate=0.0, reject_rate=0.0, move_on_rate=0.0)


class NoMessages:
    """The ISO adapter's message store, unused by a release."""

    async def record_messages(self, messages: Sequence[SentMessage]) -> dict[UUID, StopGrounds]:
        raise AssertionError("a release sends no ISO 20022 message")


@dataclass
class Port:
    adapter: InstitutionAdapter
    institution: Institution
    # Put a stop of `held` in force for the hold at the institution, as a stop answered would.
    hold_stop: Callable[[OrderRelease, int], Awaitable[None]]


@pytest.fixture(params=["fake", "http_json", "iso20022"])
async def port(request: pytest.FixtureRequest) -> AsyncIterator[Port]:
    code = "BK01" if request.param == "iso20022" else "BK07"
    institution = REGISTRY[code]
    assert request.param == "fake" or institution.adapter == request.param
    if request.param == "fake":
        fake = ScriptedAdapter({})

        async def remember(release: OrderRelease, held: int) -> None:
            fake.held[release.hold_id] = held

        yield Port(fake, institution, remember)
        return
    simulation = Simulation(
        REGISTRY,
        {c: CALM for c in REGISTRY},
        secret_for=lambda ref: "unused-secret-0123456789",
        stopper_url="http://127.0.0.1:9",
    )
    async with serving(create_simulation_app(simulation)) as url:
        http = HttpJsonAdapter(url)
        adapter: InstitutionAdapter = (
            http
            if request.param == "http_json"
            else Iso20022Adapter(http, NoMessages(), SystemClock())
        )
        json_stop = replace(institution, adapter="http_json", batch_size=1)

        async def stop(release: OrderRelease, held: int) -> None:
            # The stop itself over the JSON route (the ISO path's camt.056 is tested elsewhere).
            answer = await http.request_stop(
                json_stop,
                RequestStop(
                    hold_id=release.hold_id,
                    case_id=release.case_id,
                    institution_code=code,
                    account_number=release.account_number,
                    currency=release.currency,
                    amount=held,
                    layer=1,
                    idempotency_key=f"stopper-{release.hold_id}-0",
                    generation=0,
                    requested_at=release.requested_at,
                ),
            )
            assert answer.amount_held == held

        try:
            yield Port(adapter, institution, stop)
        finally:
            await http.close()
            simulation.close_requests()


def release_of(code: str) -> OrderRelease:
    hold_id = uuid4()
    return OrderRelease(
        hold_id=hold_id,
        case_id=uuid4(),
        institution_code=code,
        account_number="6222" + str(hold_id.int)[:12],
        currency="CNY",
        ground="report_withdrawn",
        generation=0,
        idempotency_key=f"stopper-release-{hold_id}",
        requested_at=datetime.now(UTC),
    )


async def test_a_release_frees_what_the_stop_held_and_a_repeat_answers_the_same(
    port: Port,
) -> None:
    release = release_of(port.institution.code)
    await port.hold_stop(release, 7_500)
    first = await port.adapter.request_release(port.institution, release)
    assert (first.done, first.amount) == (True, 7_500)
    again = await port.adapter.request_release(port.institution, release)
    assert again == first


async def test_a_hold_with_nothing_held_there_is_released_with_nothing_freed(port: Port) -> None:
    release = release_of(port.institution.code)
    answer = await port.adapter.request_release(port.institution, release)
    assert (answer.done, answer.amount) == (True, 0)
