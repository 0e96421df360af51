"""The policies the use cases follow, as small values decided once at start-up.

`stopper.config` builds them from the validated settings and the jurisdiction profile they name
(`Settings.dispatch_policy()`, `Settings.deadline_policy()`; `stopper.app.jurisdictions`); the
use cases never see a settings class, and a test states the policy it runs under in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from stopper.app.jurisdictions import StopExpiry


@dataclass(frozen=True, slots=True)
class DispatchPolicy:
    """How stop requests are made and followed up."""

    stop_expiry: StopExpiry  # when an emergency stop confirmed at a given time lapses
    first_dispatch_grace: timedelta  # a hold requested this long ago is the sweeper's to send
    inquiry_max_interval: timedelta  # the longest wait between two status inquiries
    max_queued_per_institution: int  # attempts under way to one institution before intake waits
    max_queued: int  # attempts under way in the process before intake waits for room
    trail_max_depth: int  # layers of the money trail followed, the first included


@dataclass(frozen=True, slots=True)
class DeadlinePolicy:
    """When lapses are warned of, how often a stop may be re-applied, how long a formal
    freeze holds."""

    stop_warnings: tuple[timedelta, ...]  # lead times of lapse warnings, longest first
    freeze_warnings: tuple[timedelta, ...]  # lead times of freeze-expiry warnings, longest first
    freeze_validity: timedelta
    max_reapplications: int  # how often one hold's stop may be asked for again


@dataclass(frozen=True, slots=True)
class ReverifyPolicy:
    """How a re-verification job asks (`stopper.app.reverify`): holds per page, at most how many
    holds per second (a pause after each page), and how long a worker's lease on the job lasts
    unrenewed."""

    page: int = 250
    holds_per_s: float = 1000.0
    lease: timedelta = timedelta(seconds=60)
