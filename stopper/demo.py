"""`stopper demo`: a live run of intake on the embedded default (in-process bus, SQLite file).

It posts realistic fraud reports to the real HTTP API in-process, the way a police intake system
would, with a few bad ones and reposts mixed in, waits for the intake consumer to open every
case, and prints what happened.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from stopper.api.app import create_app
from stopper.config import DatabaseSettings, KafkaSettings, Settings
from stopper.domain.cases import case_id_for
from stopper.runtime import build_runtime
from stopper.simulation.reports import ReportFactory


@dataclass
class DemoResult:
    posted: int = 0
    answers: Counter[int] = field(default_factory=Counter)
    rejections: Counter[str] = field(default_factory=Counter)
    summary: dict[str, Any] = field(default_factory=dict)


def _bad_reports(good: dict[str, Any]) -> list[tuple[str, bytes]]:
    """What a hurried or broken intake system sends now and then."""
    negative = json.loads(json.dumps(good))
    negative["report_id"] += "-neg"
    negative["transfers"][0]["amount"] = "-500.00"
    unknown = json.loads(json.dumps(good))
    unknown["report_id"] += "-unk"
    unknown["transfers"][0]["receiving_account"]["institution_code"] = "ZZ99"
    return [
        ("malformed JSON", b'{"report_id": "truncated'),
        ("negative amount", json.dumps(negative).encode()),
        ("unknown institution", json.dumps(unknown).encode()),
    ]


async def run_demo(reports: int, db_path: Path, *, progress: bool) -> DemoResult:
    settings = Settings(
        database=DatabaseSettings(url=None, embedded_path=db_path),
        kafka=KafkaSettings(bootstrap=None),
    )
    runtime = build_runtime(settings)
    app = create_app(runtime, start_runtime=False)
    factory = ReportFactory(runtime.registry, seed=2026)
    result = DemoResult()
    await runtime.start()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://stopper") as client:
            now = datetime.now(UTC)
            documents = [
                factory.report(now - timedelta(seconds=reports - i)) for i in range(reports)
            ]
            bodies = [json.dumps(d).encode() for d in documents]
            # Intake systems retry: every tenth report is posted twice.
            bodies += [bodies[i] for i in range(0, reports, 10)]
            bodies += [body for _, body in _bad_reports(documents[0])]
            for body in bodies:
                answer = await client.post(
                    "/v1/reports", content=body, headers={"content-type": "application/json"}
                )
                result.posted += 1
                result.answers[answer.status_code] += 1
                if answer.status_code >= 400:
                    result.rejections[answer.json()["detail"]] += 1
                if progress and result.posted % 25 == 0:
                    _progress(f"posted {result.posted}/{len(bodies)}")
            deadline = asyncio.get_running_loop().time() + 60
            while True:
                overview = await runtime.store.overview()
                if progress:
                    _progress(f"posted {result.posted}, cases opened {overview.cases}/{reports}")
                if overview.cases >= reports or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.2)
            if progress:
                _progress("")
            sample = documents[0]["report_id"]
            case = await client.get(f"/v1/cases/{case_id_for(sample)}")
        result.summary = _summary(overview, reports, case.json())
    finally:
        await runtime.stop()
    return result


def _percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


def _summary(overview: Any, reports: int, sample_case: dict[str, Any]) -> dict[str, Any]:
    latencies = sorted(overview.intake_latencies_ms)
    return {
        "reports_expected": reports,
        "cases_opened": overview.cases,
        "holds_by_state": overview.holds_by_state,
        "amount_reported": {
            c: f"{v / 100:.2f}" for c, v in overview.amount_asked_by_currency.items()
        },
        "stop_requests_in_outbox": overview.outbox_pending,
        "intake_latency_ms": {
            "p50": round(_percentile(latencies, 50), 1),
            "p95": round(_percentile(latencies, 95), 1),
            "p99": round(_percentile(latencies, 99), 1),
        },
        "sample_case": sample_case,
    }


def _progress(text: str) -> None:
    sys.stderr.write("\r\033[K" + text)
    sys.stderr.flush()


def print_table(result: DemoResult) -> None:
    s = result.summary
    print(f"\nStopper demo — {result.posted} reports posted to intake")
    print(
        "  HTTP answers:      " + ", ".join(f"{k}: {v}" for k, v in sorted(result.answers.items()))
    )
    for reason, count in result.rejections.items():
        print(f"  refused ({count}):      {reason}")
    print(f"  cases opened:      {s['cases_opened']} of {s['reports_expected']}")
    print("  holds by state:    " + ", ".join(f"{k}: {v}" for k, v in s["holds_by_state"].items()))
    print("  amount reported:   " + ", ".join(f"{v} {k}" for k, v in s["amount_reported"].items()))
    print(f"  stop requests owed (outbox): {s['stop_requests_in_outbox']}")
    lat = s["intake_latency_ms"]
    print(
        f"  report accepted -> case open: p50 {lat['p50']} ms, p95 {lat['p95']} ms, "
        f"p99 {lat['p99']} ms"
    )
    case = s["sample_case"]
    print(f"\n  sample case {case['case_id']} ({case['report_id']}):")
    for hold in case["holds"]:
        print(
            f"    {hold['institution_code']:<5} {hold['account']:<10} {hold['state']:<10} "
            f"{hold['amount_asked']:>12} {hold['currency']}"
        )


def main(reports: int, db: Path | None, as_json: bool) -> int:
    with tempfile.TemporaryDirectory(prefix="stopper-demo-") as tmp:
        db_path = db or Path(tmp) / "stopper-demo.db"
        result = asyncio.run(
            run_demo(reports, db_path, progress=not as_json and sys.stderr.isatty())
        )
    if as_json:
        print(
            json.dumps(
                {
                    "posted": result.posted,
                    "http_answers": {str(k): v for k, v in result.answers.items()},
                    "refused": dict(result.rejections),
                    **result.summary,
                },
                indent=2,
            )
        )
    else:
        print_table(result)
    return 0 if result.summary["cases_opened"] == reports else 1
