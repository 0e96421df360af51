"""The institution gateway with a hand-written adapter: one breaker, one set of slots and one
timeout for stops, status inquiries, freezes and returns alike."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import replace
from datetime import timedelta

import pytest

from stopper.app.gateway import InstitutionGateway
from stopper.contracts.institutions import FreezeAnswerV1
from stopper.domain.messages import (
    AnswerKind,
    InstitutionAnswer,
    OrderAnswer,
    OrderFreeze,
    RequestStop,
)
from stopper.errors import (
    BreakerOpen,
    InstitutionTimeout,
    InstitutionUnavailable,
    RequestRefused,
)
from stopper.metrics import FREEZE_ATTEMPTS
from stopper.registry import BreakerPolicy, Institution, Registry, load_registry
from tests.unit.fakes import ScriptedAdapter, requested_hold

STOPPED = InstitutionAnswer(AnswerKind.STOPPED, amount_held=60_000)


def registry(**changes: object) -> Registry:
    base = load_registry()
    # BK01 on http_json (one hold per request) unless a test says otherwise.
    bk01 = replace(base["BK01"], **{"adapter": "http_json", "batch_size": 1, **changes})  # type: ignore[arg-type]
    return Registry({**base.institutions, "BK01": bk01})


def stop_request() -> RequestStop:
    record = requested_hold("BK01")
    return record.hold.stop_request(record.requested_at)


def freeze_request() -> OrderFreeze:
    record = requested_hold("BK01")
    hold = record.hold
    return OrderFreeze(
        hold_id=hold.id,
        case_id=hold.case_id,
        institution_code="BK01",
        account_number=hold.account_number,
        currency=hold.currency,
        amount=1_000,
        legal_document_ref="FRZ-1",
        idempotency_key=f"stopper-freeze-{hold.id}-FRZ-1",
        renewal=False,
        requested_at=record.requested_at,
    )


class GatedStops(ScriptedAdapter):
    """Stop requests wait until `release` is set; everything else answers at once."""

    def __init__(self) -> None:
        super().__init__({"BK01": [STOPPED]})
        self.release = asyncio.Event()
        self.stops_started = 0

    async def request_stop(
        self, institution: Institution, request: RequestStop
    ) -> InstitutionAnswer:
        self.stops_started += 1
        await self.release.wait()
        return await super().request_stop(institution, request)


class Silent(ScriptedAdapter):
    """An adapter that ignores its own timeout: the gateway must still end the call."""

    async def request_freeze(self, institution: Institution, request: OrderFreeze) -> OrderAnswer:
        await asyncio.sleep(3600)
        return OrderAnswer(True, request.amount)


async def test_freezes_wait_for_the_slots_stop_requests_hold() -> None:
    adapter = GatedStops()
    gateway = InstitutionGateway(adapter, registry(concurrency=1), hedge=False)
    bk01 = gateway.registry["BK01"]
    stop = asyncio.create_task(gateway.request_stop(bk01, stop_request()))
    await asyncio.sleep(0.01)
    freeze = asyncio.create_task(gateway.request_freeze(bk01, freeze_request()))
    await asyncio.sleep(0.01)
    assert adapter.stops_started == 1 and adapter.freezes == []  # the one slot is the stop's
    adapter.release.set()
    assert (await stop).kind is AnswerKind.STOPPED
    answer = await freeze
    assert answer.done and answer.amount == 1_000
    assert len(adapter.freezes) == 1


async def test_an_institution_taking_batches_has_a_slot_per_hold_of_its_requests() -> None:
    adapter = GatedStops()
    reg = registry(adapter="iso20022", concurrency=2, batch_size=3)
    gateway = InstitutionGateway(adapter, reg, hedge=False)
    bk01 = gateway.registry["BK01"]
    stops = [asyncio.create_task(gateway.request_stop(bk01, stop_request())) for _ in range(7)]
    await asyncio.sleep(0.01)
    assert adapter.stops_started == 6  # two requests of three holds each: the adapter's to send
    adapter.release.set()
    await asyncio.gather(*stops, return_exceptions=True)


async def test_an_open_breaker_refuses_a_return_before_anything_is_sent() -> None:
    adapter = ScriptedAdapter({"BK01": [InstitutionUnavailable("down")]})
    reg = registry(breaker=BreakerPolicy(failure_threshold=2, cooldown_s=60))
    gateway = InstitutionGateway(adapter, reg, hedge=False)
    bk01 = gateway.registry["BK01"]
    for _ in range(2):
        with pytest.raises(InstitutionUnavailable):
            await gateway.request_stop(bk01, stop_request())
    adapter.freeze_script["BK01"] = [FreezeAnswerV1(status="frozen", amount_frozen=1_000)]
    with pytest.raises(BreakerOpen):
        await gateway.request_freeze(bk01, freeze_request())
    assert adapter.freezes == []
    assert gateway.breaker("BK01").trips == 1


async def test_a_request_of_many_holds_counts_once_against_the_breaker() -> None:
    echoes = []
    for _ in range(3):
        echo = InstitutionUnavailable("answered HTTP 503")
        echo.counted_elsewhere = True
        echoes.append(echo)
    adapter = ScriptedAdapter({"BK01": [*echoes, InstitutionUnavailable("answered HTTP 503")]})
    reg = registry(breaker=BreakerPolicy(failure_threshold=2, cooldown_s=60))
    gateway = InstitutionGateway(adapter, reg, hedge=False)
    bk01 = gateway.registry["BK01"]
    for _ in range(4):
        with pytest.raises(InstitutionUnavailable):
            await gateway.request_stop(bk01, stop_request())
    assert gateway.breaker("BK01").trips == 0, "one failed request, however many holds"


async def test_a_refusal_is_an_answer_and_counts_for_the_breaker_not_against_it() -> None:
    adapter = ScriptedAdapter({"BK01": [RequestRefused("HTTP 400")]})
    reg = registry(breaker=BreakerPolicy(failure_threshold=1, cooldown_s=60))
    gateway = InstitutionGateway(adapter, reg, hedge=False)
    bk01 = gateway.registry["BK01"]
    for _ in range(3):
        with pytest.raises(RequestRefused):
            await gateway.request_stop(bk01, stop_request())
    assert gateway.breaker("BK01").trips == 0
    assert len(adapter.requests) == 3


async def test_freeze_attempts_are_counted_by_outcome() -> None:
    adapter = ScriptedAdapter({"BK01": [STOPPED]})
    gateway = InstitutionGateway(adapter, registry(), hedge=False)
    bk01 = gateway.registry["BK01"]
    rejected = FREEZE_ATTEMPTS.labels("BK01", "rejected")
    frozen = FREEZE_ATTEMPTS.labels("BK01", "frozen")
    before = (rejected._value.get(), frozen._value.get())
    adapter.freeze_script["BK01"] = [
        FreezeAnswerV1(status="rejected", reason="no document"),
        FreezeAnswerV1(status="frozen", amount_frozen=1_000),
    ]
    refused = await gateway.request_freeze(bk01, freeze_request())
    done = await gateway.request_freeze(bk01, freeze_request())
    assert not refused.done and refused.reason == "no document"
    assert done.done
    assert (rejected._value.get(), frozen._value.get()) == (before[0] + 1, before[1] + 1)


async def test_a_call_the_adapter_never_ends_is_cut_by_the_gateway() -> None:
    gateway = InstitutionGateway(Silent({}), registry(timeout_ms=50), hedge=False)
    bk01 = gateway.registry["BK01"]
    with pytest.raises(InstitutionTimeout, match="freeze"):
        await asyncio.wait_for(gateway.request_freeze(bk01, freeze_request()), timeout=5)
    assert gateway.health.snapshot("BK01", 0).failures == 1


async def test_retry_after_follows_the_policy_and_waits_for_the_breaker() -> None:
    reg = registry(breaker=BreakerPolicy(failure_threshold=1, cooldown_s=30))
    gateway = InstitutionGateway(
        ScriptedAdapter({"BK01": [InstitutionUnavailable("down")]}),
        reg,
        hedge=False,
        rng=random.Random(1),
    )
    bk01 = gateway.registry["BK01"]
    assert gateway.retry_after(bk01, 1, RequestRefused("HTTP 400")) is None
    first = gateway.retry_after(bk01, 1, InstitutionTimeout("slow"))
    assert first is not None and first <= timedelta(milliseconds=bk01.retry.initial_backoff_ms)
    with pytest.raises(InstitutionUnavailable):
        await gateway.request_stop(bk01, stop_request())
    waited = gateway.retry_after(bk01, 1, InstitutionUnavailable("down"))
    assert waited is not None and waited > timedelta(seconds=25)  # the breaker's cooldown


class StalledTimeouts(ScriptedAdapter):
    """Every stop request times out; with `stall_s`, the process stalls (a blocking stretch of
    work, as a starved CPU makes it) while the request is out, before the timeout is raised."""

    def __init__(self, stall_s: float) -> None:
        super().__init__({"BK01": [InstitutionTimeout("no answer within 200 ms")]})
        self.stall_s = stall_s

    async def request_stop(
        self, institution: Institution, request: RequestStop
    ) -> InstitutionAnswer:
        await asyncio.sleep(0.001)
        if self.stall_s:
            time.sleep(self.stall_s)  # noqa: ASYNC251 -- the stall itself: the loop does not run
        await asyncio.sleep(0.001)
        return await super().request_stop(institution, request)


@pytest.mark.parametrize("stall_s", [0.0, 0.1])
async def test_timeouts_while_the_process_stalled_do_not_open_the_breaker(stall_s: float) -> None:
    from stopper.app.loop_lag import LoopLag
    from stopper.metrics import CALLS_EXCUSED

    lag = LoopLag(interval_s=0.01)
    stopping = asyncio.Event()
    watching = asyncio.create_task(lag.run(stopping))
    reg = registry(timeout_ms=200, breaker=BreakerPolicy(failure_threshold=2, cooldown_s=60))
    gateway = InstitutionGateway(StalledTimeouts(stall_s), reg, hedge=False, lag=lag)
    excused = CALLS_EXCUSED.labels("BK01")._value.get()
    raised: list[type[Exception]] = []
    try:
        await asyncio.sleep(0.02)
        for _ in range(3):
            with pytest.raises((InstitutionTimeout, BreakerOpen)) as e:
                await gateway.request_stop(reg["BK01"], stop_request())
            raised.append(e.type)
    finally:
        stopping.set()
        await watching
    if stall_s:
        # 100 ms of a 200 ms timeout with the loop stalled: the process was late, not BK01.
        assert gateway.breaker("BK01").trips == 0
        assert raised == [InstitutionTimeout] * 3
        assert CALLS_EXCUSED.labels("BK01")._value.get() - excused == 3
    else:
        # The same timeouts with the loop on time are the institution's: the breaker opens.
        assert gateway.breaker("BK01").trips == 1
        assert raised == [InstitutionTimeout, InstitutionTimeout, BreakerOpen]
        assert CALLS_EXCUSED.labels("BK01")._value.get() == excused


async def test_the_loop_lag_counts_a_stall_still_under_way() -> None:
    from stopper.app.loop_lag import LoopLag

    lag = LoopLag(interval_s=0.01)
    stopping = asyncio.Event()
    watching = asyncio.create_task(lag.run(stopping))
    await asyncio.sleep(0.03)
    started = asyncio.get_running_loop().time()
    assert lag.stalled_since(started) < 0.05
    time.sleep(0.08)  # noqa: ASYNC251 -- a stall of the loop, on purpose
    # The watcher has not woken yet: the stall is seen as it happens.
    assert lag.stalled_since(started) >= 0.06
    await asyncio.sleep(0.03)
    assert lag.stalled_since(started) >= 0.06  # and recorded once it woke
    stopping.set()
    await watching
