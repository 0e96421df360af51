"""`POST /v1/institutions/{code}/callbacks/iso20022`: an ISO 20022 institution's signed
camt.029.001.09, the later answers to a camt.056 it accepted (202), one per transaction.

The same signature headers, window, nonce and refusals as the JSON callback
(`CallbackHandler`), computed over the XML body; the document is read only once the signature
holds. A document that is not a valid camt.029 is refused whole (`XmlRefused`: 400 with the
schema error, or 413 too large); each answer is applied on its own and its outcome listed; an
answer Stopper cannot read (an unknown reason code, say) is refused alone, `invalid` with the
codec's reason, and counted in `stopper_iso20022_answers_refused_total`. A callback that moved
nothing and refused some of its answers (a replay, say) is refused with the first refusal's
reason: a camt.029 of one answer is refused exactly as a JSON callback would be.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from stopper import metrics
from stopper.adapters.institutions.iso20022 import (
    MAX_DOCUMENT_BYTES,
    Message,
    ResolvedItem,
    parse_document,
    read_resolution,
)
from stopper.api.bodies import read_capped
from stopper.app.callbacks import CallbackHandler, CallbackItem
from stopper.contracts.institutions import CallbackItemsAcceptedV1, CallbackItemV1
from stopper.contracts.reports import ErrorV1
from stopper.contracts.signing import NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER
from stopper.domain.messages import StatusKind
from stopper.errors import CallbackRefusal, CallbackRefused, XmlRefused


class Camt029Reader:
    """One callback's camt.029 as the answers it carries; remembers the document's own id."""

    def __init__(self, code: str) -> None:
        self._code = code
        self.message_id: str | None = None

    def __call__(self, body: bytes) -> list[CallbackItem]:
        try:
            resolution = read_resolution(parse_document(body))
        except XmlRefused as e:
            metrics.ISO20022_REFUSED.labels(self._code, e.reason.value).inc()
            raise
        self.message_id = resolution.message_id
        return [self._item(item) for item in resolution.items]

    def _item(self, item: ResolvedItem) -> CallbackItem:
        if item.refusal is not None:
            metrics.ISO20022_REFUSED.labels(self._code, item.refusal.value).inc()
            refused = CallbackRefused(
                CallbackRefusal.INVALID, f"{item.refusal.value}: {item.detail or 'unreadable'}"
            )
            return CallbackItem(item.idempotency_key, item.hold_id, None, refused)
        status = item.status
        if status is None or status.kind is StatusKind.PENDING:
            return CallbackItem(item.idempotency_key, item.hold_id, None)
        return CallbackItem(item.idempotency_key, item.hold_id, status.answer)


def router(callbacks: CallbackHandler) -> APIRouter:
    routes = APIRouter()

    @routes.post(
        "/v1/institutions/{code}/callbacks/iso20022",
        summary="An ISO 20022 institution's signed camt.029: the answers to a camt.056 it "
        "accepted earlier, one per transaction.",
        response_model=CallbackItemsAcceptedV1,
        responses={
            400: {
                "model": ErrorV1,
                "description": "Not a valid camt.029.001.09 (malformed, a DOCTYPE or entities, "
                "another message, against the schema): the schema error.",
            },
            401: {"model": ErrorV1, "description": "Missing, stale or wrong signature."},
            403: {"model": ErrorV1, "description": "No such request was sent to you."},
            404: {"model": ErrorV1, "description": "Unknown institution."},
            409: {
                "model": ErrorV1,
                "description": "Nonce replayed, or the hold's state does not allow this answer.",
            },
            413: {"model": ErrorV1, "description": "Body too large."},
            422: {
                "model": ErrorV1,
                "description": "A valid camt.029 whose answers cannot be read (an unknown "
                "reason code, no amount held, not a case Stopper opened).",
            },
        },
        openapi_extra={
            "parameters": [
                {"name": h, "in": "header", "required": True, "schema": {"type": "string"}}
                for h in (TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER)
            ],
            "requestBody": {
                "required": True,
                "description": f"A camt.029.001.09 Document ({Message.CAMT_029.namespace}), "
                "UTF-8, no DOCTYPE.",
                "content": {"application/xml": {"schema": {"type": "string"}}},
            },
        },
    )
    async def institution_iso20022_callback(code: str, request: Request) -> Response:
        body = await read_capped(request, MAX_DOCUMENT_BYTES)
        reader = Camt029Reader(code)
        results = await callbacks.handle_items(code, request.headers, body, reader)
        accepted = CallbackItemsAcceptedV1(
            message_id=reader.message_id or "",
            items=[
                CallbackItemV1(
                    idempotency_key=r.idempotency_key,
                    hold_id=r.hold_id,
                    outcome=r.outcome,
                    detail=r.refused.detail if r.refused is not None else None,
                )
                for r in results
            ],
        )
        return JSONResponse(accepted.model_dump(mode="json"))

    return routes
