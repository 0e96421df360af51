"""Messages between Stopper and the institutions (version 1).

Amounts are minor units in Python and decimal strings on the wire (`amounts.Amount`): an
institution reads ``"amount": "1250.00"`` and answers ``"amount_held": "1250.00"``; during the
transition an answer's JSON integer is still read as minor units, and counted."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from stopper.contracts.amounts import Amount, PositiveAmount
from stopper.domain.messages import (
    AnswerKind,
    InstitutionAnswer,
    OnwardKind,
    OnwardTransfer,
    OrderAnswer,
    OrderFreeze,
    OrderRelease,
    OrderReturn,
    RequestStop,
    StatusKind,
    StopStatus,
)
from stopper.domain.mules import CASES_COUNTED, FLAGGED_AT, counted, is_flagged


class _HoldRequestV1(BaseModel):
    """What every request about a hold tells the institution: which account, and the key that
    makes asking again harmless."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = 1
    hold_id: UUID
    case_id: UUID
    institution_code: str
    account_number: str
    currency: str
    idempotency_key: str
    requested_at: datetime


class StopSupplementV1(BaseModel):
    """Which part of a hold's stop a request is, when it is not the first: a supplement, asking
    for `amount` more on the stop already asked for under `adds_to` (the first request's
    idempotency key), because the money trail brought more there from `merged_from_hold_id`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    number: int = Field(ge=1, le=99, description="The hold's n-th supplement (in its key).")
    adds_to: Annotated[str, StringConstraints(min_length=1, max_length=128)] = Field(
        description="The idempotency key of the stop request this one adds to."
    )
    merged_from_hold_id: UUID = Field(
        description="The hold whose onward transfer reached this account again."
    )


class KnownMuleV1(BaseModel):
    """The account is a known mule: Stopper's cases name it more than once."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    cases: int = Field(
        ge=FLAGGED_AT,
        le=CASES_COUNTED,
        description=f"The cases naming the account (reported or found by the money trail), this "
        f"one included, counted up to {CASES_COUNTED} ({CASES_COUNTED} means at least as many).",
    )


class StopRequestV1(_HoldRequestV1):
    """Ask an institution for an emergency stop-payment on one account, for one hold: its first
    request, or (with `supplement`) more on a stop already asked for. A first request is sent
    without the `supplement` field, as before it existed."""

    amount: PositiveAmount = Field(description="What to stop, in the currency's major unit.")
    layer: int = Field(ge=1)
    generation: int = Field(
        default=0,
        ge=0,
        description="0 for the first stop of this hold; 1, 2 when it is deliberately re-applied "
        "after its stop lapsed or to renew it. A new generation is a new stop, never a retry.",
    )
    supplement: StopSupplementV1 | None = Field(
        default=None,
        # Institutions (and workers) that predate supplements forbid unknown fields: a first
        # request is written without it.
        exclude_if=lambda value: value is None,
        description="Present only on a supplement: hold `amount` more, besides what the request "
        "`adds_to` holds (its own idempotency key: answered, and asked about, on its own).",
    )
    known_mule: KnownMuleV1 | None = Field(
        default=None,
        exclude_if=lambda value: value is None,  # left out otherwise, as `supplement` is
        description="Present only when the account is a known mule (named in two or more of "
        "Stopper's cases); such a request was sent ahead of others. Left out otherwise, so an "
        "institution that does not know the field never sees it.",
    )

    @classmethod
    def from_command(cls, command: RequestStop) -> StopRequestV1:
        part = command.supplement
        if part is None:
            request = cls.model_validate(command, from_attributes=True)
        else:
            first = cls.model_validate(replace(command, supplement=None), from_attributes=True)
            supplement = StopSupplementV1(
                number=part.number, adds_to=part.adds_to, merged_from_hold_id=part.merged_from
            )
            request = first.model_copy(update={"supplement": supplement})
        if is_flagged(command.mule_cases):
            known = KnownMuleV1(cases=counted(command.mule_cases))
            request = request.model_copy(update={"known_mule": known})
        return request


