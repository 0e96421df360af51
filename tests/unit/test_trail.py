"""The money trail planner: examples for each rule, and properties over random mule graphs."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stopper.domain.holds import TERMINAL_STATES, HoldEvent, HoldState
from stopper.domain.messages import OnwardKind, OnwardTransfer
from stopper.domain.trail import TRAIL_ACTOR, EdgeOutcome, TrailNode, TrailPlan, plan_trail

AT = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
KNOWN = {"BK01", "BK02", "BK03", "PI01", "PI02"}
CASE = uuid4()


def node(
    code: str,
    number: str,
    layer: int = 1,
    parent: TrailNode | None = None,
    asked: int = 10_000,
    state: HoldState = HoldState.STOPPED,
) -> TrailNode:
    parent_id = parent.hold_id if parent else None
    return TrailNode(uuid4(), code, number, layer, parent_id, asked, "CNY", state)


def moved(
    code: str | None,
    number: str | None,
    amount: int,
    minutes: int = 0,
    kind: OnwardKind = OnwardKind.TRANSFER,
) -> OnwardTransfer:
    return OnwardTransfer(kind, amount, AT - timedelta(minutes=60 - minutes), code, number)


def plan(
    parent: TrailNode,
    moved_on: int,
    onward: list[OnwardTransfer],
    nodes: list[TrailNode],
    max_depth: int = 5,
) -> TrailPlan:
    return plan_trail(
        parent=parent,
        moved_on=moved_on,
        onward=onward,
        case_id=CASE,
        case_nodes=nodes,
        known_institutions=KNOWN,
        max_depth=max_depth,
        at=AT,
    )


def test_each_onward_transfer_becomes_a_hold_one_layer_deeper() -> None:
    a = node("BK01", "1111")
    result = plan(a, 10_000, [moved("PI01", "2222", 6_000), moved("BK02", "3333", 4_000, 1)], [a])
    assert [
        (h.institution_code, h.layer, h.amount_asked, h.parent_id) for h in result.new_holds
    ] == [
        ("PI01", 2, 6_000, a.hold_id),
        ("BK02", 2, 4_000, a.hold_id),
    ]
    assert [e.outcome for e in result.edges] == [EdgeOutcome.FOLLOWED] * 2
    assert [b.to_state.value for b in result.births] == ["requested", "requested"]


def test_tracing_is_capped_at_what_left_the_account_in_time_order() -> None:
    a = node("BK01", "1111")
    onward = [moved("BK02", "3333", 5_000, minutes=2), moved("PI01", "2222", 8_000, minutes=1)]
    result = plan(a, 10_000, onward, [a])
    assert [(h.institution_code, h.amount_asked) for h in result.new_holds] == [
        ("PI01", 8_000),
        ("BK02", 2_000),
    ]
    late = plan(a, 8_000, [*onward, moved("BK03", "4444", 100, minutes=3)], [a])
    assert late.edges[-1].outcome is EdgeOutcome.NOTHING_LEFT


def test_two_paths_to_one_account_are_one_hold_with_the_caps_summed() -> None:
    a = node("BK01", "1111")
    b = node("BK02", "2222")
    c = node("PI01", "3333", layer=2, parent=b, asked=3_000)
    result = plan(
        a,
        10_000,
        [moved("PI01", "3333", 4_000), moved("BK03", "9", 1_000, 1), moved("BK03", "9", 2_000, 2)],
        [a, b, c],
    )
    assert result.raised == {c.hold_id: 7_000}
    assert [(h.institution_code, h.amount_asked) for h in result.new_holds] == [("BK03", 3_000)]
    assert [e.outcome for e in result.edges] == [
        EdgeOutcome.MERGED,
        EdgeOutcome.FOLLOWED,
        EdgeOutcome.MERGED,
    ]
    # The existing hold's raise is an event in its audit; the new hold is born with the sum.
    [merge] = result.merges
    assert (merge.hold_id, merge.event, merge.from_state, merge.to_state) == (
        c.hold_id,
        HoldEvent.MERGED,
        HoldState.STOPPED,
        HoldState.STOPPED,
    )
    assert (merge.actor, merge.at) == (TRAIL_ACTOR, AT)
    assert "4000 more asked, 7000 in all" in merge.cause


@pytest.mark.parametrize("state", sorted(TERMINAL_STATES))
def test_a_hold_whose_stop_is_over_is_not_asked_for_more(state: HoldState) -> None:
    a = node("BK01", "1111")
    done = node("PI01", "3333", asked=3_000, state=state)
    result = plan(a, 10_000, [moved("PI01", "3333", 4_000)], [a, done])
    assert result.raised == {} and result.merges == []
    assert [(e.outcome, e.to_hold_id, e.amount_traced) for e in result.edges] == [
        (EdgeOutcome.MERGED, done.hold_id, 4_000)
    ]


@pytest.mark.parametrize("state", [HoldState.REQUESTED, HoldState.SENT, HoldState.EXPIRED])
def test_a_hold_not_over_is_asked_for_more_whatever_its_state(state: HoldState) -> None:
    a = node("BK01", "1111")
    b = node("PI01", "3333", asked=3_000, state=state)
    result = plan(
        a, 10_000, [moved("PI01", "3333", 4_000), moved("PI01", "3333", 1_000, 1)], [a, b]
    )
    assert result.raised == {b.hold_id: 8_000}
    assert [(m.from_state, m.to_state) for m in result.merges] == [(state, state)] * 2


def test_money_coming_back_along_its_own_path_is_not_followed() -> None:
    a = node("BK01", "1111")
    b = node("PI01", "2222", layer=2, parent=a)
    result = plan(b, 5_000, [moved("BK01", "1111", 5_000)], [a, b])
    assert result.new_holds == [] and result.raised == {}
    assert result.edges[0].outcome is EdgeOutcome.CYCLE


def test_depth_bound_cash_and_unknown_institutions() -> None:
    deep = node("BK01", "1111", layer=5)
    result = plan(
        deep,
        9_000,
        [
            moved("BK02", "2222", 3_000),
            moved(None, None, 3_000, 1, kind=OnwardKind.CASH_WITHDRAWAL),
            moved("ZZ99", "3333", 3_000, 2),
        ],
        [deep],
    )
    assert result.new_holds == []
    assert [(e.outcome, e.amount_traced) for e in result.edges] == [
        (EdgeOutcome.DEPTH_LIMIT, 3_000),
        (EdgeOutcome.UNRECOVERABLE, 3_000),
        (EdgeOutcome.UNKNOWN_INSTITUTION, 3_000),
    ]


ACCOUNTS = [(code, str(n)) for code in sorted(KNOWN) for n in range(4)]
edge_lists = st.lists(
    st.tuples(st.sampled_from(ACCOUNTS), st.integers(1, 50_000), st.booleans()),
    max_size=4,
)


@settings(max_examples=200, deadline=None)
@given(
    graph=st.dictionaries(st.sampled_from(ACCOUNTS), edge_lists, min_size=1),
    first_amount=st.integers(1, 200_000),
    keep=st.dictionaries(st.sampled_from(ACCOUNTS), st.floats(0, 1)),
    max_depth=st.integers(1, 6),
)
def test_following_any_mule_graph_terminates_within_depth_and_never_over_asks(
    graph: dict[tuple[str, str], list[tuple[tuple[str, str], int, bool]]],
    first_amount: int,
    keep: dict[tuple[str, str], float],
    max_depth: int,
) -> None:
    """Expand the trail the way Stopper would, answer by answer, over a graph with cycles."""
    start = next(iter(graph))
    nodes = [node(*start, asked=first_amount)]
    queue = [nodes[0]]
    steps = 0
    while queue:
        steps += 1
        assert steps <= len(ACCOUNTS) * 4, "the trail did not terminate"
        current = next(n for n in nodes if n.hold_id == queue[0].hold_id)
        queue.pop(0)
        held = int(current.amount_asked * keep.get(current.key, 0.0))
        moved_on = current.amount_asked - held
        onward = [
            moved(*account, amount, minutes=i)
            if not cash
            else moved(None, None, amount, i, kind=OnwardKind.CASH_WITHDRAWAL)
            for i, (account, amount, cash) in enumerate(graph.get(current.key, []))
        ]
        result = plan(current, moved_on, onward, nodes, max_depth=max_depth)
        traced = sum(e.amount_traced for e in result.edges)
        assert traced <= moved_on
        for edge in result.edges:
            assert edge.amount_traced <= edge.transfer.amount
        for hold in result.new_holds:
            assert hold.layer == current.layer + 1 <= max_depth
            assert 0 < hold.amount_asked <= moved_on
        for hold_id, amount in result.raised.items():
            old = next(n for n in nodes if n.hold_id == hold_id)
            assert old.amount_asked < amount <= old.amount_asked + moved_on
        assert {m.hold_id for m in result.merges} == set(result.raised)
        nodes = [
            replace(n, amount_asked=result.raised.get(n.hold_id, n.amount_asked)) for n in nodes
        ]
        new_nodes = [TrailNode.of(h) for h in result.new_holds]
        nodes += new_nodes
        queue += new_nodes
        keys = [n.key for n in nodes]
        assert len(keys) == len(set(keys)), "one hold per account per case"
