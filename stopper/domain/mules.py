"""Mule accounts: accounts named in more than one case.

Theory of operation
-------------------
A case *names* an account when it has a hold on it: the victims paid into it (the report named
it) or the money trail found money moved on to it. Either way a case names an account once (one
hold per account per case, `stopper.domain.cases.hold_id_for`). An account named in
`FLAGGED_AT` cases or more is a *known mule* (flagged): the same account turning up in report
after report is the registry police and banks keep (India's Suspect Registry, the UK's mule
markers), and Stopper treats it accordingly (its stop requests go first and say so).

A flag is never stored: it is read from the holds, each of which has its case and its account.
Two cases recorded at the same moment by two workers therefore flag their account as soon as
both have committed, with no counter to keep in step and no lock to take on the intake path (a
counter kept by intake would serialise every intake naming a hot account). A hold being
released or released (the report withdrawn, the account cleared: `LIFTED`) no longer names its
account: the decision to lift it is the evidence, whether or not the institution confirmed.

A stop request says in how many cases its account is named, counted up to `CASES_COUNTED`: the
institution needs to know the account is a mule, not whether it is the tenth case or the
thousandth, and counting further would make a hot account cost every batch that names it
(each case counted is an index entry read, and, for holds written since the table was last
vacuumed, a heap page: bench/README.md, "Mule flags").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Final
from uuid import UUID

from stopper.domain.accounts import account_id
from stopper.domain.cases import Case
from stopper.domain.holds import HoldEvent, HoldState, leads_to

FLAGGED_AT: Final = 2  # cases naming an account that make it a known mule
CASES_COUNTED: Final = 10  # a stop request's count stops here ("10 or more")
# A hold in these states names its account no longer: where a release leads (from the table).
LIFTED: Final[frozenset[HoldState]] = frozenset(
    leads_to(event) for event in (HoldEvent.RELEASE_ORDERED, HoldEvent.RELEASE_CONFIRMED)
)

# How far the registry's answers go (`stopper.app.mules`): a giant ring or a hot account
# must not make one request read the world.
RING_CASES: Final = 200  # a case's ring stops growing here
ROWS_READ: Final = 2_000  # namings (holds) one case's links may read, in all
LINKED_LISTED: Final = 50  # directly linked cases listed (all found are counted)
RING_LISTED: Final = 100  # ring members listed (all found are counted)
CASES_LISTED: Final = 100  # cases listed with a looked-up account
FLAGGED_CASES_LISTED: Final = 10  # cases listed with each account of the flagged list


def names_its_account(state: HoldState) -> bool:
    """Whether a hold in `state` counts as its case naming the account."""
    return state not in LIFTED


def is_flagged(cases: int) -> bool:
    """An account named in `cases` cases is a known mule."""
    return cases >= FLAGGED_AT


def counted(cases: int) -> int:
    """`cases` as a stop request says it: at most `CASES_COUNTED`."""
    return min(cases, CASES_COUNTED)


def mule_cases_of(new: Sequence[Case], earlier_cases: Mapping[UUID, int]) -> dict[UUID, int]:
    """The holds of `new` cases (recorded together) whose account is a known mule, by hold id,
    with the cases naming it (as a stop request says it): the cases that named it before
    (`earlier_cases`, by account id) and the new ones naming it."""
    accounts = {
        h.id: account_id(h.institution_code, h.account_number) for c in new for h in c.holds
    }
    in_batch = Counter(accounts.values())
    cases = {
        hold: earlier_cases.get(account, 0) + in_batch[account]
        for hold, account in accounts.items()
    }
    return {hold: counted(n) for hold, n in cases.items() if is_flagged(n)}
