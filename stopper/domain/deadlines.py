"""The deadline of an emergency stop: warn ahead, and record the lapse, never silently.

Rules:
- a confirmed stop lapses when the jurisdiction's law says (48 hours after the institution
  confirmed it in China; see `stopper.app.jurisdictions`) unless it became a formal freeze first;
- before that, one warning per configured lead time (in China 12 h and 2 h before), each once
  and in order;
- a stop found past its deadline lapses; any warning still owed is sent with it, and the lapse
  then counts as *silent* (nobody was warned ahead), which operators must never see;
- an expired or expiring stop may be re-applied, at most the jurisdiction's limit of times in
  all (twice in China, never in the United Kingdom).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class DeadlineDue:
    warnings: tuple[timedelta, ...]  # lead times whose warnings are owed now, longest first
    lapse: bool
    silent: bool  # the lapse comes with warnings that were not sent ahead of it


def deadline_due(
    *, expires_at: datetime, warnings_sent: int, leads: Sequence[timedelta], now: datetime
) -> DeadlineDue:
    ordered = sorted(leads, reverse=True)
    owed = tuple(
        lead for i, lead in enumerate(ordered) if i >= warnings_sent and (now >= expires_at - lead)
    )
    lapse = now >= expires_at
    return DeadlineDue(warnings=owed, lapse=lapse, silent=lapse and bool(owed))


def may_reapply(reapplications: int, limit: int) -> bool:
    return reapplications < limit
