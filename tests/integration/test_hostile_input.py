"""Hostile HTTP input: every endpoint of the OpenAPI schema fuzzed by schemathesis (valid and
invalid requests), plus deep, huge and unexpected JSON. No 5xx, and every refusal says why."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.result import Ok

from stopper.api.app import create_app
from stopper.config import ApiSettings, DatabaseSettings, Settings
from stopper.runtime import build_runtime
from stopper.serving import serving
from tests.factories import report_doc

pytestmark = pytest.mark.integration

EXAMPLES = 25  # per operation and mode: bounded, so the suite stays quick
LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def live_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    """Stopper on the embedded default, served by a real HTTP server on its own thread (the
    fuzzer's client is synchronous)."""
    path: Path = tmp_path_factory.mktemp("hostile") / "stopper.db"
    runtime = build_runtime(
        Settings(
            database=DatabaseSettings(embedded_path=path), api=ApiSettings(max_body_bytes=LIMIT)
        )
    )
    app = create_app(runtime)
    started = threading.Event()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    found: dict[str, str] = {}

    async def serve() -> None:
        async with serving(app) as url:
            found["url"] = url
            started.set()
            await stop.wait()

    thread = threading.Thread(target=lambda: loop.run_until_complete(serve()), daemon=True)
    thread.start()
    assert started.wait(30), "Stopper did not start"
    try:
        yield found["url"], app.openapi()
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()


def check(response: Any) -> None:
    assert response.status_code < 500, f"{response.status_code}: {response.text[:300]}"
    if response.status_code >= 400:
        detail = response.json().get("detail")
        assert isinstance(detail, str) and detail, "every refusal says why"


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_endpoint_fails_on_generated_requests(
    live_url: tuple[str, dict[str, Any]], mode: GenerationMode
) -> None:
    url, spec = live_url
    schema = schemathesis.openapi.from_dict(spec)
    operations = [r.ok() for r in schema.get_all_operations() if isinstance(r, Ok)]
    assert len(operations) >= 12
    with httpx.Client(base_url=url) as client:
        client.post("/v1/reports", json=report_doc())  # something for queries to find
    statuses: list[int] = []
    for operation in operations:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def fuzz(case: Any) -> None:
            response = case.call(base_url=url, timeout=10)
            statuses.append(response.status_code)
            check(response)

        try:
            fuzz()
        except Unsatisfiable:
            # Nothing to make invalid (no parameters, no body): nothing to fuzz negatively.
            assert mode is GenerationMode.NEGATIVE, operation.label
    assert len(statuses) > 5 * len(operations)
    if mode is GenerationMode.NEGATIVE:
        assert {400, 422} & set(statuses), "invalid requests were refused with a reason"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/reports",
        "/v1/holds/00000000-0000-0000-0000-000000000001/freeze",
        "/v1/holds/00000000-0000-0000-0000-000000000001/reapply",
        "/v1/cases/00000000-0000-0000-0000-000000000001/returns",
    ],
)
def test_deep_huge_and_unexpected_json_is_refused_with_a_reason(
    live_url: tuple[str, dict[str, Any]], path: str
) -> None:
    url, _ = live_url
    deep = b'{"requested_by": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"
    huge = json.dumps({"requested_by": "x" * (2 * LIMIT)}).encode()
    unexpected = json.dumps({**report_doc(), "legal_document_ref": "X", "surprise": 1}).encode()
    with httpx.Client(base_url=url, headers={"content-type": "application/json"}) as client:
        for body, allowed in ((deep, {400, 413, 422}), (huge, {413}), (unexpected, {422})):
            answer = client.post(path, content=body)
            assert answer.status_code in allowed, (path, answer.status_code, answer.text[:200])
            check(answer)


def test_a_streamed_body_is_cut_off_at_the_limit(live_url: tuple[str, dict[str, Any]]) -> None:
    url, _ = live_url

    def chunks() -> Iterator[bytes]:
        yield b'{"requested_by": "'
        for _ in range(LIMIT // 1024 + 8):
            yield b"x" * 1024
        yield b'"}'

    with httpx.Client(base_url=url) as client:
        for path in ("/v1/reports", "/v1/cases/00000000-0000-0000-0000-000000000001/returns"):
            answer = client.post(
                path, content=chunks(), headers={"content-type": "application/json"}
            )
            assert "content-length" not in answer.request.headers
            assert answer.status_code == 413, (path, answer.text[:200])
            check(answer)
