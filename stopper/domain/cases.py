"""The case aggregate: one report -> one case -> one hold per distinct receiving account."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import NAMESPACE_URL, UUID, uuid5

from stopper.domain.accounts import AccountRef
from stopper.domain.errors import InconsistentReport, InvalidAmount
from stopper.domain.holds import Hold, HoldState, Transition
from stopper.domain.messages import CaseOpened, DomainEvent, HoldRequested, RequestStop

_CASE_NAMESPACE = uuid5(NAMESPACE_URL, "urn:stopper:case")
INTAKE_ACTOR = "stopper:intake"


def case_id_for(report_id: str) -> UUID:
    """The case id follows from the report id, so intake can answer it before any consumer runs."""
    return uuid5(_CASE_NAMESPACE, report_id)


def hold_id_for(case_id: UUID, account: AccountRef) -> UUID:
    """One hold per account per case, with an id every retry and redelivery agrees on."""
    return uuid5(case_id, f"hold:{account.institution_code}:{account.account_number}")


@dataclass(frozen=True, slots=True)
class TransferFact:
    """One victim's transfer into a receiving account, in minor units."""

    victim_ref: str
    victim_account: AccountRef
    receiving_account: AccountRef
    amount: int
    currency: str
    transferred_at: datetime
    channel: str
    reference: str | None


@dataclass(slots=True)
class Case:
    id: UUID
    report_id: str
    agency_code: str
    reported_at: datetime
    opened_at: datetime
    transfers: tuple[TransferFact, ...]
    holds: list[Hold] = field(default_factory=list)

    def stop_requests(self) -> list[RequestStop]:
        """The stop requests owed for the holds still in `requested`."""
        return [
            h.stop_request(self.opened_at) for h in self.holds if h.state is HoldState.REQUESTED
        ]


def open_case(
    *,
    report_id: str,
    agency_code: str,
    reported_at: datetime,
    transfers: Sequence[TransferFact],
    opened_at: datetime,
) -> tuple[Case, list[Transition], list[DomainEvent]]:
    """Open the case for a report.

    Business rules:
    - one hold per distinct receiving account (institution code + account number), in the
      order the accounts first appear in the report;
    - the same account named several times is one hold asking for the summed amount;
    - all transfers into one account must share a currency;
    - every hold starts in `requested`, at layer 1, and its birth is recorded as a transition.
    """
    if not transfers:
        raise InconsistentReport("a report needs at least one transfer")
    case_id = case_id_for(report_id)
    sums: dict[tuple[str, str], int] = {}
    currencies: dict[tuple[str, str], str] = {}
    first_seen: dict[tuple[str, str], AccountRef] = {}
    for transfer in transfers:
        if transfer.amount <= 0:
            raise InvalidAmount("every transfer must move a positive amount")
        key = transfer.receiving_account.key
        if currencies.setdefault(key, transfer.currency) != transfer.currency:
            raise InconsistentReport(
                f"account {transfer.receiving_account.masked} received transfers in "
                f"{currencies[key]} and {transfer.currency}"
            )
        sums[key] = sums.get(key, 0) + transfer.amount
        first_seen.setdefault(key, transfer.receiving_account)

    case = Case(case_id, report_id, agency_code, reported_at, opened_at, tuple(transfers))
    births: list[Transition] = []
    events: list[DomainEvent] = []
    for key, account in first_seen.items():
        hold = Hold(
            id=hold_id_for(case_id, account),
            case_id=case_id,
            institution_code=account.institution_code,
            account_number=account.account_number,
            currency=currencies[key],
            amount_asked=sums[key],
        )
        birth = Transition(
            hold.id, None, HoldState.REQUESTED, None, "report received", INTAKE_ACTOR, opened_at
        )
        hold.history.append(birth)
        case.holds.append(hold)
        births.append(birth)
        events.append(
            HoldRequested(
                hold.id, case_id, hold.institution_code, 1, hold.amount_asked, hold.currency
            )
        )
    events.insert(0, CaseOpened(case_id, report_id, agency_code, len(case.holds), opened_at))
    return case, births, events
