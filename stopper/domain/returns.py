"""Returning frozen funds to victims: who gets how much of one frozen hold.

Rules (DOMAIN.md):
- money traceable to one victim by the transfer record goes to that victim: when only one
  victim's money reached the account, that victim is the only claimant;
- otherwise the frozen amount is split pro rata to what each victim lost into the account;
- never more than was frozen, and never more to a victim than that victim is still owed (lost
  minus what earlier returns already paid back);
- amounts are whole cents. Remainder rule: every victim first gets the floor of the exact
  pro-rata share; the cents left over go one each to the largest fractional parts, ties to
  the larger claim, then to the victim reference in ascending order. So the shares add up to
  exactly what is paid out, and no share is a cent or more away from its exact value.
- when everything owed is less than what is frozen, every victim is paid in full and the rest
  stays frozen (`unallocated`) for a person to decide on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True, slots=True)
class Allocation:
    shares: dict[str, int]  # victim reference -> cents
    unallocated: int  # frozen cents nobody is owed

    @property
    def paid(self) -> int:
        return sum(self.shares.values())


def allocate(frozen: int, owed: Mapping[str, int]) -> Allocation:
    """Split `frozen` cents among victims by what each is still `owed` (cents)."""
    if frozen < 0 or any(amount < 0 for amount in owed.values()):
        raise ValueError("amounts must not be negative")
    claims = {victim: amount for victim, amount in owed.items() if amount > 0}
    total = sum(claims.values())
    if total <= frozen:
        return Allocation(shares=dict(claims), unallocated=frozen - total)
    exact = {victim: Fraction(frozen * amount, total) for victim, amount in claims.items()}
    shares = {victim: int(share) for victim, share in exact.items()}  # floor: shares >= 0
    left = frozen - sum(shares.values())
    order = sorted(claims, key=lambda v: (-(exact[v] - shares[v]), -claims[v], v))
    for victim in order[:left]:
        shares[victim] += 1
    return Allocation(shares=shares, unallocated=0)
