"""Hedged stop requests: a slow attempt is sent once more (same request), the first answer
wins; nothing is hedged without a history of answers."""

from __future__ import annotations

import asyncio

import pytest

from stopper.app.hedging import MIN_SAMPLES, HedgeDelay, hedged
from stopper.errors import InstitutionTimeout
from stopper.metrics import STOP_HEDGES


def warmed(latency_s: float = 0.01, timeout_s: float = 2.0) -> HedgeDelay:
    delay = HedgeDelay(timeout_s)
    for _ in range(MIN_SAMPLES):
        delay.record(latency_s)
    return delay


class Institution:
    """Answers each call after the next wait in `waits`; a wait of None never answers."""

    def __init__(self, waits: list[float | None], fail_first: bool = False) -> None:
        self.waits = waits
        self.calls = 0
        self.fail_first = fail_first

    async def answer(self) -> str:
        index = self.calls
        self.calls += 1
        wait = self.waits[index]
        if wait is None:
            await asyncio.Event().wait()
        await asyncio.sleep(wait or 0)
        if self.fail_first and index == 0:
            raise InstitutionTimeout("no answer")
        return f"answer {index}"


async def test_no_history_no_hedge() -> None:
    bank = Institution([0.05])
    assert await hedged(bank.answer, HedgeDelay(2.0), "BK01") == "answer 0"
    assert bank.calls == 1


async def test_a_usual_answer_is_not_hedged() -> None:
    bank = Institution([0.005])
    assert await hedged(bank.answer, warmed(0.02), "BK01") == "answer 0"
    assert bank.calls == 1


async def test_a_hung_attempt_is_sent_again_and_the_hedge_answers() -> None:
    bank = Institution([None, 0.01])
    before = STOP_HEDGES.labels("BK01", "hedge")._value.get()
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await hedged(bank.answer, warmed(0.02), "BK01") == "answer 1"
    assert loop.time() - started < 0.5  # not the attempt's timeout
    assert bank.calls == 2
    assert STOP_HEDGES.labels("BK01", "hedge")._value.get() == before + 1


async def test_a_first_request_that_fails_leaves_the_hedge_to_answer() -> None:
    bank = Institution([0.05, 0.08], fail_first=True)
    assert await hedged(bank.answer, warmed(0.02), "BK01") == "answer 1"


async def test_when_both_fail_the_attempt_fails() -> None:
    async def fails() -> str:
        await asyncio.sleep(0.05)
        raise InstitutionTimeout("no answer")

    with pytest.raises(InstitutionTimeout):
        await hedged(fails, warmed(0.02), "BK01")


async def test_an_attempt_cancelled_while_its_requests_are_under_way_leaves_none_behind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its caller gives up (a timeout of its own) before the hedge's delay and after it: both
    requests are cancelled with the attempt, none fails later unseen ("never retrieved")."""
    for hedge_sent in (False, True):
        cancelled = 0

        async def hangs() -> str:
            nonlocal cancelled
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled += 1
                raise
            return "never"

        attempt = asyncio.ensure_future(hedged(hangs, warmed(0.02), "BK01"))
        await asyncio.sleep(0.1 if hedge_sent else 0.005)
        attempt.cancel()
        with pytest.raises(asyncio.CancelledError):
            await attempt
        assert cancelled == (2 if hedge_sent else 1)
    assert "never retrieved" not in caplog.text


def test_the_delay_is_the_recent_95th_percentile_and_never_near_the_timeout() -> None:
    delay = HedgeDelay(timeout_s=1.0)
    for i in range(100):
        delay.record(0.001 * (i + 1))  # 1 ms .. 100 ms
    assert delay.delay() == pytest.approx(0.096)
    slow = warmed(latency_s=0.9, timeout_s=1.0)
    assert slow.delay() is None  # a hedge then could not answer before the timeout
