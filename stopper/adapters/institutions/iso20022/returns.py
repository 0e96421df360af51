"""Returns: the return instruction (a camt.056.001.08 asking for frozen funds back, one `TxInf`
per payout) and what confirms it, a pacs.004.001.09 (one `TxInf` per payout paid), or a
camt.029.001.09 rejecting it.

The return instruction, where it differs from a stop's recall (recall.py):
    Case/Id                 the hold id's 32 hex digits (the hold the frozen funds sit on)
    CtrlData/CtrlSum        the amount to return (the order's; the payouts must add up to it)
    TxInf per payout        CxlId `<hold hex><nnn>` (nnn from 001, in the order's order);
                            OrgnlIntrBkSttlmAmt the payout; CxlRsnInf/Rsn/Cd FRAD; AddtlInf
                            /RTRN/<the return's idempotency key>, /CASE/, /DOCU/<legal document>,
                            /REQD/<ordered at>, /VICT/<victim reference>; OrgnlTxRef DbtrAgt and
                            DbtrAcct the victim's own account (where the money goes back: the
                            payer of the original payment), CdtrAgt and CdtrAcct the frozen account
The pacs.004:
    GrpHdr                  MsgId, CreDtTm, NbOfTxs, TtlRtrdIntrBkSttlmAmt, SttlmInf (INDA),
                            InstgAgt the institution
    OrgnlGrpInf             OrgnlMsgId the instruction's Assgnmt/Id, OrgnlMsgNmId camt.056.001.08
    TxInf per payout        RtrId (the institution's), OrgnlInstrId the payout's CxlId,
                            OrgnlIntrBkSttlmAmt the payout asked, RtrdIntrBkSttlmAmt what was
                            paid, RtrRsnInf/Rsn/Cd FOCR, OrgnlTxRef DbtrAgt/DbtrAcct where it went
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from uuid import UUID

from lxml import etree

from stopper.adapters.institutions.iso20022.codes import (
    ORIGINAL_MESSAGE_NAME,
    RECALL_REASON,
    REJECTION_REASONS,
    RETURN_REASON,
)
from stopper.adapters.institutions.iso20022.documents import Message, message_of
from stopper.adapters.institutions.iso20022.fields import (
    Reader,
    account,
    agent,
    amount,
    amount_text,
    chunks,
    date_text,
    datetime_text,
    document_time,
    minor_units,
    organisation,
    parse_datetime,
    payout_ref,
    read_tagged_lines,
    tagged_lines,
    text,
)
from stopper.adapters.institutions.iso20022.model import (
    PaymentReturn,
    ReturnedItem,
    ReturnInstruction,
)
from stopper.domain.messages import OrderAnswer, OrderReturn, ReturnPayout
from stopper.errors import XmlRefusal, XmlRefused

_CAMT_056 = Message.CAMT_056.namespace
_CAMT_029 = Message.CAMT_029.namespace
_PACS_004 = Message.PACS_004.namespace
_R056 = Reader(_CAMT_056)
_R029 = Reader(_CAMT_029)
_R004 = Reader(_PACS_004)
MAX_REASON = 500
MAX_PAYOUTS = 999  # what a payout reference has room for


def build_return_instruction(instruction: ReturnInstruction) -> bytes:
    """The camt.056 that orders `instruction.order`'s payouts (valid: the tests check it)."""
    order = instruction.order
    if not order.payouts:
        raise ValueError("a return pays at least one victim")
    hold = order.hold_id.hex
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<Document xmlns="{_CAMT_056}"><FIToFIPmtCxlReq><Assgnmt>',
        f"<Id>{text(instruction.message_id)}</Id>",
        f"<Assgnr><Pty>{organisation(instruction.sender)}</Pty></Assgnr>",
        f"<Assgne><Agt>{agent(instruction.receiver)}</Agt></Assgne>",
        f"<CreDtTm>{datetime_text(instruction.created_at)}</CreDtTm></Assgnmt>",
        f"<Case><Id>{hold}</Id><Cretr><Pty>{organisation(instruction.sender)}</Pty></Cretr></Case>",
        f"<CtrlData><NbOfTxs>{len(order.payouts)}</NbOfTxs>",
        f"<CtrlSum>{amount_text(order.amount, order.currency)}</CtrlSum></CtrlData><Undrlyg>",
    ]
    for index, payout in enumerate(order.payouts, start=1):
        parts.extend(_payout(order, index, payout))
    parts.append("</Undrlyg></FIToFIPmtCxlReq></Document>\n")
    return "".join(parts).encode()


