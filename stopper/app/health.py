"""How each institution is doing, as this instance sees it: recent attempts, failures and
latency, and its breaker. Workers publish a snapshot to the store every few seconds, so the
API, the console and `stopper institutions status` see every instance's view."""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_S = 300.0  # the last five minutes
FRESH_S = 60  # a snapshot older than this is an instance that stopped reporting
_MAX_SAMPLES = 1000  # per institution


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    institution_code: str
    breaker_state: int  # 0 closed, 1 half-open, 2 open (BreakerState)
    attempts: int  # within the window
    failures: int  # timeouts, errors, unreadable answers, breaker refusals
    latency_p95_ms: float | None


class InstitutionHealth:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._samples: dict[str, deque[tuple[float, bool, float]]] = {}

    def record(self, code: str, *, failed: bool, latency_s: float) -> None:
        samples = self._samples.setdefault(code, deque(maxlen=_MAX_SAMPLES))
        samples.append((self._clock(), failed, latency_s))

    def snapshot(self, code: str, breaker_state: int) -> HealthSnapshot:
        cutoff = self._clock() - WINDOW_S
        recent = [s for s in self._samples.get(code, ()) if s[0] >= cutoff]
        latencies = sorted(s[2] * 1000 for s in recent if not s[1])
        p95: float | None = None
        if len(latencies) >= 2:
            p95 = round(statistics.quantiles(latencies, n=20, method="inclusive")[18], 1)
        elif latencies:
            p95 = round(latencies[0], 1)
        return HealthSnapshot(
            institution_code=code,
            breaker_state=breaker_state,
            attempts=len(recent),
            failures=sum(1 for s in recent if s[1]),
            latency_p95_ms=p95,
        )
