"""camt.056.001.08, the recall: Stopper's stop requests to one institution, one `TxInf` per hold.

Assgnmt/Id              the message id (unique per message, recorded by the adapter)
Assgnmt/Assgnr/Pty      Stopper (Id/OrgId/Othr/Id); Assgne/Agt the institution's code
CtrlData                NbOfTxs = holds, CtrlSum = the amounts asked
Undrlyg (one)           TxInf per hold:
  CxlId, Case/Id        the hold's idempotency key in 35 characters (`cxl_id_for`); the
                        answer names it back in RslvdCase/Id (camt.029.001.09 has no OrgnlCxlId)
  Case/Cretr/Pty        Stopper
  OrgnlIntrBkSttlmAmt   the amount to stop (what the payments brought, or for a hold deeper in
                        the trail the part traced to it), in the hold's currency
  OrgnlIntrBkSttlmDt    the payment's settlement date, when the hold comes from one payment
  CxlRsnInf/Orgtr/Nm    the police agency's code
  CxlRsnInf/Rsn/Cd      FRAD
  CxlRsnInf/AddtlInf    /CASE/<case id>, /LAYR/<layer in the money trail>,
                        /REQD/<requested at>, /BSIS/<legal basis> (continued by // lines);
                        a supplement (more asked on a stop already asked for: its CxlId is
                        `<hold>S<n>`, its amount the extra) adds /SPLM/<the CxlId of the
                        request it adds to> and /MRGD/<the hold the money merged from>, and
                        names the same original payments;
                        for a known mule account /MULE/<cases naming it, up to 10> (the
                        field `known_mule` of a JSON stop request)
  OrgnlTxRef/CdtrAgt, CdtrAcct   the account to stop (Othr/Id: registry code, number)
  OrgnlTxRef/RmtInf/Ustrd, DbtrAcct, DbtrAgt   the one payment's reference and payer
  SplmtryData           every original payment (`Pmts`, Stopper's supplementary schema):
                        a TxInf has room for one transaction, a hold may come from several
"""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID

from lxml import etree

from stopper.adapters.institutions.iso20022.codes import RECALL_REASON
from stopper.adapters.institutions.iso20022.documents import (
    STOPPER_NAMESPACE,
    Message,
    message_of,
    stopper_schema,
    validate,
)
from stopper.adapters.institutions.iso20022.fields import (
    Reader,
    account,
    agent,
    amount,
    amount_text,
    cxl_id_for,
    date_text,
    datetime_text,
    document_time,
    key_for_cxl_id,
    organisation,
    parse_datetime,
    read_tagged_lines,
    stop_key_for_cxl_id,
    tagged_lines,
    text,
)
from stopper.adapters.institutions.iso20022.model import OriginalPayment, Recall, RecallItem
from stopper.domain.messages import RequestStop, SupplementOf
from stopper.domain.mules import CASES_COUNTED, FLAGGED_AT, counted, is_flagged
from stopper.domain.supplements import supplement_of_key
from stopper.errors import XmlRefusal, XmlRefused

_NS = Message.CAMT_056.namespace
_R = Reader(_NS)
_S = Reader(STOPPER_NAMESPACE)
PAYMENTS_PLACE = "/Document/FIToFIPmtCxlReq/Undrlyg/TxInf"


def build_recall(recall: Recall) -> bytes:
    """The camt.056 for `recall` (valid against the official schema: the tests check it)."""
    if not recall.items:
        raise ValueError("a recall names at least one hold")
    if len(recall.message_id) > 35:
        raise ValueError("a message id has at most 35 characters")
    total = sum(item.request.amount for item in recall.items)
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<Document xmlns="{_NS}"><FIToFIPmtCxlReq><Assgnmt>',
        f"<Id>{text(recall.message_id)}</Id>",
        f"<Assgnr><Pty>{organisation(recall.sender)}</Pty></Assgnr>",
        f"<Assgne><Agt>{agent(recall.receiver)}</Agt></Assgne>",
        f"<CreDtTm>{datetime_text(recall.created_at)}</CreDtTm></Assgnmt>",
        f"<CtrlData><NbOfTxs>{len(recall.items)}</NbOfTxs>",
        f"<CtrlSum>{_sum_text(total, recall.items)}</CtrlSum></CtrlData><Undrlyg>",
    ]
    for item in recall.items:
        parts.extend(_transaction(item, recall.sender))
    parts.append("</Undrlyg></FIToFIPmtCxlReq></Document>\n")
    return "".join(parts).encode()


def _sum_text(total: int, items: tuple[RecallItem, ...]) -> str:
    # CtrlSum adds the amounts as written, whatever their currencies (ISO's rule).
    return amount_text(total, items[0].request.currency)


