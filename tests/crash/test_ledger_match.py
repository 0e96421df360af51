"""The crash harness's matching rule: a hold of Stopper against its institution's ledger."""

from __future__ import annotations

from uuid import UUID

import pytest

from tests.crash.ledger import (
    LedgerEntry,
    StopperHold,
    Verdict,
    compare,
    verdict,
)

H1 = UUID("00000000-0000-4000-8000-000000000001")
H2 = UUID("00000000-0000-4000-8000-000000000002")
H3 = UUID("00000000-0000-4000-8000-000000000003")


def hold(
    state: str, amount_stopped: int = 0, hold_id: UUID = H1, generation: int = 0
) -> StopperHold:
    return StopperHold(hold_id, "BK01", state, amount_stopped, generation)


def entry(
    status: str,
    amount_held: int | None = None,
    hold_id: UUID = H1,
    generation: int = 0,
    institution_code: str = "BK01",
) -> LedgerEntry:
    return LedgerEntry(
        hold_id,
        institution_code,
        generation,
        f"stopper-{hold_id}-{generation}",
        status,
        amount_held,
    )


@pytest.mark.parametrize(
    ("state", "amount_stopped", "status", "amount_held", "expected"),
    [
        ("stopped", 5000, "stopped", 5000, Verdict.MATCHES),
        ("stopped", 4000, "stopped", 5000, Verdict.DIVERGES),
        ("failed", 0, "stopped", 5000, Verdict.DIVERGES),
        ("sent", 0, "stopped", 5000, Verdict.DIVERGES),
        ("unconfirmed", 0, "stopped", 5000, Verdict.DIVERGES),
        ("not_found", 0, "not_found", None, Verdict.MATCHES),
        ("rejected", 0, "not_found", None, Verdict.DIVERGES),
        ("rejected", 0, "rejected", None, Verdict.MATCHES),
        ("stopped", 5000, "rejected", None, Verdict.DIVERGES),
        ("sent", 0, "pending", None, Verdict.MATCHES),
        ("unconfirmed", 0, "pending", None, Verdict.MATCHES),
        ("requested", 0, "pending", None, Verdict.DIVERGES),
        ("failed", 0, "pending", None, Verdict.DIVERGES),
        ("stopped", 5000, "pending", None, Verdict.DIVERGES),
        # A released hold matches a ledger that released it, and nothing else.
        ("released", 5000, "released", 5000, Verdict.MATCHES),
        ("released", 0, "released", 0, Verdict.MATCHES),
        ("released", 5000, "stopped", 5000, Verdict.DIVERGES),
        ("stopped", 5000, "released", 5000, Verdict.DIVERGES),
        ("releasing", 5000, "stopped", 5000, Verdict.DIVERGES),
    ],
)
def test_a_hold_matches_only_what_its_institution_did(
    state: str, amount_stopped: int, status: str, amount_held: int | None, expected: Verdict
) -> None:
    assert verdict(hold(state, amount_stopped), entry(status, amount_held)) is expected


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("requested", Verdict.UNSETTLED),
        ("sent", Verdict.UNSETTLED),
        ("unconfirmed", Verdict.DIVERGES),
        ("failed", Verdict.DIVERGES),
        ("stopped", Verdict.DIVERGES),
        ("not_found", Verdict.DIVERGES),
        ("rejected", Verdict.DIVERGES),
        # Released before its stop request left: there was never anything there.
        ("released", Verdict.MATCHES),
        ("releasing", Verdict.DIVERGES),
    ],
)
def test_a_hold_its_institution_never_saw_is_unsettled_while_on_its_way_else_divergent(
    state: str, expected: Verdict
) -> None:
    assert verdict(hold(state), None) is expected


def test_an_entry_at_another_institution_diverges() -> None:
    assert verdict(hold("not_found"), entry("not_found", institution_code="PI01")) is (
        Verdict.DIVERGES
    )


def test_compare_counts_each_kind_of_mismatch_and_the_failed_holds_whose_funds_are_stopped() -> (
    None
):
    holds = [
        hold("stopped", 700, H1),
        hold("failed", 0, H2),
        hold("sent", 0, H3),
    ]
    ledger = [entry("stopped", 700, H1), entry("stopped", 900, H2)]
    result = compare(holds, ledger)
    assert result.matched == 1
    assert result.mismatches == {H2: ("failed", "stopped"), H3: ("sent", "absent")}
    assert (result.divergent, result.unsettled) == (1, 1)
    assert result.failed_but_stopped == [H2]
    assert result.executed_twice == [] and result.unknown_to_stopper == []
    assert any("stopper failed / ledger stopped: 1" in line for line in result.lines())


def test_compare_matches_the_entry_of_the_holds_current_generation() -> None:
    reapplied = hold("sent", 0, H1, generation=1)
    earlier_stop = entry("stopped", 700, H1, generation=0)
    assert compare([reapplied], [earlier_stop]).mismatches == {H1: ("sent", "absent")}
    assert compare([reapplied], [earlier_stop, entry("pending", generation=1)]).matched == 1


def test_compare_finds_double_stops_and_holds_stopper_does_not_know() -> None:
    ledger = [entry("stopped", 700, H1), entry("stopped", 700, H1), entry("rejected", None, H2)]
    result = compare([hold("stopped", 700, H1)], ledger)
    assert result.executed_twice == [(H1, 0)]
    assert result.unknown_to_stopper == [H2]
    assert result.matched == 1


def test_a_hold_matches_if_it_matches_the_ledger_read_before_it_or_the_one_after() -> None:
    holds = [
        hold("sent", 0, H1),  # its callback left between the reads
        hold("stopped", 900, H2),  # born and answered at once between the reads
        hold("failed", 0, H3),  # gave up while its institution still owes the answer
    ]
    before = [entry("pending", None, H1), entry("pending", None, H3)]
    after = [entry("stopped", 700, H1), entry("stopped", 900, H2), entry("pending", None, H3)]
    result = compare(holds, before, after)
    assert result.matched == 2
    assert result.mismatches == {H3: ("failed", "pending")} and result.divergent == 1
    # Without the second read the hold born in between is a divergence: nothing is let off.
    assert compare(holds, before).mismatches.keys() == {H2, H3}


def test_a_ledger_hold_is_unknown_to_stopper_only_if_listed_before_stopper_was_read() -> None:
    holds = [hold("stopped", 700, H1)]
    before = [entry("stopped", 700, H1)]
    after = [entry("stopped", 700, H1), entry("stopped", 500, H2)]
    assert compare(holds, before, after).unknown_to_stopper == []
    assert compare(holds, after, after).unknown_to_stopper == [H2]


def test_a_stop_s_supplements_count_in_its_amount_and_one_in_transit_is_no_divergence() -> None:
    raw = {
        "hold_id": str(H1),
        "institution_code": "BK01",
        "generation": 0,
        "idempotency_key": f"stopper-{H1}-0",
        "status": "stopped",
        "amount_held": 7000,
        "supplements": [
            {
                "number": 1,
                "idempotency_key": f"stopper-{H1}-s1",
                "status": "stopped",
                "amount_held": 2000,
            }
        ],
    }
    with_supplement = LedgerEntry.from_json(raw)
    assert with_supplement.amount_held == 7000
    before = entry("stopped", 5000)  # read while the supplement's outcome was still owed
    assert compare([hold("stopped", 7000)], [with_supplement]).matched == 1
    assert compare([hold("stopped", 5000)], [before], [with_supplement]).matched == 1
    assert compare([hold("stopped", 7000)], [before], [with_supplement]).matched == 1
    assert compare([hold("stopped", 5000)], [with_supplement]).divergent == 1
