"""`HttpJsonAdapter`: stop requests as JSON over HTTP.

POST {endpoint}/stops with the StopRequestV1 body and an `Idempotency-Key` header (`known_mule`
only for a known mule account). The institution answers 200 with the outcome, or 202 when the
outcome follows by callback.
GET {endpoint}/stops/{idempotency_key} asks what became of a request the institution accepted
(200 with the outcome, 202 while pending, 404 with status `unknown` when it never received it;
any other 404 is unreadable, not "unknown"), and
POST {endpoint}/stops/status (StopStatusQueryV1) asks the same of many at once (reconciliation).
POST {endpoint}/freezes with FreezeRequestV1 turns a stop into a formal freeze,
POST {endpoint}/returns with ReturnRequestV1 pays frozen funds back to the victims, and
POST {endpoint}/releases with ReleaseRequestV1 lifts a hold (all answered at once, each with the
request's `Idempotency-Key`). Amounts are decimal strings both ways (`stopper.contracts.amounts`);
an answer with an integer of minor units (the form of before) is still read, and counted by
institution.

The client is aiohttp: at thousands of stop requests per second its pool and parser cost a
fraction of what httpx's did (bench/README.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import quote

import aiohttp
from pydantic import BaseModel, ValidationError

from stopper import metrics
from stopper.contracts.amounts import LegacyForms
from stopper.contracts.institutions import (
    FreezeAnswerV1,
    FreezeRequestV1,
    ReleaseAnswerV1,
    ReleaseRequestV1,
    ReturnAnswerV1,
    ReturnRequestV1,
    StopAnswerV1,
    StopRequestV1,
    StopStatusesV1,
    StopStatusQueryV1,
    StopStatusV1,
)
from stopper.domain.messages import (
    InstitutionAnswer,
    OrderAnswer,
    OrderFreeze,
    OrderRelease,
    OrderReturn,
    RequestStop,
    StopStatus,
)
from stopper.errors import (
    InstitutionTimeout,
    InstitutionUnavailable,
    MalformedAnswer,
    RequestRefused,
)
from stopper.registry import Institution

_Answer = TypeVar("_Answer", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Response:
    status_code: int
    content: bytes


def _read(model: type[_Answer], response: Response, institution: Institution) -> _Answer:
    """An institution's answer as `model` (ValidationError if it is not one); one whose amounts
    come in the old form (integers of minor units) is counted."""
    forms = LegacyForms()
    answer = model.model_validate_json(response.content, context=forms.context())
    if forms.count:
        metrics.LEGACY_AMOUNTS.labels("answer", institution.code).inc()
    return answer


class HttpJsonAdapter:
    def __init__(self, base_url: str, max_connections: int = 200) -> None:
        self._base_url = base_url.rstrip("/")
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None  # made on first use, in the loop

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                # Nothing from the environment (proxies, netrc): institutions are configured.
                trust_env=False,
            )
        return self._session

    def url_for(self, institution: Institution, operation: str = "stops") -> str:
        endpoint = institution.endpoint
        base = (
            endpoint
            if endpoint.startswith(("http://", "https://"))
            else (self._base_url + endpoint)
        )
        return f"{base.rstrip('/')}/{operation}"

    async def request_stop(
        self, institution: Institution, request: RequestStop
    ) -> InstitutionAnswer:
        body = StopRequestV1.from_command(request)
        response = await self._post(
            institution, "stops", body.model_dump_json(), request.idempotency_key
        )
        try:
            answer = _read(StopAnswerV1, response, institution)
        except ValidationError as e:
            raise MalformedAnswer(f"unreadable answer (HTTP {response.status_code})") from e
        if (response.status_code == 202) != (answer.status == "accepted"):
            raise MalformedAnswer(f"status {answer.status!r} with HTTP {response.status_code}")
        return answer.to_domain()

    async def stop_status(self, institution: Institution, idempotency_key: str) -> StopStatus:
        response = await self.send(
            institution, "GET", f"stops/{quote(idempotency_key, safe='')}", None, None, (404,)
        )
        try:
            status = _read(StopStatusV1, response, institution)
        except ValidationError as e:
            # A 404 that is not the institution's "unknown" (a wrong endpoint, say) must not
            # read as "never received": that would send the request again.
            raise MalformedAnswer(f"unreadable status (HTTP {response.status_code})") from e
        if (response.status_code == 404) != (status.status == "unknown"):
            raise MalformedAnswer(f"status {status.status!r} with HTTP {response.status_code}")
        if (response.status_code == 202) != (status.status == "pending"):
            raise MalformedAnswer(f"status {status.status!r} with HTTP {response.status_code}")
        return status.to_status()

    async def stop_statuses(
        self, institution: Institution, idempotency_keys: Sequence[str]
    ) -> list[StopStatus]:
        query = StopStatusQueryV1(idempotency_keys=list(idempotency_keys))
        response = await self.send(
            institution, "POST", "stops/status", query.model_dump_json().encode(), None
        )
        try:
            answer = _read(StopStatusesV1, response, institution)
        except ValidationError as e:
            raise MalformedAnswer(f"unreadable statuses (HTTP {response.status_code})") from e
        return [s.to_status() for s in answer.statuses]

    async def request_freeze(self, institution: Institution, request: OrderFreeze) -> OrderAnswer:
        body = FreezeRequestV1.from_command(request)
        answer = await self._ask(institution, "freezes", body, FreezeAnswerV1)
        return answer.to_domain()

    async def request_return(self, institution: Institution, request: OrderReturn) -> OrderAnswer:
        body = ReturnRequestV1.from_command(request)
        answer = await self._ask(institution, "returns", body, ReturnAnswerV1)
        return answer.to_domain()

    async def request_release(self, institution: Institution, request: OrderRelease) -> OrderAnswer:
        body = ReleaseRequestV1.from_command(request)
        answer = await self._ask(institution, "releases", body, ReleaseAnswerV1)
        return answer.to_domain()

    async def _ask(
        self,
        institution: Institution,
        operation: str,
        request: FreezeRequestV1 | ReturnRequestV1 | ReleaseRequestV1,
        answer: type[_Answer],
    ) -> _Answer:
        response = await self._post(
            institution, operation, request.model_dump_json(), request.idempotency_key
        )
        try:
            return _read(answer, response, institution)
        except ValidationError as e:
            raise MalformedAnswer(f"unreadable answer (HTTP {response.status_code})") from e

    async def _post(
        self, institution: Institution, operation: str, body: str, idempotency_key: str
    ) -> Response:
        return await self.send(institution, "POST", operation, body.encode(), idempotency_key)

    async def send(
        self,
        institution: Institution,
        method: str,
        operation: str,
        body: bytes | None,
        idempotency_key: str | None,
        expected_4xx: tuple[int, ...] = (),
        content_type: str = "application/json",
    ) -> Response:
        """One request to `{endpoint}/{operation}`, its failures as `InstitutionError`s (a 4xx
        outside `expected_4xx` is `RequestRefused`); also the transport of the ISO 20022
        adapter's XML."""
        # One attempt, bounded by the institution's own timeout; retries are the caller's.
        timeout = aiohttp.ClientTimeout(total=institution.timeout_ms / 1000)
        headers = {"content-type": content_type}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        try:
            async with self._client().request(
                method,
                self.url_for(institution, operation),
                data=body,
                headers=headers,
                timeout=timeout,
            ) as answer:
                response = Response(answer.status, await answer.read())
        except TimeoutError as e:
            raise InstitutionTimeout(f"no answer within {institution.timeout_ms} ms") from e
        except (aiohttp.ClientError, OSError) as e:
            raise InstitutionUnavailable(f"cannot reach: {type(e).__name__}") from e
        if response.status_code >= 500:
            raise InstitutionUnavailable(f"answered HTTP {response.status_code}")
        if response.status_code >= 400 and response.status_code not in expected_4xx:
            raise RequestRefused(f"refused the request: HTTP {response.status_code}")
        return response