def _transaction(item: RecallItem, sender: str) -> Iterator[str]:
    request = item.request
    cxl_id = cxl_id_for(request.idempotency_key)
    if len(item.legal_basis) > 99 or not item.legal_basis:
        raise ValueError("the legal basis is one AddtlInf line: 1 to 99 characters")
    only = item.payments[0] if len(item.payments) == 1 else None
    currency = text(request.currency)
    yield f"<TxInf><CxlId>{cxl_id}</CxlId>"
    yield f"<Case><Id>{cxl_id}</Id><Cretr><Pty>{organisation(sender)}</Pty></Cretr></Case>"
    yield (
        f'<OrgnlIntrBkSttlmAmt Ccy="{currency}">'
        f"{amount_text(request.amount, request.currency)}</OrgnlIntrBkSttlmAmt>"
    )
    if only is not None:
        yield f"<OrgnlIntrBkSttlmDt>{date_text(only.settled_at)}</OrgnlIntrBkSttlmDt>"
    yield f"<CxlRsnInf><Orgtr><Nm>{text(item.agency_code)}</Nm></Orgtr>"
    yield f"<Rsn><Cd>{RECALL_REASON}</Cd></Rsn>"
    yield f"<AddtlInf>/CASE/{request.case_id}</AddtlInf>"
    yield f"<AddtlInf>/LAYR/{request.layer}</AddtlInf>"
    yield f"<AddtlInf>/REQD/{datetime_text(request.requested_at)}</AddtlInf>"
    if request.supplement is not None:
        yield f"<AddtlInf>/SPLM/{cxl_id_for(request.supplement.adds_to)}</AddtlInf>"
        yield f"<AddtlInf>/MRGD/{request.supplement.merged_from}</AddtlInf>"
    if is_flagged(request.mule_cases):
        yield f"<AddtlInf>/MULE/{counted(request.mule_cases)}</AddtlInf>"
    for line in tagged_lines("BSIS", item.legal_basis):
        yield f"<AddtlInf>{text(line)}</AddtlInf>"
    yield "</CxlRsnInf><OrgnlTxRef>"
    if only is not None:
        if only.reference:
            yield f"<RmtInf><Ustrd>{text(only.reference)}</Ustrd></RmtInf>"
        yield f"<DbtrAcct>{account(only.debtor_account)}</DbtrAcct>"
        yield f"<DbtrAgt>{agent(only.debtor_institution)}</DbtrAgt>"
    yield f"<CdtrAgt>{agent(request.institution_code)}</CdtrAgt>"
    yield f"<CdtrAcct>{account(request.account_number)}</CdtrAcct></OrgnlTxRef>"
    if item.payments:
        yield f"<SplmtryData><PlcAndNm>{PAYMENTS_PLACE}</PlcAndNm><Envlp>"
        yield f'<Pmts xmlns="{STOPPER_NAMESPACE}">'
        for payment in item.payments:
            yield from _payment(payment)
        yield "</Pmts></Envlp></SplmtryData>"
    yield "</TxInf>"


def _payment(payment: OriginalPayment) -> Iterator[str]:
    yield "<Pmt>"
    if payment.reference:
        yield f"<Ref>{text(payment.reference)}</Ref>"
    yield (
        f'<Amt Ccy="{text(payment.currency)}">{amount_text(payment.amount, payment.currency)}</Amt>'
    )
    yield f"<SttlmDtTm>{datetime_text(payment.settled_at)}</SttlmDtTm>"
    yield f"<DbtrAgt>{text(payment.debtor_institution)}</DbtrAgt>"
    yield f"<DbtrAcct>{text(payment.debtor_account)}</DbtrAcct>"
    yield f"<CdtrAgt>{text(payment.creditor_institution)}</CdtrAgt>"
    yield f"<CdtrAcct>{text(payment.creditor_account)}</CdtrAcct></Pmt>"


def read_recall(root: etree._Element) -> Recall:
    """The recall a camt.056 `Document` (from `parse_document`) carries, as Stopper writes them.

    A schema-valid camt.056 that does not follow Stopper's profile (a CxlId that is not one of
    its keys, no agency or case) is refused `invalid`, naming the transaction.
    """
    if message_of(root) is not Message.CAMT_056:
        raise XmlRefused(XmlRefusal.UNKNOWN_MESSAGE, "not a camt.056.001.08")
    body = _R.find(root, "FIToFIPmtCxlReq")
    assert body is not None  # the schema requires it
    message_id = _R.text(body, "Assgnmt/Id") or ""
    sender = _R.party(_R.find(body, "Assgnmt/Assgnr"))
    receiver = _R.party(_R.find(body, "Assgnmt/Assgne"))
    created_at = document_time(_R.text(body, "Assgnmt/CreDtTm"), "Assgnmt/CreDtTm")
    items: list[RecallItem] = []
    for index, transaction in enumerate(_R.all(body, "Undrlyg/TxInf"), start=1):
        items.append(_read_transaction(transaction, receiver, f"TxInf[{index}]"))
    return Recall(message_id, created_at, sender, receiver, tuple(items))


def _refuse(where: str, why: str) -> XmlRefused:
    return XmlRefused(XmlRefusal.INVALID, f"{where}: {why} (not a recall as Stopper writes one)")


