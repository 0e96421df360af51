"""`HttpJsonAdapter`: stop requests as JSON over HTTP.

POST {endpoint}/stops with the StopRequestV1 body and an `Idempotency-Key` header. The
institution answers 200 with the outcome, or 202 when the outcome follows by callback.
"""

from __future__ import annotations

import httpx
from pydantic import ValidationError

from stopper.contracts.institutions import StopAnswerV1, StopRequestV1
from stopper.domain.messages import InstitutionAnswer
from stopper.errors import (
    InstitutionTimeout,
    InstitutionUnavailable,
    MalformedAnswer,
    RequestRefused,
)
from stopper.registry import Institution


class HttpJsonAdapter:
    def __init__(self, base_url: str, client: httpx.AsyncClient | None = None) -> None:
        self._base_url = base_url.rstrip("/")
        self._client = client or httpx.AsyncClient(
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=100)
        )

    async def close(self) -> None:
        await self._client.aclose()

    def url_for(self, institution: Institution) -> str:
        endpoint = institution.endpoint
        base = (
            endpoint
            if endpoint.startswith(("http://", "https://"))
            else (self._base_url + endpoint)
        )
        return base.rstrip("/") + "/stops"

    async def request_stop(
        self, institution: Institution, request: StopRequestV1
    ) -> InstitutionAnswer:
        # One attempt, bounded by the institution's own timeout; retries are the caller's.
        timeout = httpx.Timeout(institution.timeout_ms / 1000)
        try:
            response = await self._client.post(
                self.url_for(institution),
                content=request.model_dump_json(),
                headers={
                    "content-type": "application/json",
                    "Idempotency-Key": request.idempotency_key,
                },
                timeout=timeout,
            )
        except httpx.TimeoutException as e:
            raise InstitutionTimeout(f"no answer within {institution.timeout_ms} ms") from e
        except httpx.TransportError as e:
            raise InstitutionUnavailable(f"cannot reach: {type(e).__name__}") from e
        if response.status_code >= 500:
            raise InstitutionUnavailable(f"answered HTTP {response.status_code}")
        if response.status_code >= 400:
            raise RequestRefused(f"refused the request: HTTP {response.status_code}")
        try:
            answer = StopAnswerV1.model_validate_json(response.content)
        except ValidationError as e:
            raise MalformedAnswer(f"unreadable answer (HTTP {response.status_code})") from e
        if (response.status_code == 202) != (answer.status == "accepted"):
            raise MalformedAnswer(f"status {answer.status!r} with HTTP {response.status_code}")
        return answer.to_domain()
