"""Jurisdiction profiles: the law a deployment works under, chosen by name in settings
(`STOPPER_JURISDICTION`) instead of edited into code.

A profile says when a confirmed stop lapses (a `StopExpiry`: a function of the confirmation
time, because some laws count business days, not hours), how often a stop may be re-applied,
how long a formal freeze holds, and the lead times of the warnings ahead of each. `stopper.config`
turns the chosen profile, with any explicit `STOPPER_DISPATCH_STOP_LAPSE_HOURS` /
`STOPPER_DEADLINES_*` setting laid over it, into the `DispatchPolicy` and `DeadlinePolicy` the
use cases follow.

The profiles:
- ``cn`` (the default, the model Stopper was built on): an emergency stop-payment lasts 48 hours
  and may be re-applied at most twice; a formal freeze lasts six months and may be renewed.
- ``sg``: a police restriction order lasts 30 days and may be renewed up to five times; each
  renewal is a new order to the bank, so it is Stopper's re-application. A longer hold (a
  seizure) has no fixed term in law: Stopper reviews it every 180 days.
- ``uk``: a bank may hold a suspicious outgoing payment until the end of the fourth business day
  after the day it was stopped (England and Wales bank holidays, London time), once: there is no
  re-application. A court's account freezing order may last up to two years.
No profile limits how often a freeze is renewed: each renewal rests on a new legal document.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Protocol
from zoneinfo import ZoneInfo

import holidays


class StopExpiry(Protocol):
    """When a stop confirmed at `confirmed_at` lapses."""

    def expires_at(self, confirmed_at: datetime) -> datetime: ...


@dataclass(frozen=True, slots=True)
class FixedLapse:
    """A stop lapses a fixed time after it was confirmed, day or night, holiday or not."""

    duration: timedelta

    def expires_at(self, confirmed_at: datetime) -> datetime:
        return confirmed_at + self.duration

    def __str__(self) -> str:
        return f"{self.duration.total_seconds() / 3600:g} hours after confirmation"


@dataclass(frozen=True, slots=True)
class EndOfBusinessDay:
    """A stop lapses at the end (local midnight) of the `business_days`-th business day after
    the local day it was confirmed on. A business day is a weekday that is not a public holiday
    of `country` (and `subdivision`) in the `holidays` library's calendar."""

    business_days: int
    zone: str  # IANA name: business days begin and end at local midnight
    country: str  # ISO 3166 code, as `holidays` names its calendars
    subdivision: str | None = None

    def expires_at(self, confirmed_at: datetime) -> datetime:
        zone = ZoneInfo(self.zone)
        day = confirmed_at.astimezone(zone).date()
        counted = 0
        while counted < self.business_days:
            day += timedelta(days=1)
            if self.is_business_day(day):
                counted += 1
        return datetime.combine(day + timedelta(days=1), time(), tzinfo=zone).astimezone(UTC)

    def is_business_day(self, day: date) -> bool:
        return day.weekday() < 5 and day not in _calendar(self.country, self.subdivision)

    def __str__(self) -> str:
        return (
            f"the end of the {self.business_days}th business day after confirmation "
            f"({self.country} holidays, {self.zone})"
        )


@cache
def _calendar(country: str, subdivision: str | None) -> holidays.HolidayBase:
    # One calendar per process; it fills in each year the first time a date of it is asked.
    return holidays.country_holidays(country, subdiv=subdivision)


class Jurisdiction(enum.StrEnum):
    CN = "cn"
    SG = "sg"
    UK = "uk"


@dataclass(frozen=True, slots=True)
class JurisdictionProfile:
    jurisdiction: Jurisdiction
    stop_expiry: StopExpiry
    max_reapplications: int  # how often one hold's stop may be asked for again
    stop_warnings: tuple[timedelta, ...]  # lead times of lapse warnings, longest first
    freeze_validity: timedelta
    freeze_warnings: tuple[timedelta, ...]  # lead times of freeze-expiry warnings, longest first


def _hours(*hours: float) -> tuple[timedelta, ...]:
    return tuple(timedelta(hours=h) for h in sorted(hours, reverse=True))


PROFILES: dict[Jurisdiction, JurisdictionProfile] = {
    Jurisdiction.CN: JurisdictionProfile(
        Jurisdiction.CN,
        stop_expiry=FixedLapse(timedelta(hours=48)),
        max_reapplications=2,
        stop_warnings=_hours(12, 2),
        freeze_validity=timedelta(days=182),
        freeze_warnings=_hours(14 * 24, 3 * 24),
    ),
    Jurisdiction.SG: JurisdictionProfile(
        Jurisdiction.SG,
        stop_expiry=FixedLapse(timedelta(days=30)),
        max_reapplications=5,
        # A month-long order leaves time to warn days ahead; the last warning still a day out.
        stop_warnings=_hours(72, 24),
        freeze_validity=timedelta(days=180),
        freeze_warnings=_hours(14 * 24, 3 * 24),
    ),
    Jurisdiction.UK: JurisdictionProfile(
        Jurisdiction.UK,
        stop_expiry=EndOfBusinessDay(4, zone="Europe/London", country="GB", subdivision="ENG"),
        max_reapplications=0,
        stop_warnings=_hours(24, 2),
        freeze_validity=timedelta(days=730),
        freeze_warnings=_hours(30 * 24, 7 * 24),
    ),
}
