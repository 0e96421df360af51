"""The FastAPI application: intake, case queries, health and metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stopper import metrics
from stopper.api.auth import caller, filer, operator
from stopper.api.console import add_console
from stopper.api.refusals import add_error_handlers, error_response
from stopper.api.wire import (
    case_summary_v1,
    case_v1,
    hold_list_item_v1,
    institution_status_list_v1,
    returns_ordered_v1,
    trail_v1,
)
from stopper.app.auth import Caller
from stopper.app.deadlines import ReapplyOutcome
from stopper.app.freezes import FreezeOrderOutcome
from stopper.app.health import FRESH_S
from stopper.config import Role
from stopper.contracts.cases import (
    CaseV1,
    FreezeOrderedV1,
    FreezeOrderV1,
    ReapplyAcceptedV1,
    ReapplyV1,
    ReturnOrderV1,
    ReturnsOrderedV1,
    TrailV1,
)
from stopper.contracts.institutions import CallbackAcceptedV1, CallbackV1
from stopper.contracts.operations import (
    CaseListV1,
    DivergenceListV1,
    DivergenceV1,
    HoldListV1,
    InstitutionStatusListV1,
    ReconcileV1,
    ReconciliationV1,
)
from stopper.contracts.reports import ErrorV1, FraudReportV1, ReportAcceptedV1
from stopper.contracts.signing import NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER
from stopper.domain.holds import HoldState
from stopper.errors import BusUnavailable
from stopper.runtime import Runtime

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

log = logging.getLogger(__name__)


_CALLBACK_LIMIT = 64 * 1024


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """Refuse any request body over `limit` bytes early: by its Content-Length before reading,
    or as soon as a streamed body passes the limit."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            response = _error(413, f"the body is larger than {self.limit} bytes")
            await response(scope, receive, send)
            return
        seen = 0
        refused = False

        async def counted() -> Message:
            nonlocal seen, refused
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit and not refused:
                refused = True
                response = _error(413, f"the body is larger than {self.limit} bytes")
                await response(scope, receive, send)
            # The application sees a caller who went away; what it answers is dropped.
            return {"type": "http.disconnect"} if refused else message

        async def unless_refused(message: Message) -> None:
            if not refused:
                await send(message)

        try:
            await self.app(scope, counted, unless_refused)
        except Exception:
            if not refused:
                raise
            # The application tripped over the cut-off body; the caller has its 413.


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
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    limit = runtime.settings.api.max_body_bytes
    app.add_middleware(BodyLimit, limit=limit)
    public_url = runtime.settings.api.public_url.rstrip("/")

    add_error_handlers(app)

    @app.get("/healthz", summary="Liveness: the process answers.")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        summary="Readiness: database, bus and consumers are working.",
        responses={503: {"description": "Not ready; `checks` says what is not."}},
    )
    async def readyz() -> JSONResponse:
        database = await runtime.store.ping()
        checks = {
            "database": database,
            "schema": database and await runtime.schema_ready(),
            "bus": await runtime.bus.ready(),
            "consumers": runtime.consumers_alive(),
        }
        ready = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics", summary="Prometheus metrics.", response_class=Response)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    if runtime.settings.role is Role.WORKER:
        return app  # a worker answers for its health and metrics only

    @app.post(
        "/v1/reports",
        status_code=202,
        response_model=ReportAcceptedV1,
        responses={
            200: {"model": ReportAcceptedV1, "description": "The same report was received before."},
            **_ERRORS,
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": FraudReportV1.model_json_schema()}},
            }
        },
        summary="File a fraud report: opens its case and asks for a stop on every account.",
    )
    async def post_report(request: Request, who: Annotated[Caller, Depends(filer)]) -> Response:
        started = time.perf_counter()
        try:
            raw = await _read_capped(request, limit)
        except BodyTooLarge:
            # Refused before acceptance could see it; counted with the reports it rejects.
            metrics.REPORTS_RECEIVED.labels(outcome="rejected").inc()
            return _error(413, f"the body is larger than {limit} bytes")
        try:
            accepted = await runtime.acceptance.accept(raw, who)
        except BusUnavailable as e:
            log.warning("a report could not be queued: %s", e)
            return _error(
                503, "the report could not be queued; retry later", headers={"Retry-After": "5"}
            )
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

    @app.get(
        "/v1/cases/{case_id}",
        response_model=CaseV1,
        responses={404: {"model": ErrorV1, "description": "No such case (yet)."}},
    )
    async def get_case(case_id: UUID, who: Annotated[Caller, Depends(caller)]) -> Response:
        view = await runtime.store.get_case(case_id)
        if view is None or not who.sees_agency(view.agency_code):
            return _error(404, "no such case; a report accepted moments ago may still be queued")
        return JSONResponse(case_v1(view).model_dump(mode="json"))

    @app.get(
        "/v1/cases/{case_id}/trail",
        response_model=TrailV1,
        responses={404: {"model": ErrorV1, "description": "No such case (yet)."}},
        summary="The money trail of a case: holds per layer and the onward transfers between.",
    )
    async def get_trail(case_id: UUID, who: Annotated[Caller, Depends(caller)]) -> Response:
        agency = await runtime.store.case_agency(case_id)
        view = await runtime.store.get_trail(case_id)
        if view is None or agency is None or not who.sees_agency(agency):
            return _error(404, "no such case; a report accepted moments ago may still be queued")
        return JSONResponse(trail_v1(view).model_dump(mode="json"))

    @app.get(
        "/v1/cases",
        response_model=CaseListV1,
        summary="Cases, newest first: by default those with a hold still in play.",
    )
    async def list_cases(
        who: Annotated[Caller, Depends(caller)],
        active: bool = Query(default=True, description="Only cases with a hold still in play."),
        limit: int = Query(default=50, ge=1, le=500),
    ) -> Response:
        views = await runtime.store.list_cases(
            active_only=active,
            limit=limit,
            agency_code=None if who.is_operator else who.agency_code,
        )
        body = CaseListV1(cases=[case_summary_v1(v) for v in views])
        return JSONResponse(body.model_dump(mode="json"))

    @app.get(
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
    ) -> Response:
        views = await runtime.store.list_holds(
            states=[s.value for s in state or [HoldState.FAILED]],
            limit=limit,
            soonest_first=order == "deadline",
        )
        body = HoldListV1(holds=[hold_list_item_v1(v) for v in views])
        return JSONResponse(body.model_dump(mode="json"))

    @app.get(
        "/v1/institutions/status",
        response_model=InstitutionStatusListV1,
        summary="Each institution's health as the workers see it: breaker, recent attempts, "
        "failures and latency (the troubled first).",
    )
    async def institutions_status(_: Annotated[Caller, Depends(operator)]) -> Response:
        since = runtime.clock.now() - timedelta(seconds=FRESH_S)
        views = await runtime.store.institution_health(since)
        body = institution_status_list_v1(runtime.registry, views)
        return JSONResponse(body.model_dump(mode="json"))

    @app.post(
        "/v1/reconciliations",
        response_model=ReconciliationV1,
        responses={404: {"model": ErrorV1, "description": "No such institution."}},
        summary="Reconcile now: ask each institution (or the one named) for the outcome of "
        "every unconfirmed or failed hold, and move each to the institution's record.",
    )
    async def reconcile(body: ReconcileV1, _: Annotated[Caller, Depends(operator)]) -> Response:
        if body.institution is not None and body.institution not in runtime.registry:
            return _error(404, "no such institution")
        report = await runtime.reconciler.reconcile(body.institution)
        answer = ReconciliationV1(
            outcomes={code: dict(counts) for code, counts in report.outcomes.items()},
            total=dict(report.total()),
            unreachable=report.unreachable,
        )
        return JSONResponse(answer.model_dump(mode="json"))

    @app.get(
        "/v1/divergences",
        response_model=DivergenceListV1,
        summary="Holds reconciliation found in a state other than their institution's record "
        "(newest first); each was moved to the institution's truth.",
    )
    async def divergences(
        _: Annotated[Caller, Depends(operator)], limit: int = Query(default=50, ge=1, le=1000)
    ) -> Response:
        found = await runtime.store.recent_divergences(limit)
        body = DivergenceListV1(
            divergences=[DivergenceV1.model_validate(d, from_attributes=True) for d in found]
        )
        return JSONResponse(body.model_dump(mode="json"))

    @app.post(
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
        outcome = await runtime.deadlines.reapply(
            hold_id, actor=who.actor(body.requested_by), reason=body.reason
        )
        if outcome is ReapplyOutcome.UNKNOWN_HOLD:
            return _error(404, "no such hold")
        if outcome is ReapplyOutcome.NOT_ALLOWED:
            return _error(409, "only an expired or stopped hold may be re-applied, at most twice")
        return JSONResponse(
            ReapplyAcceptedV1(hold_id=hold_id, state="requested").model_dump(mode="json"),
            status_code=202,
        )

    @app.post(
        "/v1/holds/{hold_id}/freeze",
        response_model=FreezeOrderedV1,
        status_code=202,
        responses={
            404: {"model": ErrorV1, "description": "No such hold."},
            409: {"model": ErrorV1, "description": "The hold is not stopped or frozen."},
        },
        summary="Order the formal freeze of a stopped hold (or renew a freeze) under a legal "
        "document; the institution's confirmation moves the hold to `frozen`.",
    )
    async def freeze_hold(
        hold_id: UUID, body: FreezeOrderV1, who: Annotated[Caller, Depends(operator)]
    ) -> Response:
        outcome = await runtime.freezes.order(
            hold_id, document_ref=body.legal_document_ref, actor=who.actor(body.requested_by)
        )
        if outcome is FreezeOrderOutcome.UNKNOWN_HOLD:
            return _error(404, "no such hold")
        if outcome is FreezeOrderOutcome.NOT_ALLOWED:
            return _error(409, "only a stopped or frozen hold can be frozen")
        return JSONResponse(
            FreezeOrderedV1(hold_id=hold_id, legal_document_ref=body.legal_document_ref).model_dump(
                mode="json"
            ),
            status_code=202,
        )

    @app.post(
        "/v1/cases/{case_id}/returns",
        response_model=ReturnsOrderedV1,
        status_code=202,
        responses={
            404: {"model": ErrorV1, "description": "No such case."},
            409: {
                "model": ErrorV1,
                "description": "Nothing to return: no frozen hold owes the victims anything.",
            },
        },
        summary="Return a case's frozen funds to its victims under a legal document: each "
        "frozen hold is split among the victims whose money reached it, and moves to "
        "`returning`, then `returned` when its institution confirms.",
    )
    async def order_returns(
        case_id: UUID, body: ReturnOrderV1, who: Annotated[Caller, Depends(operator)]
    ) -> Response:
        result = await runtime.returns.order(
            case_id,
            document_ref=body.legal_document_ref,
            actor=who.actor(body.requested_by),
            hold_ids=body.hold_ids,
        )
        if result is None:
            return _error(404, "no such case")
        if not result.started:
            reasons = sorted(set(result.skipped.values())) or ["the case has no holds"]
            return _error(409, "nothing to return: " + "; ".join(reasons))
        return JSONResponse(
            returns_ordered_v1(case_id, result).model_dump(mode="json"),
            status_code=202,
        )

    @app.post(
        "/v1/institutions/{code}/callbacks",
        summary="An institution's signed answer to a stop request it accepted earlier.",
        response_model=CallbackAcceptedV1,
        responses={
            401: {"model": ErrorV1, "description": "Missing, stale or wrong signature."},
            403: {"model": ErrorV1, "description": "No such request was sent to you."},
            404: {"model": ErrorV1, "description": "Unknown institution."},
            409: {
                "model": ErrorV1,
                "description": "Nonce replayed, or the hold's state does not allow this answer.",
            },
            413: {"model": ErrorV1, "description": "Body too large."},
            422: {"model": ErrorV1, "description": "Signed, but not a valid callback."},
        },
        openapi_extra={
            "parameters": [
                {"name": h, "in": "header", "required": True, "schema": {"type": "string"}}
                for h in (TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER)
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": CallbackV1.model_json_schema()}},
            },
        },
    )
    async def institution_callback(code: str, request: Request) -> Response:
        try:
            body = await _read_capped(request, _CALLBACK_LIMIT)
        except BodyTooLarge:
            return _error(413, f"the body is larger than {_CALLBACK_LIMIT} bytes")
        result = await runtime.callbacks.handle(code, request.headers, body)
        return JSONResponse(
            CallbackAcceptedV1(hold_id=result.hold_id, outcome=result.outcome.value).model_dump(
                mode="json"
            )
        )

    add_console(app, runtime)
    return app


async def _read_capped(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


_error = error_response
