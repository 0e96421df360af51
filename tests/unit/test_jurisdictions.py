"""Jurisdiction profiles: each one's lapse, warnings and re-application limit, on clocks that run
days in milliseconds; the UK's business days around bank holidays; settings laid over profiles."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest

from stopper.adapters.clock import ScaledClock
from stopper.app.deadlines import DeadlineKeeper, ReapplyOutcome
from stopper.app.dispatch import Dispatcher
from stopper.app.gateway import InstitutionGateway
from stopper.app.jurisdictions import PROFILES, EndOfBusinessDay, FixedLapse, Jurisdiction
from stopper.app.ports import Clock
from stopper.config import DeadlineSettings, DispatchSettings, Settings
from stopper.domain.holds import HoldEvent, HoldState
from stopper.domain.messages import AnswerKind, InstitutionAnswer
from stopper.registry import load_registry
from tests.unit.fakes import FakeDispatchStore, FixedClock, ScriptedAdapter, requested_hold

UK = PROFILES[Jurisdiction.UK].stop_expiry
LONDON_MIDNIGHT_IN_SUMMER = 23  # BST: local midnight is 23:00 UTC


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("confirmed_at", "expires_at"),
    [
        # A Monday: Tuesday to Friday are the four business days; the stop holds to Friday's end.
        (utc(2026, 11, 16, 10), utc(2026, 11, 21)),
        # A Saturday: the days after it start on Monday.
        (utc(2026, 11, 21, 10), utc(2026, 11, 27)),
        # Before the late-summer bank holiday weekend (Monday 31 August 2026): Friday's stop holds
        # to the end of Friday 4 September, London summer time.
        (utc(2026, 8, 28, 14), utc(2026, 9, 4, LONDON_MIDNIGHT_IN_SUMMER)),
        # Christmas Eve 2026: Christmas, the weekend, Boxing Day observed on Monday 28, then New
        # Year's Day are not business days; the fourth is Monday 4 January 2027.
        (utc(2026, 12, 24, 15), utc(2027, 1, 5)),
        # 23:30 UTC on a Sunday in summer is already Monday in London: Monday is the day stopped.
        (utc(2026, 6, 14, 23, 30), utc(2026, 6, 19, LONDON_MIDNIGHT_IN_SUMMER)),
        # Good Friday and Easter Monday 2027 (26 and 29 March) fall inside the four days.
        (utc(2027, 3, 25, 9), utc(2027, 4, 2, LONDON_MIDNIGHT_IN_SUMMER)),
    ],
)
def test_a_uk_stop_holds_to_the_end_of_the_fourth_business_day(
    confirmed_at: datetime, expires_at: datetime
) -> None:
    assert UK.expires_at(confirmed_at) == expires_at


def test_uk_business_days_come_from_the_bank_holiday_calendar() -> None:
    assert isinstance(UK, EndOfBusinessDay)
    assert not UK.is_business_day(datetime(2026, 8, 31).date())  # late-summer bank holiday
    assert not UK.is_business_day(datetime(2026, 12, 28).date())  # Boxing Day, observed
    assert UK.is_business_day(datetime(2026, 12, 29).date())


def test_the_default_profile_is_china_with_the_former_defaults() -> None:
    settings = Settings()
    assert settings.jurisdiction is Jurisdiction.CN
    dispatch, deadlines = settings.dispatch_policy(), settings.deadline_policy()
    assert dispatch.stop_expiry == FixedLapse(timedelta(hours=48))
    assert deadlines.stop_warnings == (timedelta(hours=12), timedelta(hours=2))
    assert deadlines.freeze_validity == timedelta(days=182)
    assert deadlines.freeze_warnings == (timedelta(days=14), timedelta(days=3))
    assert deadlines.max_reapplications == 2
    # The sections' own builders, as tests use them, are China's too.
    assert DispatchSettings().policy() == dispatch and DeadlineSettings().policy() == deadlines


def test_settings_set_explicitly_override_the_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOPPER_JURISDICTION", "uk")
    monkeypatch.setenv("STOPPER_DISPATCH_STOP_LAPSE_HOURS", "72")
    monkeypatch.setenv("STOPPER_DEADLINES_WARN_BEFORE_HOURS", "[6, 30]")
    monkeypatch.setenv("STOPPER_DEADLINES_MAX_REAPPLICATIONS", "1")
    # Empty is unset, as deploy/stopper.env.example leaves them: the profile's value.
    monkeypatch.setenv("STOPPER_DEADLINES_FREEZE_VALIDITY_DAYS", "")
    monkeypatch.setenv("STOPPER_DEADLINES_FREEZE_WARN_BEFORE_HOURS", "")
    settings = Settings()
    deadlines = settings.deadline_policy()
    assert settings.dispatch_policy().stop_expiry == FixedLapse(timedelta(hours=72))
    assert deadlines.stop_warnings == (timedelta(hours=30), timedelta(hours=6))
    assert deadlines.max_reapplications == 1
    assert deadlines.freeze_validity == PROFILES[Jurisdiction.UK].freeze_validity
    assert deadlines.freeze_warnings == PROFILES[Jurisdiction.UK].freeze_warnings


def test_an_unknown_jurisdiction_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOPPER_JURISDICTION", "fr")
    with pytest.raises(ValueError, match="jurisdiction"):
        Settings()


def parts(
    jurisdiction: Jurisdiction, clock: Clock, deadline_clock: Clock
) -> tuple[Dispatcher, DeadlineKeeper, FakeDispatchStore]:
    profile = PROFILES[jurisdiction]
    store = FakeDispatchStore()
    registry = load_registry()
    adapter = ScriptedAdapter({"BK01": [InstitutionAnswer(AnswerKind.STOPPED, amount_held=5_000)]})
    rng = random.Random(1)
    dispatcher = Dispatcher(
        store,
        InstitutionGateway(adapter, registry, hedge=False, rng=rng),
        clock,
        DispatchSettings().policy(profile),
        rng,
        deadline_clock=deadline_clock,
    )
    keeper = DeadlineKeeper(
        store,
        registry,
        deadline_clock,
        DeadlineSettings().policy(profile),
        events_topic="events",
        stop_requests_topic="stops",
    )
    return dispatcher, keeper, store


# Thursday 27 August 2026, 16:00 in London: the UK stop spans the bank holiday weekend.
BEFORE_A_BANK_HOLIDAY = utc(2026, 8, 27, 15)
EXPECTED_LAPSE = {
    Jurisdiction.CN: BEFORE_A_BANK_HOLIDAY + timedelta(hours=48),
    Jurisdiction.SG: BEFORE_A_BANK_HOLIDAY + timedelta(days=30),
    # Friday 28, (Monday 31 is a holiday), Tuesday 1, Wednesday 2, Thursday 3 September.
    Jurisdiction.UK: utc(2026, 9, 3, LONDON_MIDNIGHT_IN_SUMMER),
}


@pytest.mark.parametrize("jurisdiction", list(Jurisdiction))
async def test_each_profile_warns_lapses_and_limits_reapplication_on_its_own_clock(
    jurisdiction: Jurisdiction,
) -> None:
    """Confirmed through the dispatcher, swept minute by simulated minute up to its lapse,
    re-applied until the profile refuses: weeks of business time in well under a second."""
    profile = PROFILES[jurisdiction]
    clock = FixedClock(BEFORE_A_BANK_HOLIDAY)
    dispatcher, keeper, store = parts(jurisdiction, clock, clock)
    record = requested_hold(at=clock.at)
    store.add(record)
    await dispatcher.attempt(record.hold.id, first=True)
    stored = store.holds[record.hold.id]
    assert stored.hold.state is HoldState.STOPPED
    expires_at = EXPECTED_LAPSE[jurisdiction]
    assert stored.stop_expires_at == expires_at

    warned_at: dict[str, datetime] = {}
    step = timedelta(minutes=10)
    while store.holds[record.hold.id].hold.state is HoldState.STOPPED:
        clock.at += step
        await keeper.sweep_once()
        for event in store.events:
            if event.payload["event"] == "stop_expiring":
                warned_at.setdefault(str(event.payload["warning"]), clock.at)
    lapsed_at = clock.at
    assert expires_at <= lapsed_at < expires_at + step
    # Each warning once, in order, within one sweep of its lead time; the lapse after them all.
    assert list(warned_at) == [
        f"{lead.total_seconds() / 3600:g}h" for lead in profile.stop_warnings
    ]
    for lead, at in zip(profile.stop_warnings, warned_at.values(), strict=True):
        assert expires_at - lead <= at < expires_at - lead + step
    assert [e.payload["event"] for e in store.events][-1] == "stop_lapsed"
    assert "had not gone out" not in store.transitions[-1].cause

    outcomes = []
    for _ in range(profile.max_reapplications + 1):
        outcomes.append(await keeper.reapply(record.hold.id, actor="operator:7", reason="renew"))
        again = store.holds[record.hold.id].hold
        if again.state is HoldState.REQUESTED:  # the bank confirms the new stop, which lapses
            again.apply(HoldEvent.REQUEST_SENT, cause="t", actor="t", at=clock.at)
            again.apply(HoldEvent.STOP_CONFIRMED, cause="t", actor="t", at=clock.at, amount=5_000)
            again.apply(HoldEvent.LAPSED, cause="t", actor="t", at=clock.at)
    assert outcomes == [ReapplyOutcome.REAPPLIED] * profile.max_reapplications + [
        ReapplyOutcome.NOT_ALLOWED
    ]


@pytest.mark.parametrize("jurisdiction", list(Jurisdiction))
async def test_each_profile_lapses_within_seconds_on_an_accelerated_clock(
    jurisdiction: Jurisdiction,
) -> None:
    """The demo's clock: business time a million times faster than the wall clock (a 30-day
    order in under three seconds), while timeouts stay real."""
    deadline_clock = ScaledClock(1_000_000)
    dispatcher, keeper, store = parts(jurisdiction, FixedClock(), deadline_clock)
    record = requested_hold()
    store.add(record)
    lapse = PROFILES[jurisdiction].stop_expiry.expires_at
    before = deadline_clock.now()
    await dispatcher.attempt(record.hold.id, first=True)
    stored = store.holds[record.hold.id]
    # Business time runs on while the attempt is made (a busy machine: hours of it).
    assert stored.stop_expires_at is not None
    assert lapse(before) <= stored.stop_expires_at <= lapse(deadline_clock.now())
    loop = asyncio.get_running_loop()
    started = loop.time()
    while store.holds[record.hold.id].hold.state is HoldState.STOPPED:
        assert loop.time() - started < 10, "the stop never lapsed"
        await keeper.sweep_once()
        await asyncio.sleep(0.01)
    assert store.holds[record.hold.id].hold.state is HoldState.EXPIRED
    kinds = [e.payload["event"] for e in store.events]
    assert kinds == ["stop_expiring"] * len(PROFILES[jurisdiction].stop_warnings) + ["stop_lapsed"]
