"""Releases: an operator releases a hold whose account was cleared; an operator, or the agency
that filed the report (its own intake key), withdraws a case and every hold of it is released.
Each answers 202 with what was ordered; the institution's confirmation moves a hold to
`released` later (the agency's `hold_released` event)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from stopper.api.auth import caller, operator
from stopper.api.refusals import error_response
from stopper.app.auth import Caller
from stopper.app.queries import CaseQueries
from stopper.app.releases import HoldRelease, ReleaseDesk, ReleaseGround, ReleaseOutcome
from stopper.contracts.cases import SkippedHoldV1
from stopper.contracts.releases import HoldReleasedV1, HoldReleaseV1, ReleaseV1, WithdrawnV1
from stopper.contracts.reports import ErrorV1

_NO_CASE = "no such case; a report accepted moments ago may still be queued"


def _release_v1(result: HoldRelease) -> HoldReleaseV1:
    assert result.state is not None
    return HoldReleaseV1.model_validate(
        {"hold_id": result.hold_id, "outcome": result.outcome.value, "state": result.state.value}
    )


def router(releases: ReleaseDesk, queries: CaseQueries) -> APIRouter:
    routes = APIRouter()

    @routes.post(
        "/v1/holds/{hold_id}/release",
        response_model=HoldReleasedV1,
        status_code=202,
        responses={
            404: {"model": ErrorV1, "description": "No such hold."},
            409: {
                "model": ErrorV1,
                "description": "The hold cannot be released: its funds are being or were "
                "returned, it is released already, or nothing is held (not found, rejected).",
            },
        },
        summary="Release a hold whose account was cleared: its institution is asked to lift the "
        "stop (or freeze) and to carry out none of the hold's stop requests still to reach it; "
        "the hold is `releasing` until it confirms, then `released`. A hold whose stop request "
        "never left is released at once.",
    )
    async def release_hold(
        hold_id: UUID, body: ReleaseV1, who: Annotated[Caller, Depends(operator)]
    ) -> Response:
        result = await releases.release(
            hold_id,
            ground=ReleaseGround.ACCOUNT_CLEARED,
            reason=body.reason,
            actor=who.actor(body.requested_by),
        )
        if result.outcome is ReleaseOutcome.UNKNOWN_HOLD:
            return error_response(404, "no such hold")
        if result.outcome is ReleaseOutcome.NOT_ALLOWED:
            return error_response(409, result.reason or "the hold cannot be released")
        answer = HoldReleasedV1.model_validate(_release_v1(result).model_dump())
        return JSONResponse(answer.model_dump(mode="json"), status_code=202)

    @routes.post(
        "/v1/cases/{case_id}/withdraw",
        response_model=WithdrawnV1,
        status_code=202,
        responses={
            403: {"model": ErrorV1, "description": "Neither an operator nor an intake key."},
            404: {"model": ErrorV1, "description": "No such case (or another agency's)."},
            409: {
                "model": ErrorV1,
                "description": "Nothing to release: every hold of the case is over or its "
                "funds are going back to the victims.",
            },
        },
        summary="Withdraw a case's report: every hold of the case is released (as "
        "/v1/holds/{hold_id}/release does). An operator key, or the intake key of the agency "
        "that filed the report.",
    )
    async def withdraw_case(
        case_id: UUID, body: ReleaseV1, who: Annotated[Caller, Depends(caller)]
    ) -> Response:
        if not who.is_operator:
            agency = await queries.case_agency(case_id)
            if agency is None or not who.sees_agency(agency):
                return error_response(404, _NO_CASE)
        withdrawal = await releases.withdraw(
            case_id, reason=body.reason, actor=who.actor(body.requested_by)
        )
        if withdrawal is None:
            return error_response(404, _NO_CASE)
        skipped = [
            SkippedHoldV1(hold_id=h.hold_id, reason=h.reason or "not released")
            for h in withdrawal.skipped
        ]
        if not withdrawal.released:
            why = "; ".join(sorted({s.reason for s in skipped})) or "the case has no holds"
            return error_response(409, f"nothing to release: {why}")
        answer = WithdrawnV1(
            case_id=case_id,
            releases=[_release_v1(h) for h in withdrawal.released],
            skipped=skipped,
        )
        return JSONResponse(answer.model_dump(mode="json"), status_code=202)

    return routes