class OnwardTransferV1(BaseModel):
    """Where money went before the stop: another account, or out as cash."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    kind: Literal["transfer", "cash_withdrawal"] = "transfer"
    institution_code: Annotated[str, StringConstraints(pattern=r"^[A-Z0-9]{2,12}$")] | None = None
    account_number: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{4,34}$")] | None = None
    amount: PositiveAmount = Field(description="What moved, in the hold's currency.")
    transferred_at: datetime

    @model_validator(mode="after")
    def _transfer_names_an_account(self) -> OnwardTransferV1:
        if self.kind == "transfer" and not (self.institution_code and self.account_number):
            raise ValueError("an onward transfer names the receiving institution and account")
        return self

    def to_domain(self) -> OnwardTransfer:
        return OnwardTransfer(
            OnwardKind(self.kind),
            self.amount,
            self.transferred_at,
            self.institution_code,
            self.account_number,
        )


class _OutcomeV1(BaseModel):
    """What every answer about a stop says: the outcome, what is held, where the rest went."""

    status: str
    amount_held: Amount | None = Field(
        default=None, description="What is actually held, in the request's currency."
    )
    reason: Annotated[str, StringConstraints(max_length=500)] | None = None
    onward: list[OnwardTransferV1] = Field(
        default_factory=list,
        max_length=50,
        description="With `stopped`: money that left the account before the stop.",
    )

    @model_validator(mode="after")
    def _stopped_says_how_much(self) -> _OutcomeV1:
        if self.status == "stopped" and self.amount_held is None:
            raise ValueError("a stopped answer must say amount_held")
        return self

    def to_domain(self) -> InstitutionAnswer:
        return InstitutionAnswer(
            AnswerKind(self.status),
            self.amount_held,
            self.reason,
            tuple(t.to_domain() for t in self.onward),
        )


class StopAnswerV1(_OutcomeV1):
    """An institution's answer to a stop request: at once (HTTP 200) or `accepted` (HTTP 202)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    status: Literal["stopped", "not_found", "rejected", "accepted"]


class CallbackV1(_OutcomeV1):
    """A signed callback: the later answer to a stop request the institution accepted."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    schema_version: Literal[1] = 1
    hold_id: UUID
    idempotency_key: Annotated[str, StringConstraints(max_length=128)]
    status: Literal["stopped", "not_found", "rejected"]
    answered_at: datetime


class StopStatusV1(_OutcomeV1):
    """An institution's record of one stop request, asked by its idempotency key: the answer to
    `GET {endpoint}/stops/{idempotency_key}` (200 with the outcome, 202 `pending`, 404 when it
    never received the request) and one entry of `POST {endpoint}/stops/status`."""

    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    hold_id: UUID | None = Field(default=None, description="Required with an outcome.")
    status: Literal["stopped", "not_found", "rejected", "pending", "unknown", "lifted"] = Field(
        description="The request's outcome (stopped, not_found, rejected), pending, unknown "
        "(never received), or lifted: it was carried out and its stop no longer stands "
        "(released, or lifted by the institution)."
    )

    @model_validator(mode="after")
    def _outcome_names_its_hold(self) -> StopStatusV1:
        if self.status in ("stopped", "not_found", "rejected", "lifted") and self.hold_id is None:
            raise ValueError("an outcome names the hold it is about")
        return self

    def to_status(self) -> StopStatus:
        if self.status == "pending":
            return StopStatus(self.idempotency_key, StatusKind.PENDING, self.hold_id)
        if self.status == "unknown":
            return StopStatus(self.idempotency_key, StatusKind.UNKNOWN, self.hold_id)
        if self.status == "lifted":
            return StopStatus(self.idempotency_key, StatusKind.LIFTED, self.hold_id)
        return StopStatus(self.idempotency_key, StatusKind.ANSWERED, self.hold_id, self.to_domain())


STATUS_QUERY_MAX_KEYS = 1000


class StopStatusQueryV1(BaseModel):
    """`POST {endpoint}/stops/status`: the outcomes of many stop requests in one request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    idempotency_keys: list[Annotated[str, StringConstraints(min_length=1, max_length=128)]] = Field(
        min_length=1, max_length=STATUS_QUERY_MAX_KEYS
    )


