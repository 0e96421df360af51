"""Return allocation: examples of each rule, and properties over arbitrary claims."""

from __future__ import annotations

from fractions import Fraction
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stopper.domain.returns import (
    FlowEdge,
    FrozenFunds,
    allocate,
    plan_returns,
    traced_claims,
)


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


A, B, C, D = (UUID(int=i) for i in range(1, 5))


def test_a_deeper_account_inherits_the_mix_of_the_account_it_came_from() -> None:
    # V1 paid 300 and V2 paid 100 into A; 200 moved on to B, then 100 from B to C.
    claims = traced_claims(
        {A: {"V1": 30_000, "V2": 10_000}},
        [FlowEdge(A, B, 20_000), FlowEdge(B, C, 10_000)],
    )
    assert claims[B] == {"V1": 15_000, "V2": 5_000}
    assert claims[C] == {"V1": 7_500, "V2": 2_500}


def test_merged_paths_add_up_and_a_cycle_carries_nothing_back() -> None:
    claims = traced_claims(
        {A: {"V1": 10_000}, B: {"V2": 10_000}},
        [FlowEdge(A, C, 4_000), FlowEdge(B, C, 6_000), FlowEdge(C, A, 1_000)],
    )
    assert claims[C] == {"V1": 4_000, "V2": 6_000}
    assert claims[A] == {"V1": 10_000}


def test_a_return_plan_never_pays_a_victim_twice_for_the_same_loss() -> None:
    # V1 lost 100 into A; it all moved to B. Both are frozen (A at 40, B at 100): only 100 is owed.
    claims = traced_claims({A: {"V1": 10_000}}, [FlowEdge(A, B, 10_000)])
    plan = plan_returns(
        [FrozenFunds(B, 2, "EUR", 10_000), FrozenFunds(A, 1, "EUR", 4_000)],
        claims,
        lost={("V1", "EUR"): 10_000},
        already_paid={},
    )
    assert [(r.hold_id, r.allocation.shares, r.allocation.unallocated) for r in plan] == [
        (A, {"V1": 4_000}, 0),
        (B, {"V1": 6_000}, 4_000),
    ]


def test_what_earlier_returns_paid_is_owed_no_more() -> None:
    plan = plan_returns(
        [FrozenFunds(A, 1, "EUR", 10_000)],
        {A: {"V1": 10_000, "V2": 10_000}},
        lost={("V1", "EUR"): 10_000, ("V2", "EUR"): 10_000},
        already_paid={("V1", "EUR"): 8_000},
    )
    assert plan[0].allocation.shares == {"V1": 2_000, "V2": 8_000}


@st.composite
def money_graphs(draw: st.DrawFn) -> tuple[dict[UUID, dict[str, int]], list[FlowEdge]]:
    holds = [uuid4() for _ in range(draw(st.integers(1, 8)))]
    roots = holds[: draw(st.integers(1, len(holds)))]
    deposits = {h: draw(claims) for h in roots}
    edges = [
        FlowEdge(draw(st.sampled_from(holds)), draw(st.sampled_from(holds)), amount)
        for amount in draw(st.lists(st.integers(0, 10**9), max_size=12))
    ]
    return deposits, edges


@given(graph=money_graphs())
def test_traced_money_never_exceeds_what_victims_put_in(
    graph: tuple[dict[UUID, dict[str, int]], list[FlowEdge]],
) -> None:
    deposits, edges = graph
    claims = traced_claims(deposits, edges)
    paid_in: dict[str, int] = {}
    for mix in deposits.values():
        for victim, cents in mix.items():
            paid_in[victim] = paid_in.get(victim, 0) + cents
    for hold, mix in claims.items():
        inflow = sum(e.amount for e in edges if e.to_hold == hold and e.from_hold != hold)
        assert sum(mix.values()) <= sum(deposits.get(hold, {}).values()) + inflow
        for victim, cents in mix.items():
            assert 0 < cents
            # Nothing is invented: a victim appears only where their money could flow.
            assert victim in paid_in


@given(
    graph=money_graphs(),
    frozen=st.lists(st.integers(0, 10**9), min_size=8, max_size=8),
    paid=st.integers(0, 10**9),
)
def test_a_return_plan_pays_no_victim_more_than_lost_and_no_hold_more_than_frozen(
    graph: tuple[dict[UUID, dict[str, int]], list[FlowEdge]], frozen: list[int], paid: int
) -> None:
    deposits, edges = graph
    claims = traced_claims(deposits, edges)
    lost: dict[tuple[str, str], int] = {}
    for mix in deposits.values():
        for victim, cents in mix.items():
            lost[(victim, "EUR")] = lost.get((victim, "EUR"), 0) + cents
    already = {key: min(paid, amount) for key, amount in lost.items()}
    holds = [
        FrozenFunds(h, 1 + i % 3, "EUR", frozen[i]) for i, h in enumerate(sorted(claims, key=str))
    ]
    plan = plan_returns(holds, claims, lost, already)
    total: dict[tuple[str, str], int] = {}
    ordered = sorted(holds, key=lambda h: (h.layer, str(h.hold_id)))
    for returned, funds in zip(plan, ordered, strict=True):
        assert returned.hold_id == funds.hold_id
        assert returned.allocation.paid + returned.allocation.unallocated == funds.amount_frozen
        for victim, cents in returned.allocation.shares.items():
            assert cents <= claims[funds.hold_id][victim]
            total[(victim, "EUR")] = total.get((victim, "EUR"), 0) + cents
    for key, cents in total.items():
        assert cents <= lost[key] - already[key]


def test_a_victim_at_the_cap_gets_the_cap_and_the_rest_is_shared_pro_rata() -> None:
    allocation = allocate(90_000, {"V1": 50_000, "V2": 50_000, "V3": 100_000}, caps={"V1": 10_000})
    assert allocation.shares == {"V1": 10_000, "V2": 26_667, "V3": 53_333}


@given(
    frozen=st.integers(0, 10**10),
    owed=claims,
    caps=st.dictionaries(
        st.text(alphabet="ABCDEFGHV0123456789", min_size=1, max_size=4), st.integers(-5, 10**9)
    ),
)
def test_capped_allocation_is_exact_respects_caps_and_stays_proportional_below_them(
    frozen: int, owed: dict[str, int], caps: dict[str, int]
) -> None:
    allocation = allocate(frozen, owed, caps=caps)
    limit = {v: max(0, min(owed[v], caps.get(v, owed[v]))) for v in owed}
    assert allocation.paid + allocation.unallocated == frozen
    assert allocation.paid == min(frozen, sum(limit.values()))
    for victim, share in allocation.shares.items():
        assert 0 <= share <= limit[victim]
    # Victims below their cap got the same rate, give or take a cent.
    free = [v for v, share in allocation.shares.items() if share + 1 < limit[v]]
    for a in free:
        for b in free:
            drift = allocation.shares[a] * owed[b] - allocation.shares[b] * owed[a]
            assert abs(drift) <= owed[a] + owed[b]
