"""Case queries: one case (with the cases it shares accounts with), its money trail, the list of
cases and of holds. An intake key sees its own agency's cases only; another agency's case is
answered as no case at all."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response

from stopper.api.auth import caller, operator
from stopper.api.refusals import error_response
from stopper.api.wire import case_summary_v1, case_v1, hold_list_item_v1, trail_v1
from stopper.app.auth import Caller
from stopper.app.mules import MuleRegistry
from stopper.app.queries import CaseQueries
from stopper.contracts.cases import CaseV1, TrailV1
from stopper.contracts.operations import CaseListV1, HoldListV1
from stopper.contracts.reports import ErrorV1
from stopper.domain.holds import HoldState

_NO_CASE = "no such case; a report accepted moments ago may still be queued"


def router(queries: CaseQueries, mules: MuleRegistry) -> APIRouter:
    routes = APIRouter()

    @routes.get(
        "/v1/cases/{case_id}",
        response_model=CaseV1,
        responses={404: {"model": ErrorV1, "description": "No such case (yet)."}},
    )
    async def get_case(case_id: UUID, who: Annotated[Caller, Depends(caller)]) -> Response:
        view = await queries.get_case(case_id)
        if view is None or not who.sees_agency(view.agency_code):
            return error_response(404, _NO_CASE)
        # Another agency's linked case shows as its id, agency and the shared account (masked,
        # and already in this case): that it exists, never what is in it.
        links = await mules.case_links(case_id)
        return JSONResponse(case_v1(view, links).model_dump(mode="json"))

    @routes.get(
        "/v1/cases/{case_id}/trail",
        response_model=TrailV1,
        responses={404: {"model": ErrorV1, "description": "No such case (yet)."}},
        summary="The money trail of a case: holds per layer and the onward transfers between.",
    )
    async def get_trail(case_id: UUID, who: Annotated[Caller, Depends(caller)]) -> Response:
        agency = await queries.case_agency(case_id)
        view = await queries.get_trail(case_id)
        if view is None or agency is None or not who.sees_agency(agency):
            return error_response(404, _NO_CASE)
        return JSONResponse(trail_v1(view).model_dump(mode="json"))

    @routes.get(
        "/v1/cases",
        response_model=CaseListV1,
        summary="Cases, newest first: by default those with a hold still in play.",
    )
    async def list_cases(
        who: Annotated[Caller, Depends(caller)],
        active: bool = Query(default=True, description="Only cases with a hold still in play."),
        limit: int = Query(default=50, ge=1, le=500),
    ) -> Response:
        views = await queries.list_cases(
            active_only=active,
            limit=limit,
            agency_code=None if who.is_operator else who.agency_code,
        )
        body = CaseListV1(cases=[case_summary_v1(v) for v in views])
        return JSONResponse(body.model_dump(mode="json"))

    @routes.get(
        "/v1/holds",
        response_model=HoldListV1,
        summary="Holds in the given states (default: failed, the ones waiting for a person).",
    )
    async def list_holds(
        _: Annotated[Caller, Depends(operator)],
        state: Annotated[
            list[HoldState] | None, Query(description="Repeatable; default: failed.")
        ] = None,
        order: Literal["recent", "deadline"] = Query(
            default="recent",
            description="recent: last changed first; deadline: closest to lapsing first.",
        ),
        limit: int = Query(default=100, ge=1, le=1000),
        unhandled: bool = Query(
            default=False,
            description="Only holds no person has marked handled since their last transition "
            "(POST /v1/holds/{hold_id}/handled): the ones still waiting for a person.",
        ),
    ) -> Response:
        views = await queries.list_holds(
            states=[s.value for s in state or [HoldState.FAILED]],
            limit=limit,
            soonest_first=order == "deadline",
            unhandled_only=unhandled,
        )
        body = HoldListV1(holds=[hold_list_item_v1(v) for v in views])
        return JSONResponse(body.model_dump(mode="json"))

    return routes
