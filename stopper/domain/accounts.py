"""Accounts as the domain sees them, and how they may be shown."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from uuid import NAMESPACE_URL, UUID, uuid5

_ACCOUNT_NAMESPACE = uuid5(NAMESPACE_URL, "urn:stopper:account")


@dataclass(frozen=True, slots=True)
class AccountRef:
    """An account at an institution. `name` is personal data: never log it."""

    institution_code: str
    account_number: str
    name: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.institution_code, self.account_number)

    @property
    def id(self) -> UUID:
        return account_id(self.institution_code, self.account_number)

    @property
    def masked(self) -> str:
        return mask_account_number(self.account_number)

    def __repr__(self) -> str:
        # Reprs end up in logs and tracebacks: show only the masked form.
        return f"AccountRef({self.institution_code}:{self.masked})"


@lru_cache(maxsize=1 << 16)
def account_id(institution_code: str, account_number: str) -> UUID:
    """A stable id for an account, the same in every case that names it. Kept for the accounts
    seen last: intake asks for one account's id several times (its row, its hold's, the mule
    registry's), and a uuid5 costs about 5 us."""
    return uuid5(_ACCOUNT_NAMESPACE, f"{institution_code}:{account_number}")


def mask_account_number(account_number: str) -> str:
    """Only the last four characters stay readable: ``6222021234567890`` -> ``****7890``."""
    if len(account_number) <= 4:
        return "****"
    return "****" + account_number[-4:]