def _payout(order: OrderReturn, index: int, payout: ReturnPayout) -> Iterator[str]:
    yield f"<TxInf><CxlId>{payout_ref(order.hold_id, index)}</CxlId>"
    yield (
        f'<OrgnlIntrBkSttlmAmt Ccy="{text(order.currency)}">'
        f"{amount_text(payout.amount, order.currency)}</OrgnlIntrBkSttlmAmt>"
    )
    yield f"<CxlRsnInf><Rsn><Cd>{RECALL_REASON}</Cd></Rsn>"
    for tag, value in (
        ("RTRN", order.idempotency_key),
        ("CASE", str(order.case_id)),
        ("DOCU", order.legal_document_ref),
        ("REQD", datetime_text(order.requested_at)),
        ("VICT", payout.victim_ref),
    ):
        for line in tagged_lines(tag, value):
            yield f"<AddtlInf>{text(line)}</AddtlInf>"
    yield "</CxlRsnInf><OrgnlTxRef>"
    yield f"<DbtrAcct>{account(payout.account_number)}</DbtrAcct>"
    yield f"<DbtrAgt>{agent(payout.institution_code)}</DbtrAgt>"
    yield f"<CdtrAgt>{agent(order.institution_code)}</CdtrAgt>"
    yield f"<CdtrAcct>{account(order.account_number)}</CdtrAcct></OrgnlTxRef></TxInf>"


def read_return_instruction(root: etree._Element) -> ReturnInstruction:
    """The return order a camt.056 `Document` (from `parse_document`) carries (the simulated
    institutions' side); `invalid` when it is not a return instruction as Stopper writes one."""
    if message_of(root) is not Message.CAMT_056:
        raise XmlRefused(XmlRefusal.UNKNOWN_MESSAGE, "not a camt.056.001.08")
    body = _R056.find(root, "FIToFIPmtCxlReq")
    assert body is not None  # the schema requires it
    case = _R056.text(body, "Case/Id") or ""
    try:
        hold_id = UUID(hex=case)
    except ValueError as e:
        raise _refuse("Case/Id", "not a hold id") from e
    payouts: list[ReturnPayout] = []
    facts: dict[str, str] = {}
    currency = ""
    frozen = ("", "")
    for index, transaction in enumerate(_R056.all(body, "Undrlyg/TxInf"), start=1):
        where = f"TxInf[{index}]"
        if index > MAX_PAYOUTS or _R056.text(transaction, "CxlId") != payout_ref(hold_id, index):
            raise _refuse(where, "its CxlId is not this hold's payout in order")
        asked = _R056.find(transaction, "OrgnlIntrBkSttlmAmt")
        value = amount(asked) if asked is not None else None
        if value is None:
            raise _refuse(where, "no payout amount in minor units")
        reason = _R056.find(transaction, "CxlRsnInf")
        tagged, _ = read_tagged_lines(_R056.texts(reason, "AddtlInf") if reason is not None else [])
        shared = {k: tagged.get(k, "") for k in ("RTRN", "CASE", "DOCU", "REQD")}
        if index == 1:
            facts, currency = shared, value[1]
            frozen = (
                _R056.party(_R056.find(transaction, "OrgnlTxRef/CdtrAgt")),
                _R056.account(_R056.find(transaction, "OrgnlTxRef/CdtrAcct")),
            )
        elif shared != facts or value[1] != currency:
            raise _refuse(where, "its order differs from the first payout's")
        payouts.append(
            ReturnPayout(
                victim_ref=tagged.get("VICT", ""),
                institution_code=_R056.party(_R056.find(transaction, "OrgnlTxRef/DbtrAgt")),
                account_number=_R056.account(_R056.find(transaction, "OrgnlTxRef/DbtrAcct")),
                amount=value[0],
            )
        )
    if not payouts or not all(facts.values()) or not all(frozen):
        raise _refuse("TxInf", "no payouts, or one without /RTRN/, /CASE/, /DOCU/, /REQD/")
    order_amount = minor_units(_R056.text(body, "CtrlData/CtrlSum") or "", currency)
    if order_amount is None:
        raise _refuse("CtrlData/CtrlSum", "no amount to return in minor units")
    try:
        case_id = UUID(facts["CASE"])
        requested_at = parse_datetime(facts["REQD"])
    except ValueError as e:
        raise _refuse("TxInf[1]", "an unreadable /CASE/ or /REQD/") from e
    order = OrderReturn(
        hold_id=hold_id,
        case_id=case_id,
        institution_code=frozen[0],
        account_number=frozen[1],
        currency=currency,
        amount=order_amount,
        legal_document_ref=facts["DOCU"],
        payouts=tuple(payouts),
        idempotency_key=facts["RTRN"],
        requested_at=requested_at,
    )
    return ReturnInstruction(
        message_id=_R056.text(body, "Assgnmt/Id") or "",
        created_at=document_time(_R056.text(body, "Assgnmt/CreDtTm"), "Assgnmt/CreDtTm"),
        sender=_R056.party(_R056.find(body, "Assgnmt/Assgnr")),
        receiver=_R056.party(_R056.find(body, "Assgnmt/Assgne")),
        order=order,
    )


