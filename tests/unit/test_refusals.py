"""Refusals carry reasons; the API's tables are the one place a reason becomes a status code."""

from __future__ import annotations

from enum import StrEnum

import pytest

from stopper.api.refusals import AUTH_STATUS, CALLBACK_STATUS, REPORT_STATUS
from stopper.errors import AuthRefusal, CallbackRefusal, ReportRejection


@pytest.mark.parametrize(
    ("table", "reasons"),
    [
        (REPORT_STATUS, ReportRejection),
        (CALLBACK_STATUS, CallbackRefusal),
        (AUTH_STATUS, AuthRefusal),
    ],
)
def test_every_reason_has_a_status(table: dict[StrEnum, int], reasons: type[StrEnum]) -> None:
    assert set(table) == set(reasons)


def test_the_status_codes_callers_have_always_seen() -> None:
    assert {r.value: s for r, s in REPORT_STATUS.items()} == {
        "unreadable": 400,
        "invalid": 422,
        "report_id_reused": 409,
    }
    assert {r.value: s for r, s in AUTH_STATUS.items()} == {
        "missing": 401,
        "invalid": 401,
        "not_operator": 403,
        "not_intake": 403,
        "other_agency": 403,
    }
    assert {r.value: s for r, s in CALLBACK_STATUS.items()} == {
        "unknown_institution": 404,
        "bad_signature": 401,
        "stale": 401,
        "invalid": 422,
        "replayed": 409,
        "not_sent_here": 403,
        "conflict": 409,
    }