def _read_transaction(transaction: etree._Element, receiver: str, where: str) -> RecallItem:
    fields = _R.children(transaction)
    cxl_id = fields.get("CxlId")
    cxl_text = (cxl_id.text or "") if cxl_id is not None else ""
    decoded = stop_key_for_cxl_id(cxl_text)
    if decoded is None:
        raise _refuse(where, "its CxlId is not one of Stopper's")
    idempotency_key, hold_id = decoded
    asked_element = fields.get("OrgnlIntrBkSttlmAmt")
    asked = amount(asked_element) if asked_element is not None else None
    if asked is None:
        raise _refuse(where, "no OrgnlIntrBkSttlmAmt in minor units")
    reason = fields.get("CxlRsnInf")
    if reason is None or _R.text(reason, "Rsn/Cd") != RECALL_REASON:
        raise _refuse(where, f"no CxlRsnInf with reason {RECALL_REASON}")
    tagged, _ = read_tagged_lines(_R.texts(reason, "AddtlInf"))
    agency = _R.text(reason, "Orgtr/Nm")
    reference = fields.get("OrgnlTxRef")
    parties = _R.children(reference) if reference is not None else {}
    institution = _R.party(parties.get("CdtrAgt"))
    account_number = _R.account(parties.get("CdtrAcct"))
    if not agency or not institution or not account_number:
        raise _refuse(where, "no agency, creditor agent or creditor account")
    try:
        case_id = UUID(tagged["CASE"])
        layer = int(tagged["LAYR"])
        requested_at = parse_datetime(tagged["REQD"])
        basis = tagged["BSIS"]
    except (KeyError, ValueError) as e:
        raise _refuse(where, "AddtlInf lacks /CASE/, /LAYR/, /REQD/ or /BSIS/") from e
    generation, supplement = _part(cxl_text, idempotency_key, hold_id, tagged, where)
    mule_cases = _mule_cases(tagged.get("MULE"), where)
    request = RequestStop(
        hold_id=hold_id,
        case_id=case_id,
        institution_code=institution,
        account_number=account_number,
        currency=asked[1],
        amount=asked[0],
        layer=layer,
        idempotency_key=idempotency_key,
        generation=generation,
        requested_at=requested_at,
        supplement=supplement,
        mule_cases=mule_cases,
    )
    payments = tuple(_read_payments(transaction, where)) if "SplmtryData" in fields else ()
    return RecallItem(request, payments, agency, basis)


def _part(
    cxl_id: str, idempotency_key: str, hold_id: UUID, tagged: dict[str, str], where: str
) -> tuple[int, SupplementOf | None]:
    """The generation a transaction asks in, and for a supplement what it adds to: a first
    request's CxlId says its generation; a supplement's /SPLM/ names the first request's."""
    first = key_for_cxl_id(cxl_id)
    if first is not None:
        return first[2], None
    number = supplement_of_key(idempotency_key)
    adds_to = key_for_cxl_id(tagged.get("SPLM", ""))
    try:
        merged_from = UUID(tagged["MRGD"])
    except (KeyError, ValueError):
        merged_from = None
    if number is None or adds_to is None or adds_to[1] != hold_id or merged_from is None:
        raise _refuse(where, "a supplement without /SPLM/ of its hold's request or /MRGD/")
    return adds_to[2], SupplementOf(number[1], adds_to[0], merged_from)


_MULE_COUNTS = range(FLAGGED_AT, CASES_COUNTED + 1)


def _mule_cases(tagged: str | None, where: str) -> int:
    """The cases a `/MULE/` line says name the account (0 without one)."""
    if tagged is None:
        return 0
    valid = tagged.isascii() and tagged.isdigit() and int(tagged) in _MULE_COUNTS
    if not valid:
        raise _refuse(where, f"/MULE/ is not a count of {FLAGGED_AT} to {CASES_COUNTED} cases")
    return int(tagged)


def _read_payments(transaction: etree._Element, where: str) -> Iterator[OriginalPayment]:
    for envelope in _R.all(transaction, "SplmtryData/Envlp"):
        for payments in envelope.iterchildren(f"{{{STOPPER_NAMESPACE}}}Pmts"):
            validate(payments, stopper_schema())  # so each field below is there, once
            for payment in payments:
                fields = {k: v.text or "" for k, v in _S.children(payment).items()}
                value = amount(next(payment.iterchildren(_PAYMENT_AMOUNT)))
                if value is None:
                    raise _refuse(where, "a payment's amount has more decimals than its currency")
                yield OriginalPayment(
                    reference=fields.get("Ref"),
                    amount=value[0],
                    currency=value[1],
                    settled_at=document_time(
                        fields["SttlmDtTm"], f"{where}: a payment's SttlmDtTm"
                    ),
                    debtor_institution=fields["DbtrAgt"],
                    debtor_account=fields["DbtrAcct"],
                    creditor_institution=fields["CdtrAgt"],
                    creditor_account=fields["CdtrAcct"],
                )


_PAYMENT_AMOUNT = f"{{{STOPPER_NAMESPACE}}}Amt"
