"""Operators' orders: re-apply a stop, freeze a hold, return a case's frozen funds. Each is
taken (202) once recorded; the institution's confirmation moves the hold later. A return (and a
freeze, when STOPPER_APPROVALS_FREEZES is on) is recorded pending a second operator's approval
(`stopper.api.routers.approvals`)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from stopper.api.auth import operator
from stopper.api.refusals import error_response
from stopper.api.routers.approvals import answer_response
from stopper.app.approvals import ApprovalDesk, Outcome, signature
from stopper.app.auth import Caller
from stopper.app.deadlines import DeadlineKeeper, ReapplyOutcome
from stopper.app.freezes import FreezeDesk, FreezeOrderOutcome
from stopper.contracts.approvals import ReturnOrderAnswerV1
from stopper.contracts.cases import (
    FreezeOrderedV1,
    FreezeOrderV1,
    ReapplyAcceptedV1,
    ReapplyV1,
    ReturnOrderV1,
)
from stopper.contracts.reports import ErrorV1


def router(deadlines: DeadlineKeeper, freezes: FreezeDesk, approvals: ApprovalDesk) -> APIRouter:
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
            403: {
                "model": ErrorV1,
                "description": "Freezes need a second operator and this key names no holder.",
            },
            404: {"model": ErrorV1, "description": "No such hold."},
            409: {"model": ErrorV1, "description": "The hold is not stopped or frozen."},
        },
        summary="Order the formal freeze of a stopped hold (or renew a freeze) under a legal "
        "document; the institution's confirmation moves the hold to `frozen`. With "
        "STOPPER_APPROVALS_FREEZES on, the order waits for a second operator "
        "(`approval: pending`, approved at /v1/freeze-orders/{order_id}/approve).",
    )
    async def freeze_hold(
        hold_id: UUID, body: FreezeOrderV1, who: Annotated[Caller, Depends(operator)]
    ) -> Response:
        if approvals.freezes_need_approval:
            pending = await approvals.order_freeze(
                hold_id,
                document_ref=body.legal_document_ref,
                requester=signature(who, body.requested_by),
            )
            if pending.outcome is not Outcome.PENDING or pending.order is None:
                return answer_response(pending, 202)
            return JSONResponse(
                FreezeOrderedV1(
                    hold_id=hold_id,
                    legal_document_ref=body.legal_document_ref,
                    approval="pending",
                    order_id=pending.order.id,
                ).model_dump(mode="json"),
                status_code=202,
            )
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
        response_model=ReturnOrderAnswerV1,
        status_code=202,
        responses={
            403: {"model": ErrorV1, "description": "This key names no holder."},
            404: {"model": ErrorV1, "description": "No such case."},
            409: {
                "model": ErrorV1,
                "description": "Nothing to return: no frozen hold owes the victims anything.",
            },
        },
        summary="Order the return of a case's frozen funds to its victims under a legal "
        "document. Nothing is sent yet: the order waits (`approval: pending`) for a second "
        "operator at /v1/return-orders/{order_id}/approve. The answer says what it would do "
        "now: each frozen hold split among the victims whose money reached it (computed again "
        "when approved); once approved the holds move to `returning`, then `returned` when "
        "their institutions confirm.",
    )
    async def order_returns(
        case_id: UUID, body: ReturnOrderV1, who: Annotated[Caller, Depends(operator)]
    ) -> Response:
        answer = await approvals.order_return(
            case_id,
            document_ref=body.legal_document_ref,
            requester=signature(who, body.requested_by),
            hold_ids=body.hold_ids,
        )
        return answer_response(answer, 202)

    return routes
