"""Operators' orders: re-apply a stop, freeze a hold, return a case's frozen funds. Each is
taken (202) once recorded; the institution's confirmation moves the hold later."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from stopper.api.auth import operator
from stopper.api.refusals import error_response
from stopper.api.wire import returns_ordered_v1
from stopper.app.auth import Caller
from stopper.app.deadlines import DeadlineKeeper, ReapplyOutcome
from stopper.app.freezes import FreezeDesk, FreezeOrderOutcome
from stopper.app.returns import ReturnDesk
from stopper.contracts.cases import (
    FreezeOrderedV1,
    FreezeOrderV1,
    ReapplyAcceptedV1,
    ReapplyV1,
    ReturnOrderV1,
    ReturnsOrderedV1,
)
from stopper.contracts.reports import ErrorV1


def router(deadlines: DeadlineKeeper, freezes: FreezeDesk, returns: ReturnDesk) -> APIRouter:
    routes = APIRouter()

    @routes.post(
        "/v1/holds/{hold_id}/reapply",
        response_model=ReapplyAcceptedV1,
        responses={
            404: {"model": ErrorV1, "description": "No such hold."},
            409: {
                "model": ErrorV1,
                "description": "Not expired or stopped, or already "
                "re-applied the most times allowed.",
            },
        },
        summary="Re-apply an expired or expiring emergency stop (at most twice per hold).",
    )
    async def reapply_hold(
        hold_id: UUID, body: ReapplyV1, who: Annotated[Caller, Depends(operator)]
    ) -> Response:
        outcome = await deadlines.reapply(
            hold_id, actor=who.actor(body.requested_by), reason=body.reason
        )
        if outcome is ReapplyOutcome.UNKNOWN_HOLD:
            return error_response(404, "no such hold")
        if outcome is ReapplyOutcome.NOT_ALLOWED:
            return error_response(
                409, "only an expired or stopped hold may be re-applied, at most twice"
            )
        return JSONResponse(
            ReapplyAcceptedV1(hold_id=hold_id, state="requested").model_dump(mode="json"),
            status_code=202,
        )

    @routes.post(
        "/v1/holds/{hold_id}/freeze",
        response_model=FreezeOrderedV1,
        status_code=202,
        responses={
            404: {"model": ErrorV1, "description": "No such hold."},
            409: {"model": ErrorV1, "description": "The hold is not stopped or frozen."},
        },
        summary="Order the formal freeze of a stopped hold (or renew a freeze) under a legal "
        "document; the institution's confirmation moves the hold to `frozen`.",
    )
    async def freeze_hold(
        hold_id: UUID, body: FreezeOrderV1, who: Annotated[Caller, Depends(operator)]
    ) -> Response:
        outcome = await freezes.order(
            hold_id, document_ref=body.legal_document_ref, actor=who.actor(body.requested_by)
        )
        if outcome is FreezeOrderOutcome.UNKNOWN_HOLD:
            return error_response(404, "no such hold")
        if outcome is FreezeOrderOutcome.NOT_ALLOWED:
            return error_response(409, "only a stopped or frozen hold can be frozen")
        return JSONResponse(
            FreezeOrderedV1(hold_id=hold_id, legal_document_ref=body.legal_document_ref).model_dump(
                mode="json"
            ),
            status_code=202,
        )

    @routes.post(
        "/v1/cases/{case_id}/returns",
        response_model=ReturnsOrderedV1,
        status_code=202,
        responses={
            404: {"model": ErrorV1, "description": "No such case."},
            409: {
                "model": ErrorV1,
                "description": "Nothing to return: no frozen hold owes the victims anything.",
            },
        },
        summary="Return a case's frozen funds to its victims under a legal document: each "
        "frozen hold is split among the victims whose money reached it, and moves to "
        "`returning`, then `returned` when its institution confirms.",
    )
    async def order_returns(
        case_id: UUID, body: ReturnOrderV1, who: Annotated[Caller, Depends(operator)]
    ) -> Response:
        result = await returns.order(
            case_id,
            document_ref=body.legal_document_ref,
            actor=who.actor(body.requested_by),
            hold_ids=body.hold_ids,
        )
        if result is None:
            return error_response(404, "no such case")
        if not result.started:
            reasons = sorted(set(result.skipped.values())) or ["the case has no holds"]
            return error_response(409, "nothing to return: " + "; ".join(reasons))
        return JSONResponse(
            returns_ordered_v1(case_id, result).model_dump(mode="json"),
            status_code=202,
        )

    return routes
