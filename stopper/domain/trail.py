"""The money trail: when a stopped account's money already moved on, follow it one layer deeper.

Rules (DOMAIN.md):
- each onward transfer becomes a hold on the receiving account, one layer below the account it
  left, asking for at most the amount that moved there; all onward transfers together are
  traced up to what left the account (asked minus held), in the order they happened, so a
  downstream account is never asked for more than the traced amount;
- an account that already has a hold in the case, reached by another path, keeps its one hold
  and the caps are summed (a merge: the hold's ``merged`` event, in its audit); a hold whose stop
  is over (a state the hold table allows no merge in) is not asked for more, the edge is kept;
  what the institution is then sent is the hold's to say (`holds.merge_asks`): the raised first
  request, or a supplement for each merge (`supplements`);
- money that returns to an account on its own path (a cycle) is not followed again;
- below the maximum depth nothing more is followed (default 5 layers);
- a cash withdrawal is recorded as unrecoverable and not followed; so is a transfer to an
  institution Stopper does not know.
Every onward transfer, followed or not, is kept as an edge of the trail with its outcome.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from stopper.domain.accounts import AccountRef
from stopper.domain.cases import hold_id_for
from stopper.domain.holds import Hold, HoldEvent, HoldState, Transition, can
from stopper.domain.messages import OnwardKind, OnwardTransfer

TRAIL_ACTOR = "stopper:money-trail"


class EdgeOutcome(enum.StrEnum):
    FOLLOWED = "followed"
    MERGED = "merged"
    CYCLE = "cycle"
    DEPTH_LIMIT = "depth_limit"
    UNRECOVERABLE = "unrecoverable"
    UNKNOWN_INSTITUTION = "unknown_institution"
    NOTHING_LEFT = "nothing_left"  # earlier transfers already account for all that moved


@dataclass(frozen=True, slots=True)
class TrailNode:
    """A hold of the case as the trail needs to see it."""

    hold_id: UUID
    institution_code: str
    account_number: str
    layer: int
    parent_id: UUID | None
    amount_asked: int
    currency: str
    state: HoldState

    @property
    def key(self) -> tuple[str, str]:
        return (self.institution_code, self.account_number)

    @classmethod
    def of(cls, hold: Hold) -> TrailNode:
        return cls(
            hold.id,
            hold.institution_code,
            hold.account_number,
            hold.layer,
            hold.parent_id,
            hold.amount_asked,
            hold.currency,
            hold.state,
        )


@dataclass(frozen=True, slots=True)
class TrailEdge:
    from_hold_id: UUID
    to_hold_id: UUID | None
    transfer: OnwardTransfer
    amount_traced: int
    outcome: EdgeOutcome


@dataclass(slots=True)
class TrailPlan:
    new_holds: list[Hold] = field(default_factory=list)
    births: list[Transition] = field(default_factory=list)
    raised: dict[UUID, int] = field(default_factory=dict)  # hold id -> new amount asked
    merges: list[Transition] = field(default_factory=list)  # the raises, for the holds' audit
    # Each raise's amount, in the order of `merges` (one supplement each, where one is owed).
    merged_amounts: list[int] = field(default_factory=list)
    edges: list[TrailEdge] = field(default_factory=list)


def plan_trail(
    *,
    parent: TrailNode,
    moved_on: int,
    onward: Sequence[OnwardTransfer],
    case_id: UUID,
    case_nodes: Sequence[TrailNode],
    known_institutions: Collection[str],
    max_depth: int,
    at: datetime,
) -> TrailPlan:
    """What following `onward` from `parent` changes in the case (see the module's rules).

    `moved_on` is what the institution could not hold: the most that can be traced onward.
    """
    plan = TrailPlan()
    by_key = {node.key: node for node in case_nodes}
    nodes = {node.hold_id: node for node in case_nodes}
    path = _path_keys(parent, nodes)
    budget = max(0, moved_on)
    planned: dict[tuple[str, str], Hold] = {}
    for transfer in sorted(onward, key=lambda t: t.transferred_at):
        traced = min(transfer.amount, budget)
        budget -= traced
        outcome, target = _route(
            transfer, traced, parent, path, by_key, planned, known_institutions, max_depth
        )
        if outcome is EdgeOutcome.FOLLOWED:
            assert transfer.institution_code and transfer.account_number
            account = AccountRef(transfer.institution_code, transfer.account_number)
            hold = Hold(
                id=hold_id_for(case_id, account),
                case_id=case_id,
                institution_code=account.institution_code,
                account_number=account.account_number,
                currency=parent.currency,
                amount_asked=traced,
                layer=parent.layer + 1,
                parent_id=parent.hold_id,
            )
            planned[account.key] = hold
            birth = Transition(
                hold.id,
                None,
                HoldState.REQUESTED,
                None,
                f"money moved on from layer {parent.layer}",
                TRAIL_ACTOR,
                at,
            )
            hold.history.append(birth)
            plan.new_holds.append(hold)
            plan.births.append(birth)
            target = hold.id
        elif outcome is EdgeOutcome.MERGED and target is not None:
            key = (transfer.institution_code or "", transfer.account_number or "")
            if key in planned:
                # Not born yet: its birth, and its first request, ask for the sum.
                planned[key].amount_asked += traced
                planned[key].amount_first_request += traced
            elif can(nodes[target].state, HoldEvent.MERGED):
                asked = plan.raised.get(target, nodes[target].amount_asked) + traced
                plan.raised[target] = asked
                plan.merges.append(
                    Transition.of(
                        target,
                        nodes[target].state,
                        HoldEvent.MERGED,
                        cause=f"money moved on from layer {parent.layer} reached this account"
                        f" by another path: {traced} more asked, {asked} in all",
                        actor=TRAIL_ACTOR,
                        at=at,
                    )
                )
                plan.merged_amounts.append(traced)
        plan.edges.append(TrailEdge(parent.hold_id, target, transfer, traced, outcome))
    return plan


def _route(
    transfer: OnwardTransfer,
    traced: int,
    parent: TrailNode,
    path: set[tuple[str, str]],
    by_key: Mapping[tuple[str, str], TrailNode],
    planned: Mapping[tuple[str, str], Hold],
    known_institutions: Collection[str],
    max_depth: int,
) -> tuple[EdgeOutcome, UUID | None]:
    if transfer.kind is OnwardKind.CASH_WITHDRAWAL:
        return EdgeOutcome.UNRECOVERABLE, None
    if traced <= 0:
        return EdgeOutcome.NOTHING_LEFT, None
    code, number = transfer.institution_code, transfer.account_number
    if not code or not number or code not in known_institutions:
        return EdgeOutcome.UNKNOWN_INSTITUTION, None
    key = (code, number)
    if key in path:
        return EdgeOutcome.CYCLE, by_key[key].hold_id
    if key in planned:
        return EdgeOutcome.MERGED, planned[key].id
    if key in by_key:
        return EdgeOutcome.MERGED, by_key[key].hold_id
    if parent.layer >= max_depth:
        return EdgeOutcome.DEPTH_LIMIT, None
    return EdgeOutcome.FOLLOWED, None


def _path_keys(parent: TrailNode, nodes: Mapping[UUID, TrailNode]) -> set[tuple[str, str]]:
    """The accounts from the first-level hold down to `parent`: money arriving at one of them
    again has gone round in a circle."""
    keys: set[tuple[str, str]] = set()
    node: TrailNode | None = parent
    while node is not None and node.key not in keys:
        keys.add(node.key)
        node = nodes.get(node.parent_id) if node.parent_id else None
    return keys
