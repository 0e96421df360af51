"""Which holds name their account (`stopper.domain.mules`), as SQL the store's reads share.

The state a lifted hold is in is written into each statement, never passed as a parameter:
the holds-by-account index is partial (`NAMING_PREDICATE`), and PostgreSQL uses it only for a
statement whose condition it can see implies the index's, also in a prepared statement's
generic plan (with a parameter it could not, and would read the whole table instead).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, ScalarSelect, func, literal, literal_column, select
from sqlalchemy.orm import aliased

from stopper.adapters.db.models import HoldRow
from stopper.domain.mules import CASES_COUNTED, LIFTED

_LIFTED: list[ColumnElement[str]] = [literal_column(f"'{state.value}'") for state in sorted(LIFTED)]


def names_its_account(hold: Any = HoldRow) -> ColumnElement[bool]:
    """The hold (a `HoldRow`, or an alias of it) counts as its case naming the account: the
    condition of the partial index, as the index has it (`NAMING_PREDICATE`)."""
    naming: ColumnElement[bool] = hold.state.not_in(_LIFTED)
    return naming


def cases_naming(account_id: Any) -> ScalarSelect[int]:
    """How many cases name `account_id` (a column of an enclosing query), counted up to
    `CASES_COUNTED`: at most that many entries of the holds-by-account index are read, however
    many cases a hot account is in. One hold per account per case, so holds are cases."""
    other = aliased(HoldRow)
    some = (
        select(literal(1))
        .where(other.account_id == account_id, names_its_account(other))
        .limit(CASES_COUNTED)
        # Correlated to the enclosing query's row, though it sits in a FROM clause: every
        # dialect Stopper runs on lets a derived table refer to an outer query's columns.
        .correlate_except(other)
        .subquery()
    )
    return select(func.count()).select_from(some).scalar_subquery()
