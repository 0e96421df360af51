"""Liveness, readiness and Prometheus metrics: what every process answers, workers included."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stopper.app.queries import DatabaseProbe
from stopper.runtime import Runtime


def router(runtime: Runtime) -> APIRouter:
    routes = APIRouter()
    database: DatabaseProbe = runtime.store

    @routes.get("/healthz", summary="Liveness: the process answers.")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @routes.get(
        "/readyz",
        summary="Readiness: database, bus and consumers are working.",
        responses={503: {"description": "Not ready; `checks` says what is not."}},
    )
    async def readyz() -> JSONResponse:
        reachable = await database.ping()
        checks = {
            "database": reachable,
            "schema": reachable and await runtime.schema_ready(),
            "bus": await runtime.bus.ready(),
            "consumers": runtime.consumers_alive(),
        }
        ready = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    @routes.get("/metrics", summary="Prometheus metrics.", response_class=Response)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return routes
