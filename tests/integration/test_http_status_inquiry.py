"""The JSON adapter's status inquiry over real HTTP on loopback: each answer an institution may
give, and a 404 that is not the institution's "unknown" (a wrong endpoint) read as unreadable,
never as "never received" (which would send the request again)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from prometheus_client import REGISTRY as METRICS

from stopper.adapters.institutions.http_json import HttpJsonAdapter
from stopper.domain.messages import AnswerKind, StatusKind
from stopper.errors import MalformedAnswer
from stopper.registry import load_registry
from stopper.serving import serving

HOLD = "6f0b3c2e-3a43-4f6e-9a39-2f6a3f0c5b11"
ANSWERS: dict[str, tuple[int, dict[str, Any]]] = {
    "stopped": (
        200,
        {"idempotency_key": "stopped", "hold_id": HOLD, "status": "stopped", "amount_held": "0.07"},
    ),
    # The form of before amounts became decimal strings: still read (minor units), counted.
    "stopped-old": (
        200,
        {"idempotency_key": "stopped-old", "hold_id": HOLD, "status": "stopped", "amount_held": 7},
    ),
    "pending": (202, {"idempotency_key": "pending", "hold_id": HOLD, "status": "pending"}),
    "unknown": (404, {"idempotency_key": "unknown", "status": "unknown"}),
    "wrong-endpoint": (404, {"detail": "Not Found"}),
    "lying": (200, {"idempotency_key": "lying", "status": "pending"}),
}


def institution_app() -> FastAPI:
    app = FastAPI()

    @app.get("/bank/stops/{key}")
    async def status(key: str) -> JSONResponse:
        code, body = ANSWERS[key]
        return JSONResponse(body, status_code=code)

    return app


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("stopped", StatusKind.ANSWERED),
        ("stopped-old", StatusKind.ANSWERED),
        ("pending", StatusKind.PENDING),
        ("unknown", StatusKind.UNKNOWN),
    ],
)
async def test_each_status_an_institution_may_answer(key: str, kind: StatusKind) -> None:
    institution = load_registry()["BK01"]
    before = legacy_answers()
    async with serving(institution_app()) as url:
        adapter = HttpJsonAdapter(url)
        try:
            status = await adapter.stop_status(replace(institution, endpoint="/bank"), key)
        finally:
            await adapter.close()
    assert status.kind is kind
    if kind is StatusKind.ANSWERED:
        assert status.answer is not None and status.answer.kind is AnswerKind.STOPPED
        assert status.answer.amount_held == 7
    assert legacy_answers() == before + (key == "stopped-old")


def legacy_answers() -> float:
    counted = METRICS.get_sample_value(
        "stopper_legacy_amounts_total", {"interface": "answer", "institution": "BK01"}
    )
    return counted or 0.0


@pytest.mark.parametrize("key", ["wrong-endpoint", "lying"])
async def test_a_404_or_status_that_does_not_say_so_is_unreadable(key: str) -> None:
    institution = load_registry()["BK01"]
    async with serving(institution_app()) as url:
        adapter = HttpJsonAdapter(url)
        try:
            with pytest.raises(MalformedAnswer):
                await adapter.stop_status(replace(institution, endpoint="/bank"), key)
        finally:
            await adapter.close()
