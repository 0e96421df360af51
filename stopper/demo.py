"""`stopper demo`: the whole race on the embedded default (SQLite file, in-process bus).

The simulated banks and payment institutions run as an HTTP server on loopback, and Stopper's
API as another, so stop requests and signed callbacks cross real HTTP. Realistic fraud reports
(with reposts and a few broken ones mixed in) are posted to intake the way a police system
would; a live line shows the holds move; at the end a summary says what was stopped, how fast,
and that nothing was stopped twice.

The exit code says whether the race went as it should (`problems`): 1, with each reason on
stderr, when an accepted report has no case, a hold is left unsettled, a hold failed that the
profile does not make fail (`profile_makes_fail`), anything was stopped or returned twice, or a
lapse was silent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import tempfile
import time
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import httpx

from stopper.adapters.clock import ScaledClock
from stopper.api.app import create_app
from stopper.config import (
    ApiSettings,
    DatabaseSettings,
    DeadlineSettings,
    Environment,
    InstitutionsSettings,
    KafkaSettings,
    Role,
    Settings,
)
from stopper.demo_stats import deadline_counts, holds_by_adapter, race_latencies
from stopper.demo_summary import DEADLINE_HOURS, DemoRun, money, print_table, summarize
from stopper.domain.cases import case_id_for
from stopper.domain.holds import HoldEvent, HoldState, states_allowing
from stopper.registry import Institution, load_registry
from stopper.runtime import build_runtime
from stopper.serving import free_port, serving
from stopper.simulation.institutions import Simulation
from stopper.simulation.profiles import Behaviour, profile
from stopper.simulation.reports import ReportFactory
from stopper.simulation.server import create_simulation_app

# A hold is settled once its institution has answered (or Stopper gave up on it) and no return
# is on its way: unsettled are the states Stopper may still give up from (a stop request owed,
# sent, or accepted and not yet confirmed) and those a return's confirmation leaves. With an
# accelerated clock a stop may lapse, or be frozen, before the last report's holds settle.
UNSETTLED = states_allowing(HoldEvent.GAVE_UP, HoldEvent.RETURN_CONFIRMED)

# A profile makes a hold fail where its faults can use up the hold's retries: an outage that
# outlasts the retry deadline, or timeouts, 5xx and unreadable answers so frequent that every
# attempt meeting one has a chance of at least one in a million (chaos: about 0.38 ** 8 = 5e-4
# a hold, more once the breaker opens; realistic: about 0.035 ** 8 = 2e-12). Any other failed
# hold is the race going wrong.
LIKELY_ENOUGH = 1e-6


def profile_makes_fail(behaviour: Behaviour, institution: Institution) -> bool:
    """Whether `behaviour` can make holds at `institution` fail, under its retry policy."""
    retry = institution.retry
    if behaviour.outage is not None:
        down_from, down_until = behaviour.outage
        if down_until - down_from >= retry.deadline_s:
            return True
    # A request left hanging is a timeout only if it hangs longer than an attempt may wait.
    hangs = behaviour.timeout_rate if behaviour.hang_s * 1000 > institution.timeout_ms else 0.0
    usable = (1 - hangs) * (1 - behaviour.error_rate) * (1 - behaviour.malformed_rate)
    return (1 - usable) ** retry.max_attempts >= LIKELY_ENOUGH


def _bad_reports(good: dict[str, Any]) -> list[bytes]:
    """What a hurried or broken intake system sends now and then."""
    negative = json.loads(json.dumps(good))
    negative["report_id"] += "-neg"
    negative["transfers"][0]["amount"] = "-500.00"
    unknown = json.loads(json.dumps(good))
    unknown["report_id"] += "-unk"
    unknown["transfers"][0]["receiving_account"]["institution_code"] = "ZZ99"
    return [
        b'{"report_id": "truncated',
        json.dumps(negative).encode(),
        json.dumps(unknown).encode(),
    ]


async def run_demo(
    reports: int,
    db_path: Path,
    *,
    profile_name: str,
    progress: bool,
    max_wait_s: float,
    clock_speed: float = 1.0,
    institutions_url: str | None = None,
) -> DemoRun:
    """`institutions_url`: where stop requests go instead of the simulated institutions (which
    then make nothing fail: every failed hold counts against the run)."""
    registry = load_registry()
    stopper_port = free_port()
    # The demo is a world of its own: nothing in the environment points it at another database,
    # bus or registry, makes it production, or asks its own calls for keys.
    base = Settings(
        environment=Environment.DEVELOPMENT,
        role=Role.ALL,
        registry_path=None,
        database=DatabaseSettings(url=None, embedded_path=db_path, migrate_on_start=True),
        kafka=KafkaSettings(bootstrap=None),
        api=ApiSettings(require_keys=False),
        # Look at the deadlines every ten business minutes, however fast business time runs.
        deadlines=DeadlineSettings(
            sweep_interval_ms=max(10, min(1000, int(600_000 / clock_speed)))
        ),
    )
    behaviours = profile(profile_name, registry)
    simulation = Simulation(
        registry,
        behaviours,
        secret_for=lambda ref: base.institutions.secret_for(ref, base.environment),
        stopper_url=f"http://127.0.0.1:{stopper_port}",
    )
    run = DemoRun()
    async with serving(create_simulation_app(simulation)) as sim_url:
        settings = base.model_copy(
            update={"institutions": InstitutionsSettings(base_url=institutions_url or sim_url)}
        )
        deadline_clock = ScaledClock(clock_speed) if clock_speed > 1 else None
        runtime = build_runtime(settings, deadline_clock=deadline_clock)
        async with (
            serving(create_app(runtime), port=stopper_port) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as client,
        ):
            started = time.monotonic()
            factory = ReportFactory(registry, seed=2026)
            now = datetime.now(UTC)
            documents = [
                factory.report(now - timedelta(seconds=reports - i)) for i in range(reports)
            ]
            bodies = [json.dumps(d).encode() for d in documents]
            # Intake systems retry: every tenth report is posted twice.
            bodies += [bodies[i] for i in range(0, reports, 10)]
            bodies += _bad_reports(documents[0])
            for body in bodies:
                answer = await client.post(
                    "/v1/reports", content=body, headers={"content-type": "application/json"}
                )
                run.posted += 1
                run.answers[answer.status_code] += 1
                if answer.status_code in (200, 202):
                    run.accepted.add(answer.json()["case_id"])
                if answer.status_code >= 400:
                    run.refusals[answer.json()["detail"]] += 1
                if progress and run.posted % 20 == 0:
                    await _show_progress(runtime.store, run.posted, len(bodies), started)
            while time.monotonic() - started < max_wait_s:
                overview = await runtime.store.overview()
                if progress:
                    await _show_progress(runtime.store, run.posted, len(bodies), started)
                if overview.cases >= len(run.accepted) and _settled(overview.holds_by_state):
                    break
                await asyncio.sleep(0.5)
            if progress:
                sys.stderr.write("\n")
            if deadline_clock is not None:
                await _run_deadlines(client, runtime, run, deadline_clock, progress)
            elapsed = time.monotonic() - started
            overview = await runtime.store.overview()
            latencies = await race_latencies(runtime.store.engine)
            trips = sum(runtime.dispatcher.gateway.breaker(code).trips for code in registry)
            sample = (await client.get(f"/v1/cases/{_sample_case(documents)}")).json()
            warnings, lapses, silent = await deadline_counts(
                runtime.store.engine, settings.kafka.hold_events_topic
            )
            by_adapter = await holds_by_adapter(runtime.store.engine, registry)
            failed = overview.holds_by_state.get(HoldState.FAILED.value, 0)
            for listed in await runtime.store.list_holds(states=["failed"], limit=failed or 1):
                code = listed.hold.institution_code
                by_profile = institutions_url is None and profile_makes_fail(
                    behaviours[code], registry[code]
                )
                (run.failed_by_profile if by_profile else run.failed_otherwise)[code] += 1
                run.failure_reasons.setdefault(code, listed.state_reason or "no reason recorded")
        stats = simulation.stats()["totals"]
        simulation.close_requests()
        run.summary = summarize(
            len(run.accepted), overview, latencies, trips, stats, elapsed, sample
        )
        run.summary |= {
            "clock_speed": clock_speed,
            "warnings_sent": warnings,
            "lapses": lapses,
            "silent_lapses": silent,
            "reapplied": run.reapplied,
            "freezes_ordered": run.freezes_ordered,
            "returns_ordered": run.returns_ordered,
            "amount_returned": money(overview.amount_returned_by_currency),
            "double_returns": stats["double_returns"],
            "profile": profile_name,
            "holds_failed_by_profile": run.failed_by_profile.total(),
            "holds_failed_otherwise": run.failed_otherwise.total(),
            "holds_by_adapter": {
                adapter: {
                    "institutions": sum(1 for i in registry.values() if i.adapter == adapter),
                    "holds": counts.holds,
                    "stopped": counts.stopped,
                    **(
                        {"messages": counts.messages, "holds_per_message": counts.holds_per_message}
                        if counts.messages is not None
                        else {}
                    ),
                }
                for adapter, counts in by_adapter.items()
            },
        }
        run.summary["problems"] = problems(run)
    return run


def problems(run: DemoRun) -> list[str]:
    """What went wrong in the race, one line each; none when it went as it should."""
    s = run.summary
    found = []
    missing = s["reports_accepted"] - s["cases_opened"]
    if missing > 0:
        found.append(f"{missing} accepted reports have no case")
    unsettled = {
        state: count
        for state, count in s["holds_by_state"].items()
        if count and HoldState(state) in UNSETTLED
    }
    if unsettled:
        states = ", ".join(f"{state}: {count}" for state, count in sorted(unsettled.items()))
        found.append(
            f"{sum(unsettled.values())} holds left unsettled when the run ended ({states})"
        )
    if run.failed_otherwise:
        counts = run.failed_otherwise.most_common()
        where = ", ".join(f"{code} {count}" for code, count in counts[:5])
        where += ", ..." if len(counts) > 5 else ""
        first = counts[0][0]
        found.append(
            f"{run.failed_otherwise.total()} holds failed that the {s['profile']} profile does "
            f"not make fail ({where}); {first}: {run.failure_reasons[first]}"
        )
    for key, what in (
        ("double_stops", "stops executed twice"),
        ("double_returns", "returns paid twice"),
        ("silent_lapses", "lapses were silent (their warnings had not gone out ahead)"),
    ):
        if s[key]:
            found.append(f"{s[key]} {what}")
    return found


RETURN_AFTER_HOURS = 24


async def _order_and_approve_return(client: httpx.AsyncClient, case_id: str) -> int:
    """Four eyes: officer-7 orders the return, a supervisor approves it (keys are not required
    in the demo, so each names themselves with X-Operator). How many holds went back."""
    ordered = await client.post(
        f"/v1/cases/{case_id}/returns",
        json={"legal_document_ref": f"RET-{case_id[:8]}", "requested_by": "officer-7"},
        headers={"x-operator": "officer-7"},
    )
    if ordered.status_code != 202:
        return 0
    approved = await client.post(
        f"/v1/return-orders/{ordered.json()['order_id']}/approve",
        json={"approved_by": "supervisor-2"},
        headers={"x-operator": "supervisor-2"},
    )
    return len(approved.json()["returns"]) if approved.status_code == 202 else 0


async def _run_deadlines(
    client: httpx.AsyncClient, runtime: Any, run: DemoRun, clock: ScaledClock, progress: bool
) -> None:
    """Let 72 business hours pass. Through the API, an officer orders the formal freeze of the
    stops of one case in ten, and a day later the return of what they froze to the victims (one
    officer orders it, a second approves it); an
    operator re-applies the lapsed first-level stops of another one in ten; every other stop
    lapses."""
    start = clock.now()
    cases = sorted(run.accepted)
    for case_id in cases[5::10]:
        case = (await client.get(f"/v1/cases/{case_id}")).json()
        for hold in case["holds"]:
            if hold["state"] == "stopped":
                answer = await client.post(
                    f"/v1/holds/{hold['hold_id']}/freeze",
                    json={"legal_document_ref": f"FRZ-{case_id[:8]}", "requested_by": "officer-7"},
                )
                run.freezes_ordered += answer.status_code == 202
    watched = cases[::10]
    returns_due = set(cases[5::10])
    while clock.now() - start < timedelta(hours=DEADLINE_HOURS):
        if returns_due and clock.now() - start >= timedelta(hours=RETURN_AFTER_HOURS):
            for case_id in sorted(returns_due):
                run.returns_ordered += await _order_and_approve_return(client, case_id)
            returns_due.clear()
        for case_id in watched:
            case = (await client.get(f"/v1/cases/{case_id}")).json()
            for hold in case["holds"]:
                if hold["state"] == "expired" and hold["layer"] == 1:
                    answer = await client.post(
                        f"/v1/holds/{hold['hold_id']}/reapply",
                        json={"requested_by": "demo-operator", "reason": "victim still at risk"},
                    )
                    run.reapplied += answer.status_code == 202
        if progress:
            hours = (clock.now() - start).total_seconds() / 3600
            overview = await runtime.store.overview()
            states = " ".join(f"{k}:{v}" for k, v in sorted(overview.holds_by_state.items()))
            sys.stderr.write(f"\r\033[K  +{hours:5.1f} h  holds {states}")
            sys.stderr.flush()
        await asyncio.sleep(0.5)
    if progress:
        sys.stderr.write("\n")


def _sample_case(documents: list[dict[str, Any]]) -> str:
    busiest = max(documents, key=lambda d: len(d["transfers"]))
    return str(case_id_for(busiest["report_id"]))


def _settled(by_state: dict[str, int]) -> bool:
    return not any(HoldState(state) in UNSETTLED for state, count in by_state.items() if count)


async def _show_progress(store: Any, posted: int, total: int, started: float) -> None:
    overview = await store.overview()
    states = " ".join(f"{k}:{v}" for k, v in sorted(overview.holds_by_state.items()))
    stopped = sum(overview.amount_stopped_by_currency.values()) / 100
    sys.stderr.write(
        f"\r\033[K{time.monotonic() - started:5.1f}s  posted {posted}/{total}  "
        f"cases {overview.cases}  holds {states}  stopped {stopped:,.2f}"
    )
    sys.stderr.flush()


_T = TypeVar("_T")


def _interruptible(work: Coroutine[Any, Any, _T]) -> _T:
    """Run `work`; Ctrl-C cancels it and is a KeyboardInterrupt, whatever it broke first.

    The demo's servers take SIGINT over while they run and shut down on it, so what fails next
    is often a request to a server that is gone; they hand the signal on as they stop, to here.
    What is logged from then on is the shutdown the person asked for: not shown."""
    interrupted = False
    main: asyncio.Task[_T] | None = None

    async def run() -> _T:
        nonlocal main
        main = asyncio.current_task()
        return await work

    def on_interrupt(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupted
        interrupted = True
        logging.disable(logging.CRITICAL)
        if main is None or main.done():
            raise KeyboardInterrupt
        main.get_loop().call_soon_threadsafe(main.cancel)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        result = asyncio.run(run())
    except (Exception, asyncio.CancelledError):
        if interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted:  # too late to cancel anything, but the run was cut short all the same
        raise KeyboardInterrupt
    return result


def main(
    reports: int,
    db: Path | None,
    as_json: bool,
    profile_name: str = "realistic",
    max_wait_s: float = 180.0,
    clock_speed: float = 1.0,
    institutions_url: str | None = None,
) -> int:
    """Run the demo and print its summary; 0 if the race went as it should, else 1 with each
    problem on stderr."""
    with tempfile.TemporaryDirectory(prefix="stopper-demo-") as tmp:
        db_path = db or Path(tmp) / "stopper-demo.db"
        run = _interruptible(
            run_demo(
                reports,
                db_path,
                profile_name=profile_name,
                progress=not as_json and sys.stderr.isatty(),
                max_wait_s=max_wait_s,
                clock_speed=clock_speed,
                institutions_url=institutions_url,
            )
        )
    if as_json:
        print(
            json.dumps(
                {
                    "posted": run.posted,
                    "http_answers": {str(k): v for k, v in run.answers.items()},
                    "refused": dict(run.refusals),
                    **run.summary,
                },
                indent=2,
            )
        )
    else:
        print_table(run)
    sys.stdout.flush()  # the summary first, then what went wrong
    for problem in run.summary["problems"]:
        print(f"stopper demo: {problem}", file=sys.stderr)
    return 1 if run.summary["problems"] else 0
