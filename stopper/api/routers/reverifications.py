"""Re-verification on demand: a job that asks every institution (or the one named) again about
each stopped first-level hold, run by the workers at a lower priority than live work; its
progress. Operators only."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response

from stopper.api.auth import operator
from stopper.api.refusals import error_response
from stopper.app.auth import Caller
from stopper.app.reverify import AMOUNT_DIFFERS, CONFIRMED, LIFTED, Reverifier
from stopper.app.reverify_ports import Reverification
from stopper.contracts.reports import ErrorV1
from stopper.contracts.reverifications import (
    ReverificationListV1,
    ReverificationRunningV1,
    ReverificationV1,
    ReverifyV1,
)
from stopper.registry import Registry


def reverification_v1(job: Reverification) -> ReverificationV1:
    outcomes = dict(job.progress.outcomes)
    return ReverificationV1(
        id=job.id,
        institution=job.institution_code,
        state=job.state.value,
        holds=job.holds,
        asked=job.progress.asked,
        confirmed=outcomes.get(CONFIRMED, 0),
        diverged=outcomes.get(LIFTED, 0) + outcomes.get(AMOUNT_DIFFERS, 0),
        unreachable=job.progress.unreachable,
        remaining=job.remaining,
        outcomes=outcomes,
        requested_by=job.requested_by,
        started_at=job.started_at,
        updated_at=job.updated_at,
        finished_at=job.finished_at,
    )


def router(reverifier: Reverifier, registry: Registry) -> APIRouter:
    routes = APIRouter()

    @routes.post(
        "/v1/reverifications",
        response_model=ReverificationV1,
        status_code=202,
        responses={
            404: {"model": ErrorV1, "description": "No such institution."},
            409: {
                "model": ReverificationRunningV1,
                "description": "A re-verification whose scope overlaps this one is running "
                "(one of every institution overlaps all): it is returned, to follow instead.",
            },
        },
        summary="Re-verify: ask every institution (or the one named) again whether each "
        "stopped first-level hold is still stopped. A job the workers run page by page behind "
        "live work; answers at once with its id and how many holds it will ask about.",
    )
    async def start(body: ReverifyV1, who: Annotated[Caller, Depends(operator)]) -> Response:
        if body.institution is not None and body.institution not in registry:
            return error_response(404, "no such institution")
        begun = await reverifier.start(body.institution, who.actor(body.requested_by))
        view = reverification_v1(begun.job)
        if not begun.started:
            scope = view.institution or "every institution"
            running = ReverificationRunningV1(
                detail=f"a re-verification of {scope} is running ({view.id}): follow it, or "
                "ask again once it has finished",
                running=view,
            )
            return JSONResponse(running.model_dump(mode="json"), status_code=409)
        return JSONResponse(view.model_dump(mode="json"), status_code=202)

    @routes.get(
        "/v1/reverifications",
        response_model=ReverificationListV1,
        summary="Re-verification jobs, the newest first, with their progress.",
    )
    async def jobs(
        _: Annotated[Caller, Depends(operator)], limit: int = Query(default=20, ge=1, le=200)
    ) -> Response:
        found = await reverifier.jobs(limit)
        body = ReverificationListV1(reverifications=[reverification_v1(j) for j in found])
        return JSONResponse(body.model_dump(mode="json"))

    @routes.get(
        "/v1/reverifications/{job_id}",
        response_model=ReverificationV1,
        responses={404: {"model": ErrorV1, "description": "No such re-verification."}},
        summary="One re-verification job: asked, confirmed, diverged, unreachable, by outcome.",
    )
    async def job(job_id: UUID, _: Annotated[Caller, Depends(operator)]) -> Response:
        found = await reverifier.job(job_id)
        if found is None:
            return error_response(404, "no such re-verification")
        return JSONResponse(reverification_v1(found).model_dump(mode="json"))

    return routes
