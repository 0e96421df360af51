"""Four eyes: return orders (and, when switched on, freeze orders) wait here for a second
operator, who approves (the order is made) or rejects it with a reason. The same key, or the
same person under another key, is refused (403) with the reason; an order already decided is a
409."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response

from stopper.api.auth import operator
from stopper.api.refusals import error_response
from stopper.api.wire import returns_ordered_v1
from stopper.app.approvals import (
    ApprovalAnswer,
    ApprovalDesk,
    ApprovalOrder,
    ApprovalStatus,
    OrderKind,
    Outcome,
    Signature,
    signature,
)
from stopper.app.auth import Caller
from stopper.contracts.approvals import (
    ApprovalOrdersV1,
    ApprovalOrderV1,
    ApproveV1,
    RejectV1,
    ReturnOrderAnswerV1,
    SignatureV1,
)
from stopper.contracts.reports import ErrorV1

# An answer that is not the order: its status code, by outcome.
REFUSAL_STATUS: dict[Outcome, int] = {
    Outcome.UNKNOWN: 404,
    Outcome.REFUSED: 403,
    Outcome.ALREADY_DECIDED: 409,
    Outcome.NOTHING_TO_DO: 409,
}
_DECISION_REFUSALS: dict[int | str, dict[str, object]] = {
    403: {
        "model": ErrorV1,
        "description": "Not another person: the key that ordered it, the same person under "
        "another key, or a key that names no holder.",
    },
    404: {"model": ErrorV1, "description": "No such order."},
    409: {"model": ErrorV1, "description": "Already approved or rejected."},
}
_PATHS = {OrderKind.RETURN: "return-orders", OrderKind.FREEZE: "freeze-orders"}


def signature_v1(s: Signature) -> SignatureV1:
    return SignatureV1(name=s.name, person=s.person, key_id=s.key_id)


def approval_order_v1(order: ApprovalOrder) -> ApprovalOrderV1:
    return ApprovalOrderV1(
        order_id=order.id,
        kind=order.kind.value,
        approval=order.status.value,
        case_id=order.case_id,
        hold_id=order.hold_id,
        hold_ids=None if order.hold_ids is None else list(order.hold_ids),
        legal_document_ref=order.document_ref,
        requester=signature_v1(order.requester),
        requested_at=order.requested_at,
        decider=None if order.decider is None else signature_v1(order.decider),
        decided_at=order.decided_at,
        reason=order.reason,
    )


def answer_response(answer: ApprovalAnswer, status: int) -> Response:
    """The order (with a return's holds and amounts) on success, the refusal otherwise."""
    if answer.outcome in REFUSAL_STATUS or answer.order is None:
        return error_response(REFUSAL_STATUS.get(answer.outcome, 409), answer.detail)
    body: ApprovalOrderV1 = approval_order_v1(answer.order)
    if answer.returns is not None:
        made = returns_ordered_v1(answer.order.case_id, answer.returns)
        body = ReturnOrderAnswerV1(**body.model_dump(), returns=made.returns, skipped=made.skipped)
    return JSONResponse(body.model_dump(mode="json"), status_code=status)


def router(approvals: ApprovalDesk) -> APIRouter:
    routes = APIRouter()
    for kind in OrderKind:
        _decision_routes(routes, approvals, kind)
    return routes


def _decision_routes(routes: APIRouter, approvals: ApprovalDesk, kind: OrderKind) -> None:
    path = f"/v1/{_PATHS[kind]}"
    answer_model = ReturnOrderAnswerV1 if kind is OrderKind.RETURN else ApprovalOrderV1
    what = kind.value

    @routes.get(
        path,
        response_model=ApprovalOrdersV1,
        summary=f"{what.capitalize()} orders, oldest first: `status=pending` lists what waits "
        "for a second operator.",
        name=f"list_{what}_orders",
    )
    async def list_orders(
        _: Annotated[Caller, Depends(operator)],
        status: Annotated[Literal["pending", "approved", "rejected"] | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> Response:
        wanted = None if status is None else ApprovalStatus(status)
        orders = await approvals.listing(kind, wanted, limit)
        return JSONResponse(
            ApprovalOrdersV1(orders=[approval_order_v1(o) for o in orders]).model_dump(mode="json")
        )

    @routes.get(
        path + "/{order_id}",
        response_model=ApprovalOrderV1,
        responses={404: {"model": ErrorV1, "description": "No such order."}},
        summary=f"One {what} order: who asked, who decided, and when.",
        name=f"get_{what}_order",
    )
    async def get_order(order_id: UUID, _: Annotated[Caller, Depends(operator)]) -> Response:
        order = await approvals.get(kind, order_id)
        if order is None:
            return error_response(404, f"no such {what} order")
        return JSONResponse(approval_order_v1(order).model_dump(mode="json"))

    @routes.post(
        path + "/{order_id}/approve",
        response_model=answer_model,
        status_code=202,
        responses=_DECISION_REFUSALS,
        summary=f"Approve a pending {what} order, as another operator than the one who asked: "
        f"the {what} is made now (the institution's confirmation follows).",
        name=f"approve_{what}_order",
    )
    async def approve(
        order_id: UUID, body: ApproveV1, who: Annotated[Caller, Depends(operator)]
    ) -> Response:
        answer = await approvals.approve(kind, order_id, signature(who, body.approved_by))
        return answer_response(answer, 202)

    @routes.post(
        path + "/{order_id}/reject",
        response_model=ApprovalOrderV1,
        responses=_DECISION_REFUSALS,
        summary=f"Reject a pending {what} order with a reason, as another operator than the one "
        "who asked: it is closed and nothing is sent.",
        name=f"reject_{what}_order",
    )
    async def reject(
        order_id: UUID, body: RejectV1, who: Annotated[Caller, Depends(operator)]
    ) -> Response:
        answer = await approvals.reject(
            kind, order_id, signature(who, body.rejected_by), body.reason
        )
        if answer.outcome is Outcome.REJECTED and answer.order is not None:
            return JSONResponse(approval_order_v1(answer.order).model_dump(mode="json"))
        return answer_response(answer, 200)
