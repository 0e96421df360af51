"""`make bench`'s choices on fixed data: which parts run with which defaults and where their
results go, how runs are summed up, and the README table (`bench/run.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.run import (
    FULL,
    QUICK,
    RESULTS,
    _median_index,
    _reverify_rows,
    _spread,
    parse_args,
    table_lines,
)
from bench.stack import registry_on
from stopper.registry import load_registry


def test_a_full_run_writes_the_kept_results_with_the_full_defaults() -> None:
    args = parse_args([])
    assert args.parts == ["a", "b", "c", "c'", "d", "e"] and args.full
    assert args.output == RESULTS / "latest.json"
    assert (args.reports, args.latency_runs, args.realistic_step_seconds) == (
        FULL["reports"],
        3,
        120.0,
    )


def test_a_quick_run_takes_short_defaults_but_what_it_is_told_and_is_not_kept() -> None:
    args = parse_args(["--quick", "--realistic-rates", "10"])
    assert not args.full and args.output == RESULTS / "partial.json"
    assert args.realistic_step_seconds == QUICK["realistic_step_seconds"]
    assert args.realistic_rates == "10"


def test_parts_run_alone_are_named_as_in_the_readme_and_keep_their_order() -> None:
    args = parse_args(["--only", "d, c2,b"])
    assert args.parts == ["b", "c'", "d"] and not args.full
    assert args.output == RESULTS / "partial.json"
    with pytest.raises(SystemExit):
        parse_args(["--only", "f"])


def latency_run(p99: float) -> dict[str, Any]:
    return {
        "workers": 1,
        "report_to_request_ms": {"p50": 5.0, "p95": 10.0, "p99": p99},
        "report_to_stopped_ms": {"p50": 10.0, "p95": 20.0, "p99": 30.0},
    }


def test_the_headline_latency_run_is_the_one_of_the_median_p99() -> None:
    runs = [latency_run(19.0), latency_run(31.0), latency_run(17.5)]
    assert _median_index(runs) == 0
    assert _median_index(runs[:2]) == 0  # an even count: the lower middle
    assert _spread([19.0, 31.0, 17.5]) == {"min": 17.5, "median": 19.0, "max": 31.0, "runs": 3}


def test_the_table_states_the_targets_as_ratios_and_every_realistic_step() -> None:
    step = {
        "rate": 10,
        "seconds": 120.0,
        "passed": True,
        "holds": 800,
        "matched": 800,
        "divergent": 0,
        "seconds_to_match": 1.0,
        "stop_requests_per_hold": 1.03,
        "callbacks_per_hold": 0.6,
        "report_to_stopped_ms": {"p50": 200.0, "p95": 450.0, "p99": 800.0},
        "cpu_ms_per_confirmed_hold": {"api": 3.1, "postgres": None},
    }
    failed = {**step, "rate": 20, "passed": False, "matched": 700, "seconds_to_match": None}
    doc = {
        "started_at": "2026-12-01T20:00:00+00:00",
        "machine": {"cpus": 2},
        "settings": {
            "reports": 330000,
            "latency_seconds": 30.0,
            "latency_runs": 3,
            "workers": 2,
            "latency_workers": 1,
            "same_io_records": 200000,
        },
        "postgres_durability": "fsync=on, synchronous_commit=on",
        "holds_per_s": 2400.0,
        "throughput": {"holds": 900000, "seconds": 375.0, "states": {"stopped": 900000}},
        "holds_per_s_iso20022": 6100.0,
        "throughput_iso20022": {"holds": 900000, "seconds": 147.5, "states": {"stopped": 900000}},
        "ratio_iso20022_to_json": 2.54,
        "bare_per_s": 48000.0,
        "ratio": 0.05,
        "bare_same_io_per_s": 4000.0,
        "ratio_same_io": 0.6,
        "latency_at_200_runs": [latency_run(17.0), latency_run(18.0), latency_run(19.0)],
        "latency_at_200_by_workers": {"1": latency_run(18.0), "2": latency_run(40.0)},
        "p99_ms_report_to_request_at_200": 18.0,
        "bare_latency_at_200_runs": [{"p50": 10.0, "p99": 24.0}] * 3,
        "bare_p50_ms_at_200": 10.0,
        "bare_p99_ms_at_200": 24.0,
        "latency_ratio_p99": 0.75,
        "realistic_max_reports_per_s": 10,
        "realistic_steps": [step, failed],
    }
    table = "\n".join(table_lines(doc))
    assert "| **ratio_same_io** (a) / (c') | 0.600 | ≥ 0.5 |" in table
    assert "every institution on iso20022 (camt.056 batches), 2 workers | 6,100.0" in table
    assert "2.54 x http_json) | ≥ 6,000 (#16) |" in table
    assert "| **latency_ratio_p99** (b) / bare | 0.750 | ≤ 1.0 |" in table
    assert "(runs: 17.0, 18.0, 19.0)" in table
    assert "fsync=on, synchronous_commit=on" in table
    assert "| 10 | ≥ 100 |" in table
    assert "(d) 10 reports/s for 120 s: passed | 800 of 800 holds matched" in table
    assert "(d) 20 reports/s for 120 s: **failed** | 700 of 800" in table
    assert "not all matched" in table and "api 3.10" in table
    # (a) on iso20022 failing is a result beside the JSON figure: what failed, and of what.
    doc |= {
        "throughput_iso20022": {
            "adapter": "iso20022",
            "failed": "12 of 900000 holds failed (12 at BK12: attempt 2: no answer | gave up)",
        },
        "holds_per_s_iso20022": None,
        "ratio_iso20022_to_json": None,
    }
    table = "\n".join(table_lines(doc))
    assert (
        "2 workers | failed: 12 of 900000 holds failed (12 at BK12: attempt 2: no answer / gave"
        " up) | ≥ 6,000 (#16) |" in table
    )
    assert "| (a) holds settled per second, 2 workers | 2,400.0" in table


def test_a_runs_on_a_world_of_one_adapter(tmp_path: Path) -> None:
    for adapter in ("http_json", "iso20022"):
        registry = load_registry(registry_on(adapter, tmp_path))
        assert {i.adapter for i in registry.values()} == {adapter}
        assert len(registry) == len(load_registry())


def test_the_reverify_rows_say_the_live_p99_beside_its_baseline_and_whether_the_job_drained() -> (
    None
):
    race = {"report_to_request_ms": {"p50": 6.0, "p95": 20.0, "p99": 31.5}}
    e = {
        "holds": 300_000,
        "rate": 20,
        "live": race,
        "baseline": {"report_to_request_ms": {"p50": 5.0, "p95": 12.0, "p99": 18.0}},
        "job": {
            "holds": 300_000,
            "asked": 120_000,
            "finished": False,
            "draining_at_load_end": True,
            "seconds": 60.0,
            "outcomes": {"confirmed": 120_000},
        },
    }
    live, job = _reverify_rows(e)
    assert "6.0 / **31.5** (without it: 5.0 / 18.0) | p99 ≤ 50 |" in live
    assert "2,000.0 (120,000 of 300,000 in 60 s, **not finished**, still draining at" in job
    assert "120,000 confirmed" in job
    assert QUICK["reverify_holds"] < FULL["reverify_holds"] == 300_000
