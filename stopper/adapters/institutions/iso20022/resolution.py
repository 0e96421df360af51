"""camt.029.001.09, the resolution: an institution's answers to a recall, one per hold.

Assgnmt/Id, CreDtTm      the answer's own message id and time; Assgnr the institution
Sts/Conf                 CNCL (all accepted), RJCR (all rejected), PDCR (all pending), PECR
                         (mixed); read only for a transaction without TxCxlSts
CxlDtls/OrgnlGrpInfAndSts  OrgnlMsgId = the camt.056's Assgnmt/Id, OrgnlMsgNmId
                         camt.056.001.08: which recall this answers (optional)
CxlDtls/TxInfAndSts      one per hold:
  RslvdCase/Id           the recall's Case/Id (= its CxlId): which hold and generation, or
                         which supplement.
                         Without it, the message's RslvdCase when it answers one transaction
  TxCxlSts               ACCR, RJCR or PDCR (codes.py: what each becomes)
  CxlStsRsnInf/Rsn/Cd    with RJCR: the reason (codes.py); AddtlInf: the institution's words
  RsltnRltdInf/IntrBkSttlmAmt   with ACCR: the amount held (less than asked when only part
                         was still there; 0.00 when nothing was)
  OrgnlIntrBkSttlmAmt    the amount asked; with ACCR and no RsltnRltdInf: all of it is held
SplmtryData              per stopped hold whose money partly moved on: `Onwrd` (Stopper's
                         supplementary schema) with the hold's case id and each transfer or
                         cash withdrawal (amount, time, receiving institution and account)
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import datetime

from lxml import etree

from stopper.adapters.institutions.iso20022.codes import (
    CONFIRMATIONS,
    DEFAULT_REJECTION_CODES,
    ORIGINAL_MESSAGE_NAME,
    PARTIALLY_EXECUTED,
    PENDING_REASONS,
    REJECTION_REASONS,
    CancellationStatus,
)
from stopper.adapters.institutions.iso20022.documents import (
    STOPPER_NAMESPACE,
    Message,
    message_of,
    stopper_schema,
    validate,
)
from stopper.adapters.institutions.iso20022.fields import (
    Reader,
    agent,
    amount,
    amount_text,
    chunks,
    cxl_id_for,
    datetime_text,
    document_time,
    organisation,
    parse_datetime,
    stop_key_for_cxl_id,
    text,
)
from stopper.adapters.institutions.iso20022.model import (
    ItemAnswer,
    ItemRefusal,
    Resolution,
    ResolvedItem,
)
from stopper.domain.messages import (
    AnswerKind,
    InstitutionAnswer,
    OnwardKind,
    OnwardTransfer,
    StatusKind,
    StopStatus,
)
from stopper.errors import XmlRefusal, XmlRefused

_NS = Message.CAMT_029.namespace
_R = Reader(_NS)
_S = Reader(STOPPER_NAMESPACE)
ONWARD_PLACE = "/Document/RsltnOfInvstgtn/CxlDtls/TxInfAndSts"
MAX_REASON = 500  # what a hold keeps of an institution's reason


def build_resolution(
    *,
    message_id: str,
    created_at: datetime,
    sender: str,
    receiver: str,
    answers_message_id: str | None,
    answers: Sequence[ItemAnswer],
) -> bytes:
    """The camt.029 an institution (`sender`) answers a recall with (the simulated side)."""
    if not answers:
        raise ValueError("a resolution answers at least one hold")
    statuses = [_status_of(a.status) for a in answers]
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<Document xmlns="{_NS}"><RsltnOfInvstgtn><Assgnmt>',
        f"<Id>{text(message_id)}</Id>",
        f"<Assgnr><Agt>{agent(sender)}</Agt></Assgnr>",
        f"<Assgne><Pty>{organisation(receiver)}</Pty></Assgne>",
        f"<CreDtTm>{datetime_text(created_at)}</CreDtTm></Assgnmt>",
        f"<Sts><Conf>{_confirmation(statuses)}</Conf></Sts><CxlDtls>",
    ]
    if answers_message_id is not None:
        parts.append(
            f"<OrgnlGrpInfAndSts><OrgnlMsgId>{text(answers_message_id)}</OrgnlMsgId>"
            f"<OrgnlMsgNmId>{ORIGINAL_MESSAGE_NAME}</OrgnlMsgNmId></OrgnlGrpInfAndSts>"
        )
    onward: list[str] = []
    for answer, status in zip(answers, statuses, strict=True):
        parts.extend(_transaction(answer, status, receiver))
        outcome = answer.status.answer
        if status is CancellationStatus.ACCEPTED and outcome is not None and outcome.onward:
            onward.extend(_onward(cxl_id_for(answer.idempotency_key), answer, outcome.onward))
    parts.append("</CxlDtls>")
    parts.extend(onward)
    parts.append("</RsltnOfInvstgtn></Document>\n")
    return "".join(parts).encode()


def _status_of(status: StopStatus) -> CancellationStatus:
    if status.kind is StatusKind.PENDING:
        return CancellationStatus.PENDING
    if status.kind is not StatusKind.ANSWERED or status.answer is None:
        raise ValueError("a camt.029 says an outcome or pending, never unknown")
    kind = status.answer.kind
    if kind is AnswerKind.STOPPED:
        return CancellationStatus.ACCEPTED
    if kind in (AnswerKind.NOT_FOUND, AnswerKind.REJECTED):
        return CancellationStatus.REJECTED
    raise ValueError(f"no camt.029 status for {kind}")


def _confirmation(statuses: list[CancellationStatus]) -> str:
    first = statuses[0]
    if any(s is not first for s in statuses):
        return PARTIALLY_EXECUTED
    return {v: k for k, v in CONFIRMATIONS.items()}[first]


def _transaction(answer: ItemAnswer, status: CancellationStatus, receiver: str) -> Iterator[str]:
    cxl_id = cxl_id_for(answer.idempotency_key)
    outcome = answer.status.answer
    currency = text(answer.currency)
    yield f"<TxInfAndSts><RslvdCase><Id>{cxl_id}</Id>"
    yield f"<Cretr><Pty>{organisation(receiver)}</Pty></Cretr></RslvdCase>"
    yield f"<TxCxlSts>{status.value}</TxCxlSts>"
    code = answer.reason_code
    if code is None and status is CancellationStatus.REJECTED and outcome is not None:
        code = DEFAULT_REJECTION_CODES[outcome.kind]
    words = outcome.reason if outcome is not None and outcome.reason else None
    if code is not None or words:
        yield "<CxlStsRsnInf>"
        if code is not None:
            yield f"<Rsn><Cd>{text(code)}</Cd></Rsn>"
        for line in chunks(words or ""):
            yield f"<AddtlInf>{text(line)}</AddtlInf>"
        yield "</CxlStsRsnInf>"
    if status is CancellationStatus.ACCEPTED and outcome is not None:
        held = outcome.amount_held or 0
        yield (
            f'<RsltnRltdInf><IntrBkSttlmAmt Ccy="{currency}">'
            f"{amount_text(held, answer.currency)}</IntrBkSttlmAmt></RsltnRltdInf>"
        )
    yield (
        f'<OrgnlIntrBkSttlmAmt Ccy="{currency}">'
        f"{amount_text(answer.amount_asked, answer.currency)}</OrgnlIntrBkSttlmAmt>"
    )
    yield "</TxInfAndSts>"


def _onward(
    cxl_id: str, answer: ItemAnswer, transfers: tuple[OnwardTransfer, ...]
) -> Iterator[str]:
    yield f"<SplmtryData><PlcAndNm>{ONWARD_PLACE}</PlcAndNm><Envlp>"
    yield f'<Onwrd xmlns="{STOPPER_NAMESPACE}"><Case>{cxl_id}</Case>'
    for transfer in transfers:
        kind = "CASH" if transfer.kind is OnwardKind.CASH_WITHDRAWAL else "TRF"
        yield f"<Trf><Tp>{kind}</Tp>"
        yield (
            f'<Amt Ccy="{text(answer.currency)}">'
            f"{amount_text(transfer.amount, answer.currency)}</Amt>"
        )
        yield f"<DtTm>{datetime_text(transfer.transferred_at)}</DtTm>"
        if transfer.institution_code:
            yield f"<CdtrAgt>{text(transfer.institution_code)}</CdtrAgt>"
        if transfer.account_number:
            yield f"<CdtrAcct>{text(transfer.account_number)}</CdtrAcct>"
        yield "</Trf>"
    yield "</Onwrd></Envlp></SplmtryData>"


# --- reading --------------------------------------------------------------------------------


def read_resolution(root: etree._Element) -> Resolution:
    """A camt.029 `Document` (from `parse_document`) as one item per transaction status.

    Each item is a domain status or a counted refusal (`ItemRefusal`); an onward-transfer
    supplement that breaks Stopper's supplementary schema refuses the whole message.
    """
    if message_of(root) is not Message.CAMT_029:
        raise XmlRefused(XmlRefusal.UNKNOWN_MESSAGE, "not a camt.029.001.09")
    body = _R.find(root, "RsltnOfInvstgtn")
    assert body is not None  # the schema requires it
    confirmation = _R.text(body, "Sts/Conf")
    onward = _onward_by_case(body)
    transactions: list[etree._Element] = []
    answers_message_id: str | None = None
    for details in _R.all(body, "CxlDtls"):
        group = _R.find(details, "OrgnlGrpInfAndSts")
        if (
            answers_message_id is None
            and group is not None
            and _R.text(group, "OrgnlMsgNmId") == ORIGINAL_MESSAGE_NAME
        ):
            answers_message_id = _R.text(group, "OrgnlMsgId")
        transactions.extend(_R.all(details, "TxInfAndSts"))
        transactions.extend(_R.all(details, "OrgnlPmtInfAndSts/TxInfAndSts"))
    message_case = _R.text(body, "RslvdCase/Id")
    items: list[ResolvedItem]
    if transactions:
        lone_case = message_case if len(transactions) == 1 else None
        items = [_read_item(t, confirmation, lone_case, onward) for t in transactions]
    elif message_case is not None:
        items = [_read_item(None, confirmation, message_case, onward)]
    else:
        items = []
    return Resolution(
        message_id=_R.text(body, "Assgnmt/Id") or "",
        created_at=document_time(_R.text(body, "Assgnmt/CreDtTm"), "Assgnmt/CreDtTm"),
        sender=_R.party(_R.find(body, "Assgnmt/Assgnr")),
        answers_message_id=answers_message_id,
        items=tuple(items),
    )


_SAFE_CODE = re.compile(r"^[A-Za-z0-9]{1,4}$")


def _said(code: str) -> str:
    """A code fit to repeat in a refusal's detail."""
    return code if _SAFE_CODE.match(code) else "…"