def _refuse(where: str, why: str) -> XmlRefused:
    return XmlRefused(XmlRefusal.INVALID, f"{where}: {why} (not a return instruction)")


# --- pacs.004 -------------------------------------------------------------------------------


def build_payment_return(
    *,
    message_id: str,
    created_at: datetime,
    sender: str,
    instruction: ReturnInstruction,
    paid: Sequence[int],
) -> bytes:
    """The pacs.004 an institution confirms a return instruction with: `paid[i]` to payout i
    (the simulated side; every payout gets its `TxInf`, even one paid nothing)."""
    order = instruction.order
    if len(paid) != len(order.payouts):
        raise ValueError("one amount paid per payout")
    currency = text(order.currency)
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<Document xmlns="{_PACS_004}"><PmtRtr><GrpHdr>',
        f"<MsgId>{text(message_id)}</MsgId><CreDtTm>{datetime_text(created_at)}</CreDtTm>",
        f"<NbOfTxs>{len(paid)}</NbOfTxs>",
        f'<TtlRtrdIntrBkSttlmAmt Ccy="{currency}">'
        f"{amount_text(sum(paid), order.currency)}</TtlRtrdIntrBkSttlmAmt>",
        f"<IntrBkSttlmDt>{date_text(created_at)}</IntrBkSttlmDt>",
        f"<SttlmInf><SttlmMtd>INDA</SttlmMtd></SttlmInf><InstgAgt>{agent(sender)}</InstgAgt>",
        "</GrpHdr><OrgnlGrpInf>",
        f"<OrgnlMsgId>{text(instruction.message_id)}</OrgnlMsgId>",
        f"<OrgnlMsgNmId>{ORIGINAL_MESSAGE_NAME}</OrgnlMsgNmId></OrgnlGrpInf>",
    ]
    for index, (payout, amount_paid) in enumerate(zip(order.payouts, paid, strict=True), 1):
        ref = payout_ref(order.hold_id, index)
        parts.append(
            f"<TxInf><RtrId>{text(message_id[:30])}-{index}</RtrId><OrgnlInstrId>{ref}</OrgnlInstrId>"
            f'<OrgnlIntrBkSttlmAmt Ccy="{currency}">'
            f"{amount_text(payout.amount, order.currency)}</OrgnlIntrBkSttlmAmt>"
            f'<RtrdIntrBkSttlmAmt Ccy="{currency}">'
            f"{amount_text(amount_paid, order.currency)}</RtrdIntrBkSttlmAmt>"
            f"<IntrBkSttlmDt>{date_text(created_at)}</IntrBkSttlmDt>"
            f"<RtrRsnInf><Rsn><Cd>{RETURN_REASON}</Cd></Rsn></RtrRsnInf><OrgnlTxRef>"
            f"<DbtrAcct>{account(payout.account_number)}</DbtrAcct>"
            f"<DbtrAgt>{agent(payout.institution_code)}</DbtrAgt>"
            f"<CdtrAgt>{agent(order.institution_code)}</CdtrAgt>"
            f"<CdtrAcct>{account(order.account_number)}</CdtrAcct></OrgnlTxRef></TxInf>"
        )
    parts.append("</PmtRtr></Document>\n")
    return "".join(parts).encode()


