"""ISO 20022 for institutions: recalls as camt.056.001.08, answers as camt.029.001.09, returns
confirmed by pacs.004.001.09, read safely and checked against the official schemas.

The codec speaks the domain's types (`model.py`); lxml stays inside this package. README's
"ISO 20022 for integrators" lists every field written or read and the code lists.
"""

from stopper.adapters.institutions.iso20022.codes import CancellationStatus
from stopper.adapters.institutions.iso20022.documents import (
    MAX_DOCUMENT_BYTES,
    Message,
    message_of,
    parse_document,
)
from stopper.adapters.institutions.iso20022.fields import cxl_id_for, key_for_cxl_id, payout_ref
from stopper.adapters.institutions.iso20022.model import (
    EMERGENCY_STOP_BASIS,
    ItemAnswer,
    ItemRefusal,
    OriginalPayment,
    PaymentReturn,
    Recall,
    RecallItem,
    Resolution,
    ResolvedItem,
    ReturnedItem,
    ReturnInstruction,
)
from stopper.adapters.institutions.iso20022.recall import build_recall, read_recall
from stopper.adapters.institutions.iso20022.resolution import build_resolution, read_resolution
from stopper.adapters.institutions.iso20022.returns import (
    build_payment_return,
    build_return_instruction,
    build_return_rejection,
    match_payouts,
    read_payment_return,
    read_return_answer,
    read_return_instruction,
)

__all__ = [
    "EMERGENCY_STOP_BASIS",
    "MAX_DOCUMENT_BYTES",
    "CancellationStatus",
    "ItemAnswer",
    "ItemRefusal",
    "Message",
    "OriginalPayment",
    "PaymentReturn",
    "Recall",
    "RecallItem",
    "Resolution",
    "ResolvedItem",
    "ReturnInstruction",
    "ReturnedItem",
    "build_payment_return",
    "build_recall",
    "build_resolution",
    "build_return_instruction",
    "build_return_rejection",
    "cxl_id_for",
    "key_for_cxl_id",
    "match_payouts",
    "message_of",
    "parse_document",
    "payout_ref",
    "read_payment_return",
    "read_recall",
    "read_resolution",
    "read_return_answer",
    "read_return_instruction",
]