def _read_item(
    transaction: etree._Element | None,
    confirmation: str | None,
    fallback_case: str | None,
    onward: dict[str, tuple[OnwardTransfer, ...] | None],
) -> ResolvedItem:
    fields = _R.children(transaction) if transaction is not None else {}
    resolved = fields.get("RslvdCase")
    case_id = (_R.text(resolved, "Id") if resolved is not None else None) or fallback_case or ""
    decoded = stop_key_for_cxl_id(case_id)
    key, hold_id = decoded if decoded is not None else (case_id, None)

    def refused(refusal: ItemRefusal, detail: str) -> ResolvedItem:
        return ResolvedItem(key, hold_id, None, refusal, detail)

    said_status = fields.get("TxCxlSts")
    status = (
        CancellationStatus(said_status.text or "")  # the schema's closed list: ACCR, RJCR, PDCR
        if said_status is not None
        else CONFIRMATIONS.get(confirmation or "")
    )
    if status is None:
        return refused(ItemRefusal.NO_STATUS, "no TxCxlSts and no Sts/Conf of CNCL, RJCR, PDCR")
    reasons = (
        _R.all(transaction, "CxlStsRsnInf")
        if transaction is not None and "CxlStsRsnInf" in fields
        else []
    )
    words = "".join(line for r in reasons for line in _R.texts(r, "AddtlInf"))
    code = next((c for r in reasons if (c := _R.text(r, "Rsn/Cd"))), None)
    proprietary = next((p for r in reasons if (p := _R.text(r, "Rsn/Prtry"))), None)

    if status is CancellationStatus.PENDING:
        if proprietary is not None and code is None:
            return refused(ItemRefusal.UNKNOWN_REASON_CODE, "a proprietary pending reason")
        if code is not None and code not in PENDING_REASONS and code not in REJECTION_REASONS:
            return refused(ItemRefusal.UNKNOWN_REASON_CODE, f"pending reason {_said(code)}")
        return ResolvedItem(key, hold_id, StopStatus(key, StatusKind.PENDING, hold_id))

    if status is CancellationStatus.REJECTED:
        if code is None:
            if proprietary is not None:
                return refused(ItemRefusal.UNKNOWN_REASON_CODE, "a proprietary rejection reason")
            return refused(ItemRefusal.NO_REASON, "RJCR without CxlStsRsnInf/Rsn/Cd")
        mapped = REJECTION_REASONS.get(code)
        if mapped is None:
            return refused(ItemRefusal.UNKNOWN_REASON_CODE, f"rejection reason {_said(code)}")
        kind, meaning = mapped
        reason = f"{code} {meaning}" + (f": {words}" if words else "")
        answer = InstitutionAnswer(kind, None, reason[:MAX_REASON])
        return ResolvedItem(key, hold_id, StopStatus(key, StatusKind.ANSWERED, hold_id, answer))

    held = _amount_held(fields)
    if isinstance(held, ItemRefusal):
        return refused(held, "no usable amount held (RsltnRltdInf/IntrBkSttlmAmt)")
    transfers = onward.get(case_id, ())
    if transfers is None:
        return refused(ItemRefusal.BAD_ONWARD, "an onward transfer Stopper cannot follow")
    answer = InstitutionAnswer(AnswerKind.STOPPED, held, None, transfers)
    return ResolvedItem(key, hold_id, StopStatus(key, StatusKind.ANSWERED, hold_id, answer))


