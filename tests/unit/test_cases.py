from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stopper.domain.accounts import AccountRef, mask_account_number
from stopper.domain.cases import TransferFact, case_id_for, hold_id_for, open_case
from stopper.domain.errors import InconsistentReport, InvalidAmount
from stopper.domain.holds import HoldState
from stopper.domain.messages import CaseOpened, HoldRequested

AT = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
VICTIM_ACCOUNT = AccountRef("BK02", "6222000000000001")
MULE_A = AccountRef("BK01", "6222111122223333", "Mule A")
MULE_B = AccountRef("PI03", "9900112233")


def transfer(
    account: AccountRef, amount: int, currency: str = "CNY", victim: str = "V1"
) -> TransferFact:
    return TransferFact(
        victim,
        VICTIM_ACCOUNT,
        account,
        amount,
        currency,
        AT - timedelta(hours=1),
        "mobile_banking",
        None,
    )


def test_one_hold_per_distinct_account_with_summed_amounts() -> None:
    case, births, events = open_case(
        report_id="R-1",
        agency_code="PSB",
        reported_at=AT,
        opened_at=AT,
        transfers=[
            transfer(MULE_A, 1_000),
            transfer(MULE_B, 500),
            transfer(MULE_A, 2_500, victim="V2"),
        ],
    )
    assert case.id == case_id_for("R-1")
    assert [(h.institution_code, h.amount_asked) for h in case.holds] == [
        ("BK01", 3_500),
        ("PI03", 500),
    ]
    assert all(h.state is HoldState.REQUESTED and h.layer == 1 for h in case.holds)
    assert [b.hold_id for b in births] == [h.id for h in case.holds]
    assert all(b.from_state is None and b.to_state is HoldState.REQUESTED for b in births)
    assert isinstance(events[0], CaseOpened) and events[0].hold_count == 2
    assert [type(e) for e in events[1:]] == [HoldRequested, HoldRequested]


def test_ids_are_stable_across_deliveries() -> None:
    first, _, _ = open_case(
        report_id="R-2",
        agency_code="PSB",
        reported_at=AT,
        opened_at=AT,
        transfers=[transfer(MULE_A, 100)],
    )
    again, _, _ = open_case(
        report_id="R-2",
        agency_code="PSB",
        reported_at=AT,
        opened_at=AT + timedelta(seconds=5),
        transfers=[transfer(MULE_A, 100)],
    )
    assert first.id == again.id
    assert first.holds[0].id == again.holds[0].id == hold_id_for(first.id, MULE_A)
    other, _, _ = open_case(
        report_id="R-3",
        agency_code="PSB",
        reported_at=AT,
        opened_at=AT,
        transfers=[transfer(MULE_A, 100)],
    )
    assert other.holds[0].id != first.holds[0].id


def test_stop_requests_carry_an_idempotency_key_derived_from_the_hold() -> None:
    case, _, _ = open_case(
        report_id="R-4",
        agency_code="PSB",
        reported_at=AT,
        opened_at=AT,
        transfers=[transfer(MULE_A, 100), transfer(MULE_B, 200)],
    )
    requests = case.stop_requests()
    assert [r.hold_id for r in requests] == [h.id for h in case.holds]
    assert [r.idempotency_key for r in requests] == [f"stopper-{h.id}-0" for h in case.holds]
    assert [r.amount for r in requests] == [100, 200]


def test_one_account_in_two_currencies_is_refused() -> None:
    with pytest.raises(InconsistentReport) as raised:
        open_case(
            report_id="R-5",
            agency_code="PSB",
            reported_at=AT,
            opened_at=AT,
            transfers=[transfer(MULE_A, 100), transfer(MULE_A, 100, currency="USD")],
        )
    assert "3333" in str(raised.value) and "22223333" not in str(raised.value)


@pytest.mark.parametrize("amount", [0, -5])
def test_non_positive_amounts_are_refused(amount: int) -> None:
    with pytest.raises(InvalidAmount):
        open_case(
            report_id="R-6",
            agency_code="PSB",
            reported_at=AT,
            opened_at=AT,
            transfers=[transfer(MULE_A, amount)],
        )


def test_empty_report_is_refused() -> None:
    with pytest.raises(InconsistentReport):
        open_case(report_id="R-7", agency_code="PSB", reported_at=AT, opened_at=AT, transfers=[])


def test_masking_keeps_only_the_last_four() -> None:
    assert mask_account_number("6222021234567890") == "****7890"
    assert mask_account_number("1234") == "****"
    assert "6222111122223333" not in repr(MULE_A) and "Mule A" not in repr(MULE_A)
