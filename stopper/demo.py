"""`stopper demo`: the whole race on the embedded default (SQLite file, in-process bus).

The simulated banks and payment institutions run as an HTTP server on loopback, and Stopper's
API as another, so stop requests and signed callbacks cross real HTTP. Realistic fraud reports
(with reposts and a few broken ones mixed in) are posted to intake the way a police system
would; a live line shows the holds move; at the end a summary says what was stopped, how fast,
and that nothing was stopped twice.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from stopper.adapters.clock import ScaledClock
from stopper.api.app import create_app
from stopper.config import (
    DatabaseSettings,
    DeadlineSettings,
    InstitutionsSettings,
    KafkaSettings,
    Settings,
)
from stopper.domain.cases import case_id_for
from stopper.domain.holds import HoldState
from stopper.registry import load_registry
from stopper.runtime import build_runtime
from stopper.serving import free_port, serving
from stopper.simulation.institutions import Simulation, create_simulation_app, profile
from stopper.simulation.reports import ReportFactory

# A hold is settled once its institution has answered (or Stopper gave up on it) and no return
# is on its way; with an accelerated clock a stop may lapse, or be frozen, before the last
# report's holds settle.
UNSETTLED = {HoldState.REQUESTED, HoldState.SENT, HoldState.RETURNING}


@dataclass
class DemoRun:
    posted: int = 0
    answers: Counter[int] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    accepted: set[str] = field(default_factory=set)  # case ids intake answered for
    reapplied: int = 0
    freezes_ordered: int = 0
    returns_ordered: int = 0
    summary: dict[str, Any] = field(default_factory=dict)


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
) -> DemoRun:
    registry = load_registry()
    stopper_port = free_port()
    base = Settings(
        database=DatabaseSettings(url=None, embedded_path=db_path),
        kafka=KafkaSettings(bootstrap=None),
        # Look at the deadlines every ten business minutes, however fast business time runs.
        deadlines=DeadlineSettings(
            sweep_interval_ms=max(10, min(1000, int(600_000 / clock_speed)))
        ),
    )
    simulation = Simulation(
        registry,
        profile(profile_name, registry),
        secret_for=lambda ref: base.institutions.secret_for(ref, base.environment),
        stopper_url=f"http://127.0.0.1:{stopper_port}",
    )
    run = DemoRun()
    async with serving(create_simulation_app(simulation)) as sim_url:
        settings = base.model_copy(update={"institutions": InstitutionsSettings(base_url=sim_url)})
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
            latencies = await runtime.store.race_latencies()
            trips = sum(runtime.dispatcher.breaker(code).trips for code in registry)
            sample = (await client.get(f"/v1/cases/{_sample_case(documents)}")).json()
            warnings, lapses, silent = await runtime.store.deadline_counts(
                settings.kafka.hold_events_topic
            )
        stats = simulation.stats()["totals"]
        simulation.close_requests()
        run.summary = _summary(
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
            "amount_returned": _money(overview.amount_returned_by_currency),
            "double_returns": stats["double_returns"],
        }
    return run


DEADLINE_HOURS = 72
RETURN_AFTER_HOURS = 24
SAMPLE_ROWS = 12


async def _run_deadlines(
    client: httpx.AsyncClient, runtime: Any, run: DemoRun, clock: ScaledClock, progress: bool
) -> None:
    """Let 72 business hours pass. Through the API, an officer orders the formal freeze of the
    stops of one case in ten, and a day later the return of what they froze to the victims; an
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
                answer = await client.post(
                    f"/v1/cases/{case_id}/returns",
                    json={"legal_document_ref": f"RET-{case_id[:8]}", "requested_by": "officer-7"},
                )
                if answer.status_code == 202:
                    run.returns_ordered += len(answer.json()["returns"])
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


