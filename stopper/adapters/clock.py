"""Clocks: the system clock, and a manual one for tests and accelerated runs."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ScaledClock:
    """Business time running `speed` times faster than the wall clock, from now on: an
    accelerated run shows a 48-hour deadline in seconds."""

    def __init__(self, speed: float) -> None:
        self._speed = speed
        self._wall_start = datetime.now(UTC)
        self._start = time.monotonic()

    def now(self) -> datetime:
        elapsed = time.monotonic() - self._start
        return self._wall_start + timedelta(seconds=elapsed * self._speed)


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta
