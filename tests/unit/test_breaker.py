from __future__ import annotations

from stopper.app.breaker import BreakerState, CircuitBreaker
from stopper.registry import BreakerPolicy


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def state(breaker: CircuitBreaker) -> BreakerState:
    return breaker.state  # a call, so the type checker does not pin the state between asserts


def test_opens_after_consecutive_failures_then_probes_once() -> None:
    ticks = Ticks()
    breaker = CircuitBreaker(BreakerPolicy(failure_threshold=3, cooldown_s=10), ticks)
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    breaker.record_success()  # a success resets the count
    for _ in range(3):
        assert breaker.allow()
        breaker.record_failure()
    assert state(breaker) is BreakerState.OPEN and not breaker.allow()
    assert breaker.trips == 1 and breaker.retry_after_s() == 10
    ticks.now = 10
    assert state(breaker) is BreakerState.HALF_OPEN
    assert breaker.allow() and not breaker.allow()  # one probe only
    breaker.record_failure()
    assert state(breaker) is BreakerState.OPEN and breaker.trips == 1
    ticks.now = 20
    assert breaker.allow()
    breaker.record_success()
    assert state(breaker) is BreakerState.CLOSED and breaker.allow()
