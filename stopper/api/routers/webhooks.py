"""Agencies' webhooks: subscribe, list, remove, and the delivery log. An agency's own intake
key or an operator's; another agency's webhooks are answered as none at all."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse, Response

from stopper.api.auth import caller
from stopper.api.refusals import error_response
from stopper.app.auth import Caller
from stopper.app.webhooks import Subscription, WebhookDesk
from stopper.contracts.reports import ErrorV1
from stopper.contracts.webhooks import (
    CaseEventType,
    DeliveryAttemptV1,
    DeliveryLogV1,
    WebhookCreatedV1,
    WebhookListV1,
    WebhookRequestV1,
    WebhookSecretV1,
    WebhookV1,
)

_NOT_YOURS: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorV1, "description": "Another agency's webhooks."}
}
_NO_WEBHOOK: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorV1, "description": "No such webhook for this agency."}
}
Agency = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$")]


def _webhook_v1(s: Subscription) -> WebhookV1:
    return WebhookV1(
        id=s.id,
        agency_code=s.agency_code,
        url=s.url,
        events=[CaseEventType(e) for e in s.events],
        created_at=s.created_at,
        rotating_until=s.previous_until if s.previous_secret is not None else None,
    )


def router(desk: WebhookDesk) -> APIRouter:
    routes = APIRouter(tags=["webhooks"])

    def refused(who: Caller, agency_code: str) -> Response | None:
        if who.sees_agency(agency_code):
            return None
        return error_response(403, "an agency manages its own webhooks only")

    @routes.post(
        "/v1/agencies/{agency_code}/webhooks",
        status_code=201,
        response_model=WebhookCreatedV1,
        responses={
            **_NOT_YOURS,
            422: {"model": ErrorV1, "description": "The URL or the events are refused."},
        },
        summary="Subscribe the agency to case events: POSTed to `url`, signed with the secret "
        "answered here (only here).",
    )
    async def subscribe(
        agency_code: Agency, body: WebhookRequestV1, who: Annotated[Caller, Depends(caller)]
    ) -> Response:
        if (refusal := refused(who, agency_code)) is not None:
            return refusal
        made = await desk.subscribe(
            agency_code,
            body.url,
            [e.value for e in body.events],
            f"{who.role.value}:{who.key_id or 'anonymous'}",
        )
        answer = WebhookCreatedV1(id=made.id, secret=made.secret)
        return JSONResponse(answer.model_dump(mode="json"), status_code=201)

    @routes.get(
        "/v1/agencies/{agency_code}/webhooks",
        response_model=WebhookListV1,
        responses=_NOT_YOURS,
        summary="The agency's webhooks (their secrets are never shown again).",
    )
    async def list_webhooks(
        agency_code: Agency, who: Annotated[Caller, Depends(caller)]
    ) -> Response:
        if (refusal := refused(who, agency_code)) is not None:
            return refusal
        body = WebhookListV1(
            webhooks=[_webhook_v1(s) for s in await desk.subscriptions(agency_code)]
        )
        return JSONResponse(body.model_dump(mode="json"))

    @routes.delete(
        "/v1/agencies/{agency_code}/webhooks/{webhook_id}",
        status_code=204,
        responses={**_NOT_YOURS, **_NO_WEBHOOK},
        summary="Remove a webhook: nothing more is delivered to it.",
    )
    async def remove_webhook(
        agency_code: Agency, webhook_id: UUID, who: Annotated[Caller, Depends(caller)]
    ) -> Response:
        if (refusal := refused(who, agency_code)) is not None:
            return refusal
        if not await desk.remove(agency_code, webhook_id):
            return error_response(404, "no such webhook")
        return Response(status_code=204)

    @routes.post(
        "/v1/agencies/{agency_code}/webhooks/{webhook_id}/secret",
        status_code=201,
        response_model=WebhookSecretV1,
        responses={**_NOT_YOURS, **_NO_WEBHOOK},
        summary="Rotate the webhook's secret: a new one, answered only here; the old one still "
        "signs beside it until `previous_valid_until` or until the rotation is ended.",
    )
    async def rotate_secret(
        agency_code: Agency, webhook_id: UUID, who: Annotated[Caller, Depends(caller)]
    ) -> Response:
        if (refusal := refused(who, agency_code)) is not None:
            return refusal
        rotated = await desk.rotate(agency_code, webhook_id)
        if rotated is None:
            return error_response(404, "no such webhook")
        answer = WebhookSecretV1(
            id=rotated.subscription_id,
            secret=rotated.secret,
            previous_valid_until=rotated.previous_until,
        )
        return JSONResponse(answer.model_dump(mode="json"), status_code=201)

    @routes.delete(
        "/v1/agencies/{agency_code}/webhooks/{webhook_id}/previous-secret",
        status_code=204,
        responses={
            **_NOT_YOURS,
            404: {"model": ErrorV1, "description": "No such webhook, or no rotation under way."},
        },
        summary="End a secret rotation: the receiver has switched; only the new secret signs.",
    )
    async def end_rotation(
        agency_code: Agency, webhook_id: UUID, who: Annotated[Caller, Depends(caller)]
    ) -> Response:
        if (refusal := refused(who, agency_code)) is not None:
            return refusal
        ended = await desk.end_rotation(agency_code, webhook_id)
        if ended is None:
            return error_response(404, "no such webhook")
        if not ended:
            return error_response(404, "no rotation under way")
        return Response(status_code=204)

    @routes.get(
        "/v1/agencies/{agency_code}/webhooks/{webhook_id}/deliveries",
        response_model=DeliveryLogV1,
        responses={**_NOT_YOURS, **_NO_WEBHOOK},
        summary="The webhook's delivery log: every attempt, newest first.",
    )
    async def deliveries(
        agency_code: Agency,
        webhook_id: UUID,
        who: Annotated[Caller, Depends(caller)],
        limit: int = Query(default=100, ge=1, le=1000),
    ) -> Response:
        if (refusal := refused(who, agency_code)) is not None:
            return refusal
        found = await desk.find(agency_code, webhook_id)
        if found is None:
            return error_response(404, "no such webhook")
        body = DeliveryLogV1(
            attempts=[
                DeliveryAttemptV1.model_validate(a, from_attributes=True)
                for a in await desk.log(found, limit)
            ]
        )
        return JSONResponse(body.model_dump(mode="json"))

    return routes
