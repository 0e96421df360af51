"""What `stopper demo` found, as a summary (its `--json`) and as the table it prints."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

DEADLINE_HOURS = 72  # how much business time the accelerated deadline phase lets pass
SAMPLE_ROWS = 12  # holds of the busiest case shown


@dataclass
class DemoRun:
    posted: int = 0
    answers: Counter[int] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    accepted: set[str] = field(default_factory=set)  # case ids intake answered for
    reapplied: int = 0
    freezes_ordered: int = 0
    returns_ordered: int = 0
    # Failed holds by institution, with the reason of one of them: those the profile makes fail
    # and the others.
    failed_by_profile: Counter[str] = field(default_factory=Counter)
    failed_otherwise: Counter[str] = field(default_factory=Counter)
    failure_reasons: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def _percentiles(values: tuple[float, ...]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    if len(values) == 1:
        return {"p50": values[0], "p95": values[0], "p99": values[0]}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": round(cuts[49], 1), "p95": round(cuts[94], 1), "p99": round(cuts[98], 1)}


def money(by_currency: dict[str, int]) -> dict[str, str]:
    return {currency: f"{minor / 100:.2f}" for currency, minor in sorted(by_currency.items())}


def summarize(
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
        "amount_reported": money(overview.amount_asked_by_currency),
        "amount_stopped": money(overview.amount_stopped_by_currency),
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
    if s["holds_failed_by_profile"] or s["holds_failed_otherwise"]:
        print(
            f"  failed holds        {s['holds_failed_by_profile']} made to fail by the "
            f"{s['profile']} profile's faults, {s['holds_failed_otherwise']} otherwise"
        )
    print("  holds by adapter    institutions  holds  stopped")
    for adapter, row in s["holds_by_adapter"].items():
        carried = (
            f"  ({row['messages']} camt.056 messages, {row['holds_per_message']} holds each)"
            if row.get("messages")
            else ""
        )
        print(
            f"    {adapter:<17} {row['institutions']:>12}  {row['holds']:>5}  "
            f"{row['stopped']:>7}{carried}"
        )
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
