"""The FastAPI application: the routers of `stopper.api.routers` and the console over one
`Runtime`, behind the body limit, with refusals answered by `stopper.api.refusals`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from stopper.api import console, openapi
from stopper.api.bodies import BodyLimit
from stopper.api.refusals import add_error_handlers
from stopper.api.routers import (
    accounts,
    approvals,
    callbacks,
    cases,
    handling,
    health,
    iso20022,
    operations,
    orders,
    releases,
    reports,
    reverifications,
    webhooks,
)
from stopper.app.handling import HandlingDesk
from stopper.app.mules import MuleRegistry
from stopper.app.queries import CaseQueries
from stopper.config import Role
from stopper.runtime import Runtime


def create_app(runtime: Runtime, *, start_runtime: bool = True) -> FastAPI:
    """The HTTP API over `runtime`. With `start_runtime`, the app starts and stops it."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if start_runtime:
            await runtime.start()
        try:
            yield
        finally:
            if start_runtime:
                await runtime.stop()

    app = FastAPI(
        title="Stopper",
        version="1",
        summary="Emergency payment-stop coordinator: police fraud reports in, stops out.",
        description=openapi.DESCRIPTION,
        lifespan=lifespan,
    )
    openapi.complete(app)
    app.state.runtime = runtime  # for the `caller` dependency: keys and whether they are needed
    settings = runtime.settings
    app.add_middleware(BodyLimit, limit=settings.api.max_body_bytes)
    add_error_handlers(app)

    app.include_router(health.router(runtime))
    if settings.role is Role.WORKER:
        return app  # a worker answers for its health and metrics only

    queries: CaseQueries = runtime.store
    mules = MuleRegistry(runtime.store)
    app.include_router(
        reports.router(
            runtime.acceptance,
            limit=settings.api.max_body_bytes,
            public_url=settings.api.public_url.rstrip("/"),
        )
    )
    app.include_router(cases.router(queries, mules))
    app.include_router(accounts.router(mules))
    app.include_router(
        operations.router(queries, runtime.registry, runtime.clock, runtime.reconciler)
    )
    app.include_router(reverifications.router(runtime.reverifier, runtime.registry))
    app.include_router(orders.router(runtime.deadlines, runtime.freezes, runtime.approvals))
    app.include_router(approvals.router(runtime.approvals))
    app.include_router(releases.router(runtime.releases, queries))
    app.include_router(handling.router(HandlingDesk(runtime.store, runtime.clock)))
    app.include_router(callbacks.router(runtime.callbacks))
    app.include_router(iso20022.router(runtime.callbacks))
    app.include_router(webhooks.router(runtime.webhooks))
    app.include_router(
        console.router(queries, runtime.registry, runtime.clock, runtime.approvals, mules)
    )
    return app
