"""The realistic benchmark's own logic on fixed data: a step's holds against the ledger, and
whether a step passed (`bench/realistic.py`)."""

from __future__ import annotations

from uuid import UUID

import pytest

from bench.loadgen import Sent
from bench.realistic import StepRun, Steps, step_comparison, step_result
from tests.crash.ledger import LedgerEntry, StopperHold

H1 = UUID("00000000-0000-4000-8000-000000000001")
H2 = UUID("00000000-0000-4000-8000-000000000002")
H3 = UUID("00000000-0000-4000-8000-000000000003")
WARM_UP = UUID("00000000-0000-4000-8000-0000000000ff")


def hold(state: str, amount: int = 0, hold_id: UUID = H1) -> StopperHold:
    return StopperHold(hold_id, "BK01", state, amount, 0)


def entry(status: str, amount: int | None = None, hold_id: UUID = H1) -> LedgerEntry:
    return LedgerEntry(hold_id, "BK01", 0, f"stopper-{hold_id}-0", status, amount)


def test_a_step_is_compared_without_the_ledger_entries_of_earlier_reports() -> None:
    step = [hold("stopped", 700, H1), hold("sent", 0, H2), hold("failed", 0, H3)]
    ledger = [entry("stopped", 700, H1), entry("stopped", 500, H3), entry("stopped", 9, WARM_UP)]
    compared = step_comparison(step, {WARM_UP}, ledger, ledger)
    assert not compared.all_match
    summary = compared.summary()
    assert summary["holds"] == 3 and summary["matched"] == 1
    assert (summary["divergent"], summary["unsettled"]) == (1, 1)
    assert summary["failed_but_stopped"] == 1 and summary["unknown_to_stopper"] == 0
    assert summary["mismatches_by_state_and_ledger"] == {"sent / absent": 1, "failed / stopped": 1}
    assert summary["stopper_states"] == {"failed": 1, "sent": 1, "stopped": 1}


def test_a_callback_in_transit_between_the_two_reads_of_the_ledger_is_no_mismatch() -> None:
    compared = step_comparison(
        [hold("sent", 0, H1)], set(), [entry("pending", None, H1)], [entry("stopped", 700, H1)]
    )
    assert compared.all_match


def test_a_step_without_holds_does_not_match() -> None:
    assert not step_comparison([], set(), [], []).all_match


def run(
    *,
    seconds_to_match: float | None = 3.0,
    refused: int = 0,
    holds: int = 200,
    confirmed: int = 150,
    totals: dict[str, int] | None = None,
) -> StepRun:
    return StepRun(
        rate=50,
        sent=Sent(reports=100, accepted=100 - refused, refused=refused, holds=180),
        verdicts={"holds": holds, "matched": holds, "divergent": 0},
        confirmed=confirmed,
        seconds_to_match=seconds_to_match,
        simulator_totals=(
            {"requests": 230, "stop_requests": 230, "callbacks_sent": 120, "status_inquiries": 4}
            if totals is None
            else totals
        ),
        cpu_s={"api": 1.5, "postgres": 3.0},
        report_to_stopped_ms={"p50": 200.0, "p95": 600.0, "p99": 900.0},
    )


@pytest.mark.parametrize(
    ("seconds_to_match", "refused", "passed"),
    [(3.0, 0, True), (10.0, 0, True), (10.4, 0, False), (None, 0, False), (1.0, 2, False)],
)
def test_a_step_passes_when_every_report_was_taken_and_every_hold_matched_within_10_s(
    seconds_to_match: float | None, refused: int, passed: bool
) -> None:
    result = step_result(Steps(), run(seconds_to_match=seconds_to_match, refused=refused))
    assert result["passed"] is passed


def test_a_step_counts_requests_and_callbacks_per_hold_and_cpu_per_confirmed_hold() -> None:
    result = step_result(Steps(), run())
    assert result["stop_requests_per_hold"] == 1.15
    assert result["callbacks_per_hold"] == 0.6
    assert result["status_inquiries_per_hold"] == 0.02
    assert "status_queries_per_hold" not in result  # the simulator does not count them
    assert result["cpu_ms_per_confirmed_hold"] == {"api": 10.0, "postgres": 20.0}


def test_an_older_simulator_counts_stop_requests_as_requests() -> None:
    result = step_result(Steps(), run(totals={"requests": 300, "callbacks_sent": 0}))
    assert result["stop_requests_per_hold"] == 1.5


def test_a_step_that_confirmed_nothing_has_no_cpu_per_confirmed_hold() -> None:
    result = step_result(Steps(), run(confirmed=0, seconds_to_match=None))
    assert result["cpu_ms_per_confirmed_hold"] == {"api": None, "postgres": None}
    assert result["passed"] is False