def _percentiles(values: tuple[float, ...]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    if len(values) == 1:
        return {"p50": values[0], "p95": values[0], "p99": values[0]}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": round(cuts[49], 1), "p95": round(cuts[94], 1), "p99": round(cuts[98], 1)}


def _money(by_currency: dict[str, int]) -> dict[str, str]:
    return {currency: f"{minor / 100:.2f}" for currency, minor in sorted(by_currency.items())}


def _summary(
    reports: int,
    overview: Any,
    latencies: Any,
    trips: int,
    sim: dict[str, int],
    elapsed: float,
    sample: dict[str, Any],
) -> dict[str, Any]:
    holds = sum(overview.holds_by_state.values())
    sent = sum(v for k, v in overview.holds_by_state.items() if k != "requested")
    return {
        "reports_accepted": reports,
        "cases_opened": overview.cases,
        "holds": holds,
        "holds_by_state": dict(sorted(overview.holds_by_state.items())),
        "holds_by_layer": {
            str(layer): {"holds": count, "amount_stopped": f"{stopped / 100:.2f}"}
            for layer, (count, stopped) in overview.holds_by_layer.items()
        },
        "amount_reported": _money(overview.amount_asked_by_currency),
        "amount_stopped": _money(overview.amount_stopped_by_currency),
        "latency_ms": _percentiles(latencies.stop_confirmed_ms),
        "report_to_request_ms": _percentiles(latencies.stop_requested_ms),
        "report_to_case_ms": _percentiles(latencies.case_opened_ms),
        "attempts": overview.attempts,
        "retries": max(0, overview.attempts - sent),
        "breaker_trips": trips,
        "institution_requests": sim["requests"],
        "stops_executed": sim["stops_executed"],
        "callbacks": sim["callbacks_sent"],
        "double_stops": sim["double_stops"],
        "elapsed_s": round(elapsed, 1),
        "sample_case": sample,
    }


def print_table(run: DemoRun) -> None:
    s = run.summary
    print(f"\nStopper demo: {run.posted} reports posted, {s['elapsed_s']} s")
    print("  HTTP answers        " + ", ".join(f"{k}: {v}" for k, v in sorted(run.answers.items())))
    for reason, count in run.refusals.items():
        print(f"  refused ({count})         {reason}")
    print(f"  cases opened        {s['cases_opened']} of {s['reports_accepted']} accepted")
    print(f"  holds               {s['holds']}")
    for state, count in s["holds_by_state"].items():
        print(f"    {state:<17} {count:>6}")
    print("  money trail         layer  holds  amount stopped")
    for layer, row in s["holds_by_layer"].items():
        print(f"                      {layer:>5}  {row['holds']:>5}  {row['amount_stopped']:>14}")
    for currency, reported in s["amount_reported"].items():
        stopped = s["amount_stopped"].get(currency, "0.00")
        share = float(stopped) / float(reported) * 100 if float(reported) else 0.0
        print(f"  amount reported     {reported:>14} {currency}")
        print(f"  amount stopped      {stopped:>14} {currency}  ({share:.1f} %)")
    for label, key in (
        ("report -> case open", "report_to_case_ms"),
        ("report -> request sent", "report_to_request_ms"),
        ("report -> stop confirmed", "latency_ms"),
    ):
        p = s[key]
        print(f"  {label:<24} p50 {p['p50']:>8} ms  p95 {p['p95']:>8} ms  p99 {p['p99']:>8} ms")
    print(
        f"  attempts            {s['attempts']} ({s['retries']} retries), "
        f"breaker trips {s['breaker_trips']}"
    )
    print(
        f"  institutions        {s['institution_requests']} requests, "
        f"{s['stops_executed']} stops executed, {s['callbacks']} callbacks"
    )
    print(f"  double stops        {s['double_stops']}")
    if s["clock_speed"] > 1:
        print(
            f"  deadlines ({DEADLINE_HOURS} h at {s['clock_speed']:g}x): {s['warnings_sent']} "
            f"warnings, {s['lapses']} lapses ({s['silent_lapses']} silent), "
            f"{s['reapplied']} re-applied, {s['freezes_ordered']} freezes ordered"
        )
        returned = ", ".join(f"{v} {k}" for k, v in s["amount_returned"].items()) or "nothing"
        print(
            f"  returns             {s['returns_ordered']} holds returned to victims "
            f"({returned}), double returns {s['double_returns']}"
        )
    case = s["sample_case"]
    holds = sorted(case["holds"], key=lambda h: h["layer"])
    print(
        f"\n  busiest case {case['case_id']} ({case['report_id']}), "
        f"its trail at GET /v1/cases/{{case_id}}/trail:"
    )
    for hold in holds[:SAMPLE_ROWS]:
        print(
            f"    L{hold['layer']} {hold['institution_code']:<5} {hold['account']:<9} "
            f"{hold['state']:<10} asked {hold['amount_asked']:>10}  "
            f"stopped {hold['amount_stopped']:>10} {hold['currency']}"
        )
    if len(holds) > SAMPLE_ROWS:
        print(f"    ... and {len(holds) - SAMPLE_ROWS} more holds")


def main(
    reports: int,
    db: Path | None,
    as_json: bool,
    profile_name: str = "realistic",
    max_wait_s: float = 180.0,
    clock_speed: float = 1.0,
) -> int:
    with tempfile.TemporaryDirectory(prefix="stopper-demo-") as tmp:
        db_path = db or Path(tmp) / "stopper-demo.db"
        run = asyncio.run(
            run_demo(
                reports,
                db_path,
                profile_name=profile_name,
                progress=not as_json and sys.stderr.isatty(),
                max_wait_s=max_wait_s,
                clock_speed=clock_speed,
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
    s = run.summary
    complete = s["cases_opened"] == s["reports_accepted"] and _settled(s["holds_by_state"])
    clean = s["double_stops"] == 0 and s["double_returns"] == 0 and s["silent_lapses"] == 0
    return 0 if complete and clean else 1
