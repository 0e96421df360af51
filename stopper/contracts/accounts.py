"""The mule-account registry as the API answers it (version 1). Account numbers appear masked
only, and come in request bodies only, never in a URL."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from stopper.contracts.amounts import DecimalAmount
from stopper.contracts.reports import AccountNumber, InstitutionCode
from stopper.domain.mules import (
    CASES_LISTED,
    FLAGGED_CASES_LISTED,
    LINKED_LISTED,
    RING_CASES,
    RING_LISTED,
    ROWS_READ,
)


class AccountLookupV1(BaseModel):
    """`POST /v1/accounts/lookup`: the account to look up, in the body."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    institution_code: InstitutionCode
    account_number: AccountNumber = Field(description="Personal data: answered masked only.")


class AccountCaseV1(BaseModel):
    case_id: UUID
    agency_code: str
    layer: int = Field(description="1: the report named the account; deeper: the money trail.")
    state: str = Field(description="The state of the case's hold on the account.")
    named_at: datetime = Field(description="When the case named the account (its hold's birth).")


class AccountRecordV1(BaseModel):
    """An account as the cases naming it say."""

    institution_code: str
    account: str = Field(description="Masked account number: only the last 4 characters.")
    flagged: bool = Field(description="A known mule: named in two or more cases.")
    cases: int = Field(description="The cases naming the account, reported or traced.")
    first_seen_at: datetime
    last_seen_at: datetime
    amount_stopped: dict[str, DecimalAmount] = Field(description="By currency, over all its holds.")
    recent_cases: list[AccountCaseV1] = Field(
        description=f"The newest first (up to {CASES_LISTED} in a look-up, "
        f"{FLAGGED_CASES_LISTED} in the flagged list)."
    )


class FlaggedAccountsV1(BaseModel):
    """Known mule accounts, the most recently named first."""

    accounts: list[AccountRecordV1]
    total: int = Field(description="Known mule accounts in all.")
    next_offset: int | None = Field(description="The `offset` of the next page; none at the end.")


class SharedAccountV1(BaseModel):
    institution_code: str
    account: str = Field(description="Masked account number.")


class LinkedCaseV1(BaseModel):
    case_id: UUID
    agency_code: str
    opened_at: datetime
    shared_accounts: list[SharedAccountV1]


class RingV1(BaseModel):
    """Every case connected to this one through shared accounts, however many steps away."""

    size: int = Field(description="Cases in the ring, this one included (1: no links).")
    case_ids: list[UUID] = Field(description=f"The others, nearest first (up to {RING_LISTED}).")


class LinkedCasesV1(BaseModel):
    """The cases sharing an account with this one, and its ring."""

    cases: list[LinkedCaseV1] = Field(description=f"Newest first (up to {LINKED_LISTED}).")
    total: int = Field(description="Cases sharing an account with this one.")
    ring: RingV1
    complete: bool = Field(
        description=f"False when the bounded search stopped early (at {RING_CASES} cases in the "
        f"ring or {ROWS_READ} holds read): then the counts are lower bounds."
    )
