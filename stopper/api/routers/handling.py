"""Operators mark a hold Stopper could not settle (failed, unconfirmed) as handled, with a note
kept in its audit; it leaves the "needs a person" lists until it moves again."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from stopper.api.auth import operator
from stopper.api.refusals import error_response
from stopper.app.auth import Caller
from stopper.app.handling import HandledOutcome, HandlingDesk
from stopper.contracts.cases import HandledRecordedV1, HandledV1
from stopper.contracts.reports import ErrorV1


def router(handling: HandlingDesk) -> APIRouter:
    routes = APIRouter()

    @routes.post(
        "/v1/holds/{hold_id}/handled",
        response_model=HandledRecordedV1,
        responses={
            404: {"model": ErrorV1, "description": "No such hold."},
            409: {"model": ErrorV1, "description": "The hold is not failed or unconfirmed."},
        },
        summary="Mark a failed or unconfirmed hold as handled by a person, with a note: the "
        "note goes to the hold's audit (its state does not move) and the hold leaves the "
        "lists of holds needing a person until its next transition.",
    )
    async def mark_handled(
        hold_id: UUID, body: HandledV1, who: Annotated[Caller, Depends(operator)]
    ) -> Response:
        outcome = await handling.mark_handled(
            hold_id, note=body.note, actor=who.actor(body.requested_by)
        )
        if outcome is HandledOutcome.UNKNOWN_HOLD:
            return error_response(404, "no such hold")
        if outcome is HandledOutcome.NOT_ALLOWED:
            return error_response(409, "only a failed or unconfirmed hold can be marked handled")
        return JSONResponse(HandledRecordedV1(hold_id=hold_id).model_dump(mode="json"))

    return routes
