"""The fraud report as police intake systems send it (version 1).

Validation needs the institution registry to know which receiving institutions exist; pass it as
``context={"registry": registry}`` to `model_validate_json`. Without it the packaged registry is
used. Error messages never repeat account numbers or names.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from stopper.contracts.amounts import AMOUNT_SCHEMA, MINOR_DIGITS, NOT_AN_AMOUNT, note_legacy
from stopper.registry import Registry, load_registry

# A report filed now may carry a clock a little ahead of ours.
CLOCK_SKEW = timedelta(minutes=5)
MAX_VICTIMS = 100
MAX_TRANSFERS = 500
SUPPORTED_CURRENCIES = frozenset(MINOR_DIGITS)  # all with 2 minor digits

Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
InstitutionCode = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9]{2,12}$")]
AccountNumber = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{4,34}$")]
PersonName = Annotated[str, StringConstraints(min_length=1, max_length=140, strip_whitespace=True)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
# At most 14 digits, 2 of them decimals (`max_digits`, `decimal_places` below).
_REPORTED_PATTERN = r"[0-9]{1,12}(\.[0-9]{1,2})?"
_REPORTED_AMOUNT = re.compile(_REPORTED_PATTERN)


def _reported_amount(value: object, info: ValidationInfo) -> object:
    """A decimal string (`amounts`); a JSON number is the transition's old form (major units,
    as always), read and counted."""
    if isinstance(value, str):
        if _REPORTED_AMOUNT.fullmatch(value) is None:
            raise ValueError(NOT_AN_AMOUNT)
    elif info.mode == "json" and isinstance(value, int | float) and not isinstance(value, bool):
        note_legacy(info)
    return value


Amount = Annotated[
    Decimal,
    BeforeValidator(_reported_amount),
    Field(gt=0, max_digits=14, decimal_places=2),
    WithJsonSchema({**AMOUNT_SCHEMA, "pattern": f"^{_REPORTED_PATTERN}$"}),
]
Channel = Literal[
    "bank_transfer",
    "mobile_banking",
    "online_banking",
    "third_party_payment",
    "atm",
    "counter",
    "other",
]

_PACKAGED_REGISTRY: Registry | None = None


def _registry(info: ValidationInfo) -> Registry:
    global _PACKAGED_REGISTRY
    context = info.context or {}
    registry = context.get("registry")
    if isinstance(registry, Registry):
        return registry
    if _PACKAGED_REGISTRY is None:
        _PACKAGED_REGISTRY = load_registry()
    return _PACKAGED_REGISTRY


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class AgencyV1(_Strict):
    code: Identifier = Field(description="The reporting police agency's code.")
    name: str = Field(min_length=1, max_length=200)


class VictimV1(_Strict):
    victim_id: Identifier = Field(description="The victim's reference within this report.")
    name: PersonName | None = Field(default=None, description="Personal data: never logged.")


class AccountV1(_Strict):
    institution_code: InstitutionCode
    account_number: AccountNumber = Field(description="Personal data: shown masked only.")
    name: PersonName | None = Field(
        default=None, description="Account holder as the victim knows it."
    )


class ReceivingAccountV1(AccountV1):
    @field_validator("institution_code")
    @classmethod
    def _known_institution(cls, code: str, info: ValidationInfo) -> str:
        if code not in _registry(info):
            raise ValueError(f"unknown institution code {code!r}")
        return code


class TransferV1(_Strict):
    victim_id: Identifier
    victim_account: AccountV1
    receiving_account: ReceivingAccountV1
    amount: Amount
    currency: Currency
    transferred_at: AwareDatetime
    channel: Channel
    reference: Annotated[str, StringConstraints(max_length=140)] | None = None

    @field_validator("currency")
    @classmethod
    def _supported_currency(cls, currency: str) -> str:
        if currency not in SUPPORTED_CURRENCIES:
            raise ValueError(f"currency {currency} is not supported")
        return currency

    @property
    def amount_minor(self) -> int:
        return int(self.amount * 100)


class FraudReportV1(_Strict):
    """A police fraud report: who lost what to which accounts.

    `report_id` is the intake system's idempotency key.
    """

    schema_version: Literal[1] = 1
    report_id: Identifier = Field(description="The intake system's id; reposting it is harmless.")
    agency: AgencyV1
    reported_at: AwareDatetime
    victims: list[VictimV1] = Field(min_length=1, max_length=MAX_VICTIMS)
    transfers: list[TransferV1] = Field(min_length=1, max_length=MAX_TRANSFERS)

    @model_validator(mode="after")
    def _consistent(self) -> FraudReportV1:
        now = datetime.now(UTC)
        if self.reported_at > now + CLOCK_SKEW:
            raise ValueError("reported_at is in the future")
        victim_ids = [v.victim_id for v in self.victims]
        if len(set(victim_ids)) != len(victim_ids):
            raise ValueError("victim_id values must be unique within a report")
        known = set(victim_ids)
        currencies: dict[tuple[str, str], str] = {}
        for index, transfer in enumerate(self.transfers):
            where = f"transfers[{index}]"
            if transfer.victim_id not in known:
                raise ValueError(f"{where}.victim_id names no victim of this report")
            if transfer.transferred_at > self.reported_at + CLOCK_SKEW:
                raise ValueError(f"{where}.transferred_at is after reported_at")
            key = (
                transfer.receiving_account.institution_code,
                transfer.receiving_account.account_number,
            )
            if currencies.setdefault(key, transfer.currency) != transfer.currency:
                raise ValueError(f"{where}: one receiving account in two currencies")
        return self

    def fingerprint(self) -> str:
        """A digest of the content, to tell a harmless repost from a reused report_id."""
        canonical = self.model_dump_json(exclude_none=False).encode()
        return hashlib.sha256(canonical).hexdigest()


class ReportAcceptedV1(BaseModel):
    """What intake answers: the case id is known before any consumer runs."""

    report_id: str
    case_id: str
    status_url: str
    duplicate: bool = Field(
        default=False, description="True when this report_id was already received."
    )


class ErrorDetailV1(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorV1(BaseModel):
    detail: str
    errors: list[ErrorDetailV1] = Field(default_factory=list)