class StopStatusesV1(BaseModel):
    """The answer to `StopStatusQueryV1`: one entry per key asked (`unknown` when the
    institution never received it)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    statuses: list[StopStatusV1] = Field(max_length=STATUS_QUERY_MAX_KEYS)


class CallbackAcceptedV1(BaseModel):
    hold_id: UUID
    outcome: Literal["applied", "repeated"] = Field(
        description="applied: the hold moved; repeated: it already said this."
    )


class CallbackItemV1(BaseModel):
    idempotency_key: str
    hold_id: UUID | None
    outcome: str = Field(
        description="applied: the hold moved; repeated: it already said this; pending: nothing "
        "to apply yet; else the reason this answer was refused (invalid, not_sent_here, "
        "conflict, replayed)."
    )
    detail: str | None = Field(default=None, description="Why it was refused.")


class CallbackItemsAcceptedV1(BaseModel):
    """What became of each answer of an ISO 20022 callback (a camt.029), in document order."""

    message_id: str = Field(description="The camt.029's own Assgnmt/Id.")
    items: list[CallbackItemV1]


class FreezeRequestV1(_HoldRequestV1):
    """Turn an emergency stop into a formal freeze, on the strength of a legal document."""

    amount: Amount = Field(description="What the stop holds.")
    legal_document_ref: str
    renewal: bool = Field(default=False, description="Extends a freeze already in force.")

    @classmethod
    def from_command(cls, command: OrderFreeze) -> FreezeRequestV1:
        return cls.model_validate(command, from_attributes=True)


class FreezeAnswerV1(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    status: Literal["frozen", "rejected"]
    amount_frozen: Amount | None = None
    reason: Annotated[str, StringConstraints(max_length=500)] | None = None

    @model_validator(mode="after")
    def _frozen_says_how_much(self) -> FreezeAnswerV1:
        if self.status == "frozen" and self.amount_frozen is None:
            raise ValueError("a frozen answer must say amount_frozen")
        return self

    def to_domain(self) -> OrderAnswer:
        return OrderAnswer(self.status == "frozen", self.amount_frozen or 0, self.reason)


class PayoutV1(BaseModel):
    """Pay this much of the frozen funds to this victim's own account."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    victim_ref: str
    institution_code: str
    account_number: str
    amount: PositiveAmount


class ReturnRequestV1(_HoldRequestV1):
    """Return frozen funds to the victims (ISO 20022 would call it a pacs.004 payment return)."""

    amount: PositiveAmount = Field(description="The sum of the payouts.")
    legal_document_ref: str
    payouts: list[PayoutV1] = Field(min_length=1)

    @classmethod
    def from_command(cls, command: OrderReturn) -> ReturnRequestV1:
        return cls.model_validate(command, from_attributes=True)  # the payouts too


class ReturnAnswerV1(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    status: Literal["returned", "rejected"]
    amount_returned: Amount | None = None
    reason: Annotated[str, StringConstraints(max_length=500)] | None = None

    @model_validator(mode="after")
    def _returned_says_how_much(self) -> ReturnAnswerV1:
        if self.status == "returned" and self.amount_returned is None:
            raise ValueError("a returned answer must say amount_returned")
        return self

    def to_domain(self) -> OrderAnswer:
        return OrderAnswer(self.status == "returned", self.amount_returned or 0, self.reason)


class ReleaseRequestV1(_HoldRequestV1):
    """Lift a hold: the report was withdrawn or the account cleared. The institution releases
    the hold's stop (or freeze), of any generation up to `generation`, and carries out none of
    the hold's stop requests that reach it afterwards (one may still be on its way)."""

    ground: Literal["report_withdrawn", "account_cleared"]
    generation: int = Field(ge=0, description="The hold's newest stop generation.")

    @classmethod
    def from_command(cls, command: OrderRelease) -> ReleaseRequestV1:
        return cls.model_validate(command, from_attributes=True)


class ReleaseAnswerV1(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    status: Literal["released", "rejected"]
    amount_released: Amount | None = Field(
        default=None, description="What the stop held and no longer holds (0.00: nothing)."
    )
    reason: Annotated[str, StringConstraints(max_length=500)] | None = None

    @model_validator(mode="after")
    def _released_says_how_much(self) -> ReleaseAnswerV1:
        if self.status == "released" and self.amount_released is None:
            raise ValueError("a released answer must say amount_released")
        return self

    def to_domain(self) -> OrderAnswer:
        return OrderAnswer(self.status == "released", self.amount_released or 0, self.reason)
