"""Returning frozen funds to victims: who gets how much of one frozen hold.

Rules (DOMAIN.md):
- money traceable to one victim by the transfer record goes to that victim: when only one
  victim's money reached the account, that victim is the only claimant;
- otherwise the frozen amount is split pro rata to what each victim lost into the account;
- never more than was frozen, and never more to a victim than that victim is still owed (lost
  minus what earlier returns already paid back); a victim who reaches that cap gets exactly it,
  and the rest is shared among the others, still pro rata to what they lost into the account;
- amounts are whole cents. Remainder rule: every victim first gets the floor of the exact
  pro-rata share; the cents left over go one each to the largest fractional parts, ties to
  the larger claim, then to the victim reference in ascending order. So the shares add up to
  exactly what is paid out, and no share is a cent or more away from its exact value.
- when everything owed is less than what is frozen, every victim is paid in full and the rest
  stays frozen (`unallocated`) for a person to decide on.

Whose money is in which account (`traced_claims`):
- a first-level account holds what each victim transferred into it (the transfer records);
- money that moved on carries the mix of the account it left: an onward transfer of X from an
  account holding claims c is split among those victims by `allocate(X, c)`, so a deeper hold
  inherits the shares of the accounts above it; merges add up; an edge that closes a cycle or
  was not followed carries nothing.

A return order for a case (`plan_returns`) takes its frozen holds shallowest layer first (then
by hold id): each pays its victims what they have in that account, capped at what each is still
owed in all (lost minus everything earlier returns, and earlier holds of this order, paid).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from uuid import UUID


@dataclass(frozen=True, slots=True)
class Allocation:
    shares: dict[str, int]  # victim reference -> cents
    unallocated: int  # frozen cents nobody is owed

    @property
    def paid(self) -> int:
        return sum(self.shares.values())


def allocate(
    frozen: int, claims: Mapping[str, int], caps: Mapping[str, int] | None = None
) -> Allocation:
    """Split `frozen` cents among victims pro rata to their `claims` (cents each lost into the
    account), nobody getting more than their cap (default: the claim itself). A victim who
    reaches the cap gets exactly the cap and the rest is shared among the others, again pro
    rata to their claims."""
    if frozen < 0 or any(amount < 0 for amount in claims.values()):
        raise ValueError("amounts must not be negative")
    limit = {
        victim: min(amount, amount if caps is None else max(0, caps.get(victim, amount)))
        for victim, amount in claims.items()
    }
    active = {victim: claims[victim] for victim, cap in limit.items() if cap > 0}
    if sum(limit[v] for v in active) <= frozen:
        shares = {victim: limit[victim] for victim in active}
        return Allocation(shares=shares, unallocated=frozen - sum(shares.values()))
    exact: dict[str, Fraction] = {}
    left = Fraction(frozen)
    while active:
        weight = sum(active.values())
        capped = {v for v, w in active.items() if left * w / weight >= limit[v]}
        if not capped:
            exact.update({v: left * w / weight for v, w in active.items()})
            break
        for victim in capped:
            exact[victim] = Fraction(limit[victim])
            left -= limit[victim]
            del active[victim]
    shares = {victim: int(share) for victim, share in exact.items()}  # floor: shares >= 0
    cents_left = frozen - sum(shares.values())
    order = sorted(exact, key=lambda v: (-(exact[v] - shares[v]), -claims[v], v))
    for victim in order[:cents_left]:
        shares[victim] += 1
    return Allocation(shares=shares, unallocated=0)


@dataclass(frozen=True, slots=True)
class FlowEdge:
    """Money the trail followed from one hold's account to another's (cents)."""

    from_hold: UUID
    to_hold: UUID
    amount: int


def traced_claims(
    deposits: Mapping[UUID, Mapping[str, int]], edges: Iterable[FlowEdge]
) -> dict[UUID, dict[str, int]]:
    """Per hold, how many cents of each victim's money reached its account.

    `deposits`: for first-level holds, what each victim transferred into the account.
    """
    claims: dict[UUID, dict[str, int]] = {h: dict(v) for h, v in deposits.items()}
    incoming: dict[UUID, list[FlowEdge]] = {}
    outgoing: dict[UUID, list[FlowEdge]] = {}
    for edge in edges:
        if edge.from_hold == edge.to_hold or edge.amount <= 0:
            continue
        incoming.setdefault(edge.to_hold, []).append(edge)
        outgoing.setdefault(edge.from_hold, []).append(edge)
    waiting = {hold: len(into) for hold, into in incoming.items()}
    ready = sorted((set(claims) | set(outgoing)) - set(waiting), key=str)
    done: set[UUID] = set()
    while ready or waiting:
        if not ready:
            # A loop of merges: take the one closest to complete, with what has arrived so far.
            stuck = min(waiting, key=lambda h: (waiting[h], str(h)))
            ready.append(stuck)
        hold = ready.pop(0)
        waiting.pop(hold, None)
        if hold in done:
            continue
        done.add(hold)
        mix = claims.get(hold, {})
        for edge in outgoing.get(hold, ()):
            if edge.to_hold in done:
                continue  # closes a loop: already counted
            share = allocate(edge.amount, mix).shares
            into = claims.setdefault(edge.to_hold, {})
            for victim, cents in share.items():
                into[victim] = into.get(victim, 0) + cents
            waiting[edge.to_hold] = waiting.get(edge.to_hold, 1) - 1
            if waiting[edge.to_hold] <= 0:
                waiting.pop(edge.to_hold)
                ready.append(edge.to_hold)
    return {hold: {v: c for v, c in mix.items() if c > 0} for hold, mix in claims.items()}


@dataclass(frozen=True, slots=True)
class FrozenFunds:
    hold_id: UUID
    layer: int
    currency: str
    amount_frozen: int


@dataclass(frozen=True, slots=True)
class HoldReturn:
    hold_id: UUID
    currency: str
    allocation: Allocation


def plan_returns(
    holds: Sequence[FrozenFunds],
    claims: Mapping[UUID, Mapping[str, int]],
    lost: Mapping[tuple[str, str], int],
    already_paid: Mapping[tuple[str, str], int],
) -> list[HoldReturn]:
    """Allocate each frozen hold among its victims. `lost` and `already_paid` are keyed by
    (victim reference, currency)."""
    remaining = {key: max(0, amount - already_paid.get(key, 0)) for key, amount in lost.items()}
    plan = []
    for hold in sorted(holds, key=lambda h: (h.layer, str(h.hold_id))):
        mix = claims.get(hold.hold_id, {})
        owed = {victim: remaining.get((victim, hold.currency), 0) for victim in mix}
        allocation = allocate(hold.amount_frozen, mix, caps=owed)
        for victim, cents in allocation.shares.items():
            remaining[(victim, hold.currency)] -= cents
        plan.append(HoldReturn(hold.hold_id, hold.currency, allocation))
    return plan
