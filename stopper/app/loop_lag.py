"""How late this process's event loop runs: whether a failed call was the institution's doing.

A call to an institution is bounded by its timeout, measured on the loop's clock. When the
process itself does not run for a while (a CPU it shares with more work than it can take, a
long stretch of work between two awaits), every call in flight passes that bound together,
however fast the institution answered: their timeouts say nothing about the institution, and
five of them in a row would open its breaker and fail the holds behind it. `LoopLag` measures the
stalls: a task asks to wake every `interval_s` and records how late it woke; `stalled_since`
answers the longest stall since a call started, including one still under way (the task has not
woken yet). The gateway does not count a failed call against the breaker when the loop stalled
for a good part of the institution's timeout during it (see `InstitutionGateway`).
"""

from __future__ import annotations

import asyncio
from collections import deque

from stopper import metrics

# Samples kept: a call lasts at most a few timeouts (seconds), so a minute is plenty.
_KEPT_S = 60.0


class LoopLag:
    def __init__(self, interval_s: float = 0.05) -> None:
        self._interval_s = interval_s
        self._samples: deque[tuple[float, float]] = deque()  # (woke at, how late), loop clock
        self._due: float | None = None  # when the task should wake next

    async def run(self, stopping: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stopping.is_set():
            self._due = loop.time() + self._interval_s
            await asyncio.sleep(self._interval_s)
            now = loop.time()
            self.record(now, max(0.0, now - self._due))

    def record(self, at: float, late_s: float) -> None:
        """A wake-up at `at` (the loop's clock), `late_s` after it was due."""
        if late_s > 0:
            self._samples.append((at, late_s))
        metrics.EVENT_LOOP_LAG.observe(late_s)
        while self._samples and self._samples[0][0] < at - _KEPT_S:
            self._samples.popleft()

    def stalled_since(self, started: float) -> float:
        """The longest the loop was late since `started` (the loop's clock), in seconds."""
        now = asyncio.get_running_loop().time()
        ongoing = 0.0 if self._due is None else max(0.0, now - self._due)
        # A stall that ended after `started` began at `woke - late`: it overlapped the call.
        recorded = (late for woke, late in self._samples if woke >= started)
        return max(ongoing, max(recorded, default=0.0))
