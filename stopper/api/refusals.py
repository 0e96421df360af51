"""What the API answers when Stopper refuses: every refusal reason's status code, in one place,
and the error body (`ErrorV1`) every error answer carries.

Refusals (`stopper.errors.Refused`) carry reasons, not status codes; the tables below are the
only place a reason becomes one. The error body never echoes the input (it may hold account
data): FastAPI's own validation answer does, so it is replaced here too.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from stopper import metrics
from stopper.errors import (
    AuthRefusal,
    AuthRefused,
    BodyTooLarge,
    CallbackRefusal,
    CallbackRefused,
    ReportRejected,
    ReportRejection,
    StoreUnavailable,
    WebhookRefused,
    XmlRefused,
)

REPORT_STATUS: dict[ReportRejection, int] = {
    ReportRejection.UNREADABLE: 400,
    ReportRejection.INVALID: 422,
    ReportRejection.REPORT_ID_REUSED: 409,
}
CALLBACK_STATUS: dict[CallbackRefusal, int] = {
    CallbackRefusal.UNKNOWN_INSTITUTION: 404,
    CallbackRefusal.BAD_SIGNATURE: 401,
    CallbackRefusal.STALE: 401,
    CallbackRefusal.INVALID: 422,
    CallbackRefusal.REPLAYED: 409,
    CallbackRefusal.NOT_SENT_HERE: 403,
    CallbackRefusal.CONFLICT: 409,
}
AUTH_STATUS: dict[AuthRefusal, int] = {
    AuthRefusal.MISSING: 401,
    AuthRefusal.INVALID: 401,
    AuthRefusal.NOT_OPERATOR: 403,
    AuthRefusal.NOT_INTAKE: 403,
    AuthRefusal.OTHER_AGENCY: 403,
}


def error_response(
    status: int,
    detail: str,
    errors: list[dict[str, object]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        {"detail": detail, "errors": errors or []}, status_code=status, headers=headers
    )


def body_too_large(exc: BodyTooLarge) -> JSONResponse:
    """Also answered by the body-limit middleware, outside the application's handlers."""
    return error_response(413, exc.detail)


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return error_response(422, "the request is not valid", errors)

    @app.exception_handler(AuthRefused)
    async def _auth_refused(request: Request, exc: AuthRefused) -> JSONResponse:
        metrics.AUTH_REFUSED.labels(reason=exc.reason.value).inc()
        status = AUTH_STATUS[exc.reason]
        headers = {}
        if status == 401:
            console = request.url.path.startswith("/console")
            headers["WWW-Authenticate"] = (
                'Basic realm="Stopper console"' if console else 'Bearer realm="Stopper"'
            )
        return error_response(status, exc.detail, headers=headers)

    @app.exception_handler(ReportRejected)
    async def _report_rejected(_: Request, exc: ReportRejected) -> JSONResponse:
        return error_response(REPORT_STATUS[exc.reason], exc.detail, exc.errors)

    @app.exception_handler(CallbackRefused)
    async def _callback_refused(_: Request, exc: CallbackRefused) -> JSONResponse:
        return error_response(CALLBACK_STATUS[exc.reason], exc.detail)

    @app.exception_handler(XmlRefused)
    async def _xml_refused(_: Request, exc: XmlRefused) -> JSONResponse:
        # Every reason alike: the document is not one Stopper reads (the detail says where).
        return error_response(400, exc.detail)

    @app.exception_handler(WebhookRefused)
    async def _webhook_refused(_: Request, exc: WebhookRefused) -> JSONResponse:
        return error_response(422, exc.detail)

    @app.exception_handler(BodyTooLarge)
    async def _body_too_large(_: Request, exc: BodyTooLarge) -> JSONResponse:
        return body_too_large(exc)

    @app.exception_handler(StoreUnavailable)
    async def _store_down(_: Request, exc: StoreUnavailable) -> JSONResponse:
        return error_response(
            503, "the database is unavailable; retry later", headers={"Retry-After": "5"}
        )
