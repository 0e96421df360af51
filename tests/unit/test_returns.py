"""Return allocation: examples of each rule, and properties over arbitrary claims."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stopper.domain.returns import allocate


def test_money_traceable_to_one_victim_goes_to_that_victim() -> None:
    assert allocate(30_000, {"V1": 50_000}).shares == {"V1": 30_000}


def test_several_victims_are_paid_pro_rata() -> None:
    allocation = allocate(60_000, {"V1": 100_000, "V2": 50_000})
    assert allocation.shares == {"V1": 40_000, "V2": 20_000} and allocation.unallocated == 0


def test_remainder_cents_go_to_the_largest_fractions_then_larger_claims_then_names() -> None:
    # 100 cents among three equal claims of 300: 33.33 each, one cent left, tie -> "A".
    assert allocate(100, {"A": 300, "B": 300, "C": 300}).shares == {"A": 34, "B": 33, "C": 33}
    # 10 cents for claims 7 and 6: exact 5.38 and 4.62 -> the larger fraction gets the cent.
    assert allocate(10, {"A": 7, "B": 6}).shares == {"A": 5, "B": 5}


def test_nobody_gets_more_than_owed_and_the_rest_stays_frozen() -> None:
    allocation = allocate(90_000, {"V1": 20_000, "V2": 30_000, "V3": 0})
    assert allocation.shares == {"V1": 20_000, "V2": 30_000}
    assert allocation.unallocated == 40_000


def test_negative_amounts_are_refused() -> None:
    with pytest.raises(ValueError):
        allocate(-1, {"V1": 1})


claims = st.dictionaries(
    st.text(alphabet="ABCDEFGHV0123456789", min_size=1, max_size=4),
    st.integers(0, 10**9),
    max_size=12,
)


@given(frozen=st.integers(0, 10**10), owed=claims)
def test_allocation_is_exact_never_over_pays_and_is_proportional_within_a_cent(
    frozen: int, owed: dict[str, int]
) -> None:
    allocation = allocate(frozen, owed)
    total = sum(owed.values())
    assert allocation.paid + allocation.unallocated == frozen
    assert allocation.paid == min(frozen, total)
    for victim, share in allocation.shares.items():
        assert 0 <= share <= owed[victim]
    if total > frozen:
        for victim, share in allocation.shares.items():
            exact = Fraction(frozen * owed[victim], total)
            assert abs(share - exact) < 1
