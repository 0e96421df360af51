"""Operators' view of the institutions: their health, reconciliation on demand, and the
divergences reconciliation found. Operators only."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response

from stopper.api.auth import operator
from stopper.api.refusals import error_response
from stopper.api.wire import institution_status_list_v1
from stopper.app.auth import Caller
from stopper.app.health import FRESH_S
from stopper.app.ports import Clock
from stopper.app.queries import CaseQueries
from stopper.app.reconcile import Reconciler
from stopper.contracts.operations import (
    DivergenceListV1,
    DivergenceV1,
    InstitutionStatusListV1,
    ReconcileV1,
    ReconciliationV1,
)
from stopper.contracts.reports import ErrorV1
from stopper.registry import Registry


def router(
    queries: CaseQueries, registry: Registry, clock: Clock, reconciler: Reconciler
) -> APIRouter:
    routes = APIRouter()

    @routes.get(
        "/v1/institutions/status",
        response_model=InstitutionStatusListV1,
        summary="Each institution's health as the workers see it: breaker, recent attempts, "
        "failures and latency (the troubled first).",
    )
    async def institutions_status(_: Annotated[Caller, Depends(operator)]) -> Response:
        since = clock.now() - timedelta(seconds=FRESH_S)
        views = await queries.institution_health(since)
        body = institution_status_list_v1(registry, views)
        return JSONResponse(body.model_dump(mode="json"))

    @routes.post(
        "/v1/reconciliations",
        response_model=ReconciliationV1,
        responses={404: {"model": ErrorV1, "description": "No such institution."}},
        summary="Reconcile now: ask each institution (or the one named) for the outcome of "
        "every unconfirmed or failed hold, and move each to the institution's record.",
    )
    async def reconcile(body: ReconcileV1, _: Annotated[Caller, Depends(operator)]) -> Response:
        if body.institution is not None and body.institution not in registry:
            return error_response(404, "no such institution")
        report = await reconciler.reconcile(body.institution)
        answer = ReconciliationV1(
            outcomes={code: dict(counts) for code, counts in report.outcomes.items()},
            total=dict(report.total()),
            unreachable=report.unreachable,
        )
        return JSONResponse(answer.model_dump(mode="json"))

    @routes.get(
        "/v1/divergences",
        response_model=DivergenceListV1,
        summary="Holds reconciliation found in a state other than their institution's record "
        "(newest first); each was moved to the institution's truth.",
    )
    async def divergences(
        _: Annotated[Caller, Depends(operator)], limit: int = Query(default=50, ge=1, le=1000)
    ) -> Response:
        found = await queries.recent_divergences(limit)
        body = DivergenceListV1(
            divergences=[DivergenceV1.model_validate(d, from_attributes=True) for d in found]
        )
        return JSONResponse(body.model_dump(mode="json"))

    return routes