def _amount_held(fields: dict[str, etree._Element]) -> int | ItemRefusal:
    asked = fields.get("OrgnlIntrBkSttlmAmt")
    if asked is None:
        asked = fields.get("OrgnlInstdAmt")
    resolution = fields.get("RsltnRltdInf")
    held = _R.find(resolution, "IntrBkSttlmAmt") if resolution is not None else None
    said = held if held is not None else asked
    if said is None:
        return ItemRefusal.NO_AMOUNT
    value = amount(said)
    if value is None:
        return ItemRefusal.BAD_AMOUNT
    if asked is not None and held is not None and asked.get("Ccy") != held.get("Ccy"):
        return ItemRefusal.BAD_AMOUNT
    return value[0]


def _onward_by_case(body: etree._Element) -> dict[str, tuple[OnwardTransfer, ...] | None]:
    """Each case's onward transfers (None: present but not usable)."""
    found: dict[str, tuple[OnwardTransfer, ...] | None] = {}
    for envelope in _R.all(body, "SplmtryData/Envlp"):
        for element in envelope.iterchildren(f"{{{STOPPER_NAMESPACE}}}Onwrd"):
            validate(element, stopper_schema())
            case_id = _S.text(element, "Case") or ""
            transfers: list[OnwardTransfer] = []
            usable = True
            for transfer in _S.all(element, "Trf"):
                read = _read_onward(transfer)
                if read is None:
                    usable = False
                else:
                    transfers.append(read)
            previous = found.get(case_id, ())
            if not usable or previous is None:
                found[case_id] = None
            else:
                found[case_id] = previous + tuple(transfers)
    return found


def _read_onward(transfer: etree._Element) -> OnwardTransfer | None:
    value = amount(_S.find(transfer, "Amt"))  # type: ignore[arg-type]  # required by the schema
    if value is None or value[0] <= 0:
        return None
    cash = _S.text(transfer, "Tp") == "CASH"
    institution = _S.text(transfer, "CdtrAgt")
    account_number = _S.text(transfer, "CdtrAcct")
    if not cash and not (institution and account_number):
        return None  # a transfer names where it went
    try:
        transferred_at = parse_datetime(_S.text(transfer, "DtTm") or "")
    except ValueError:
        return None
    return OnwardTransfer(
        kind=OnwardKind.CASH_WITHDRAWAL if cash else OnwardKind.TRANSFER,
        amount=value[0],
        transferred_at=transferred_at,
        institution_code=institution,
        account_number=account_number,
    )
