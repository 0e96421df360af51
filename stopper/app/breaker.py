"""A circuit breaker per institution, so one that is down is not hammered.

closed --(failure_threshold consecutive failures)--> open --(cooldown)--> half_open
half_open lets one probe through: success closes, failure opens again for another cooldown.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

from stopper.registry import BreakerPolicy


class BreakerState(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    def __init__(
        self, policy: BreakerPolicy, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._policy = policy
        self._monotonic = monotonic
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self.trips = 0

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._monotonic() - self._opened_at >= self._policy.cooldown_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def retry_after_s(self) -> float:
        """Seconds until the breaker lets a probe through (0 if it does now)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._policy.cooldown_s - (self._monotonic() - self._opened_at))

    def allow(self) -> bool:
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._probing:
            # The probe failed: stay open for another cooldown.
            self._opened_at = self._monotonic()
            self._probing = False
        elif self._opened_at is None and self._failures >= self._policy.failure_threshold:
            self._opened_at = self._monotonic()
            self.trips += 1