def read_payment_return(root: etree._Element) -> PaymentReturn:
    """A pacs.004 `Document` (from `parse_document`): one item per `TxInf`."""
    if message_of(root) is not Message.PACS_004:
        raise XmlRefused(XmlRefusal.UNKNOWN_MESSAGE, "not a pacs.004.001.09")
    body = _R004.find(root, "PmtRtr")
    assert body is not None  # the schema requires it
    group = _R004.find(body, "OrgnlGrpInf")
    items: list[ReturnedItem] = []
    for index, transaction in enumerate(_R004.all(body, "TxInf"), start=1):
        returned = _R004.find(transaction, "RtrdIntrBkSttlmAmt")
        value = amount(returned) if returned is not None else None
        if value is None:
            raise XmlRefused(
                XmlRefusal.INVALID,
                f"TxInf[{index}]: an amount with more decimals than its currency",
            )
        items.append(
            ReturnedItem(
                payout_ref=_R004.text(transaction, "OrgnlInstrId") or "",
                amount=value[0],
                currency=value[1],
                institution_code=_R004.party(_R004.find(transaction, "OrgnlTxRef/DbtrAgt")),
                account_number=_R004.account(_R004.find(transaction, "OrgnlTxRef/DbtrAcct")),
                return_id=_R004.text(transaction, "RtrId"),
            )
        )
    return PaymentReturn(
        message_id=_R004.text(body, "GrpHdr/MsgId") or "",
        created_at=document_time(_R004.text(body, "GrpHdr/CreDtTm"), "GrpHdr/CreDtTm"),
        sender=_R004.party(_R004.find(body, "GrpHdr/InstgAgt")),
        answers_message_id=_R004.text(group, "OrgnlMsgId") if group is not None else None,
        items=tuple(items),
    )


def match_payouts(order: OrderReturn, payment_return: PaymentReturn) -> OrderAnswer:
    """The return `payment_return` confirms: every payout answered once by its reference, in the
    order's currency, to the victim's account, never more than asked; `unmatched` otherwise."""
    by_ref: dict[str, ReturnedItem] = {}
    for returned in payment_return.items:
        if returned.payout_ref in by_ref:
            raise _unmatched(f"payout {returned.payout_ref} answered twice")
        by_ref[returned.payout_ref] = returned
    total = 0
    for index, payout in enumerate(order.payouts, start=1):
        item = by_ref.pop(payout_ref(order.hold_id, index), None)
        if item is None:
            raise _unmatched(f"payout {index} not answered")
        if item.currency != order.currency:
            raise _unmatched(f"payout {index} returned in another currency")
        if item.amount > payout.amount:
            raise _unmatched(f"payout {index} returned more than asked")
        if (item.institution_code, item.account_number) not in (
            (payout.institution_code, payout.account_number),
            ("", ""),  # OrgnlTxRef is optional: the reference alone names the payout
        ):
            raise _unmatched(f"payout {index} returned to another account")
        total += item.amount
    if by_ref:
        raise _unmatched(f"{len(by_ref)} returned transactions match no payout")
    return OrderAnswer(True, total)


