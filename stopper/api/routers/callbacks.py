"""`POST /v1/institutions/{code}/callbacks`: an institution's signed answer to a request it
accepted earlier (`CallbackHandler`; its refusals become status codes in `api.refusals`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from stopper.api.bodies import read_capped
from stopper.api.openapi import json_body
from stopper.app.callbacks import CallbackHandler
from stopper.contracts.institutions import CallbackAcceptedV1, CallbackV1
from stopper.contracts.reports import ErrorV1
from stopper.contracts.signing import NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER

# A callback is a few hundred bytes: far below the reports' limit.
CALLBACK_LIMIT = 64 * 1024


def router(callbacks: CallbackHandler) -> APIRouter:
    routes = APIRouter()

    @routes.post(
        "/v1/institutions/{code}/callbacks",
        summary="An institution's signed answer to a stop request it accepted earlier.",
        response_model=CallbackAcceptedV1,
        responses={
            401: {"model": ErrorV1, "description": "Missing, stale or wrong signature."},
            403: {"model": ErrorV1, "description": "No such request was sent to you."},
            404: {"model": ErrorV1, "description": "Unknown institution."},
            409: {
                "model": ErrorV1,
                "description": "Nonce replayed, or the hold's state does not allow this answer.",
            },
            413: {"model": ErrorV1, "description": "Body too large."},
            422: {"model": ErrorV1, "description": "Signed, but not a valid callback."},
        },
        openapi_extra={
            "parameters": [
                {"name": h, "in": "header", "required": True, "schema": {"type": "string"}}
                for h in (TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER)
            ],
            "requestBody": json_body(CallbackV1),
        },
    )
    async def institution_callback(code: str, request: Request) -> Response:
        body = await read_capped(request, CALLBACK_LIMIT)
        result = await callbacks.handle(code, request.headers, body)
        return JSONResponse(
            CallbackAcceptedV1(hold_id=result.hold_id, outcome=result.outcome.value).model_dump(
                mode="json"
            )
        )

    return routes
