"""`POST /v1/reports`: a police intake system files a fraud report (`ReportAcceptance`)."""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from stopper import metrics
from stopper.api.auth import filer
from stopper.api.bodies import read_capped
from stopper.api.openapi import json_body
from stopper.api.refusals import error_response
from stopper.app.acceptance import ReportAcceptance
from stopper.app.auth import Caller
from stopper.contracts.reports import ErrorV1, FraudReportV1, ReportAcceptedV1
from stopper.errors import BodyTooLarge, BusRefused, BusUnavailable

log = logging.getLogger(__name__)

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorV1, "description": why}
    for status, why in {
        400: "The body is not valid UTF-8 JSON.",
        409: "This report_id was already used for a report with different content.",
        413: "The body is larger than the configured limit.",
        422: "The report breaks a rule; `errors` says which and where.",
        503: "Stopper cannot take reports right now; retry later (nothing was recorded).",
    }.items()
}


def router(acceptance: ReportAcceptance, *, limit: int, public_url: str) -> APIRouter:
    """`limit`: the largest body taken; `public_url`: the prefix of the status URLs answered."""
    routes = APIRouter()

    @routes.post(
        "/v1/reports",
        status_code=202,
        response_model=ReportAcceptedV1,
        responses={
            200: {"model": ReportAcceptedV1, "description": "The same report was received before."},
            **_ERRORS,
        },
        openapi_extra={"requestBody": json_body(FraudReportV1)},
        summary="File a fraud report: opens its case and asks for a stop on every account.",
    )
    async def post_report(request: Request, who: Annotated[Caller, Depends(filer)]) -> Response:
        started = time.perf_counter()
        try:
            raw = await read_capped(request, limit)
        except BodyTooLarge:
            # Refused before acceptance could see it; counted with the reports it rejects.
            metrics.REPORTS_RECEIVED.labels(outcome="rejected").inc()
            raise
        try:
            accepted = await acceptance.accept(raw, who)
        except BusUnavailable as e:
            log.warning("a report could not be queued: %s", e)
            return error_response(
                503, "the report could not be queued; retry later", headers={"Retry-After": "5"}
            )
        except BusRefused as e:
            # No Retry-After: the same report would be refused again (too large for the broker,
            # or a topic this process may not write): a person must look.
            log.error("the bus refused a report: %s", e)
            return error_response(500, "the report could not be queued; retrying will not help")
        answer = ReportAcceptedV1(
            report_id=accepted.report_id,
            case_id=str(accepted.case_id),
            status_url=f"{public_url}/v1/cases/{accepted.case_id}",
        )
        if accepted.duplicate:
            duplicate = answer.model_copy(update={"duplicate": True})
            return JSONResponse(duplicate.model_dump(mode="json"), status_code=200)
        metrics.HTTP_INTAKE_DURATION.observe(time.perf_counter() - started)
        return JSONResponse(
            answer.model_dump(mode="json"),
            status_code=202,
            headers={"Location": answer.status_url},
        )

    return routes