def _unmatched(why: str) -> XmlRefused:
    return XmlRefused(XmlRefusal.UNMATCHED, f"the pacs.004 does not match the return order: {why}")


# --- a return refused -----------------------------------------------------------------------


def build_return_rejection(
    *,
    message_id: str,
    created_at: datetime,
    sender: str,
    instruction: ReturnInstruction,
    code: str,
    reason: str | None,
) -> bytes:
    """The camt.029 an institution refuses a return instruction with: RJCR, `code`, its words."""
    order = instruction.order
    words = "".join(f"<AddtlInf>{text(line)}</AddtlInf>" for line in chunks(reason or ""))
    case = f"<Cretr><Pty>{organisation(instruction.sender)}</Pty></Cretr>"
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<Document xmlns="{_CAMT_029}"><RsltnOfInvstgtn><Assgnmt>',
        f"<Id>{text(message_id)}</Id><Assgnr><Agt>{agent(sender)}</Agt></Assgnr>",
        f"<Assgne><Pty>{organisation(instruction.sender)}</Pty></Assgne>",
        f"<CreDtTm>{datetime_text(created_at)}</CreDtTm></Assgnmt>",
        f"<RslvdCase><Id>{order.hold_id.hex}</Id>{case}</RslvdCase>",
        "<Sts><Conf>RJCR</Conf></Sts><CxlDtls><OrgnlGrpInfAndSts>",
        f"<OrgnlMsgId>{text(instruction.message_id)}</OrgnlMsgId>",
        f"<OrgnlMsgNmId>{ORIGINAL_MESSAGE_NAME}</OrgnlMsgNmId></OrgnlGrpInfAndSts>",
    ]
    for index in range(1, len(order.payouts) + 1):
        parts.append(
            f"<TxInfAndSts><RslvdCase><Id>{payout_ref(order.hold_id, index)}</Id>{case}"
            f"</RslvdCase><TxCxlSts>RJCR</TxCxlSts><CxlStsRsnInf><Rsn><Cd>{text(code)}</Cd>"
            f"</Rsn>{words}</CxlStsRsnInf></TxInfAndSts>"
        )
    parts.append("</CxlDtls></RsltnOfInvstgtn></Document>\n")
    return "".join(parts).encode()


def read_return_answer(root: etree._Element, order: OrderReturn) -> OrderAnswer:
    """What an institution answered a return instruction with: a pacs.004 matched to the payouts
    (`match_payouts`), or a camt.029 rejecting it (every transaction RJCR: refused, with the
    reason). Anything else is `unmatched`: money goes back only with a pacs.004."""
    message = message_of(root)
    if message is Message.PACS_004:
        return match_payouts(order, read_payment_return(root))
    if message is not Message.CAMT_029:
        raise _unmatched("a return is answered by a pacs.004 or a camt.029")
    body = _R029.find(root, "RsltnOfInvstgtn")
    assert body is not None  # the schema requires it
    transactions = [t for d in _R029.all(body, "CxlDtls") for t in _R029.all(d, "TxInfAndSts")]
    statuses = {_R029.text(t, "TxCxlSts") or _R029.text(body, "Sts/Conf") for t in transactions}
    if not transactions or statuses != {"RJCR"}:
        raise _unmatched("a camt.029 answers a return only to reject it (RJCR)")
    reasons = _R029.all(transactions[0], "CxlStsRsnInf")
    code = next((c for r in reasons if (c := _R029.text(r, "Rsn/Cd"))), None)
    words = "".join(line for r in reasons for line in _R029.texts(r, "AddtlInf"))
    meaning = REJECTION_REASONS.get(code or "", (None, "reason not in Stopper's list"))[1]
    said = f"{code} {meaning}" if code else "no reason given"
    return OrderAnswer(False, 0, (said + (f": {words}" if words else ""))[:MAX_REASON])
