"""The stop request on the wire says which part of a hold's stop it is: a first request is
written exactly as before supplements existed (institutions that forbid unknown fields still read
it), a supplement carries what it adds to, and both read back as the domain wrote them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from pydantic import ValidationError

from stopper.contracts.institutions import StopRequestV1
from stopper.domain.holds import Hold
from stopper.domain.supplements import Supplement

AT = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def hold() -> Hold:
    return Hold(uuid4(), uuid4(), "PI02", "880011112222", "CNY", 20_000)


def test_a_first_request_is_written_as_before_and_an_old_institution_reads_it() -> None:
    first = StopRequestV1.from_command(hold().stop_request(AT))
    written = json.loads(first.model_dump_json())
    assert "supplement" not in written and "supplement" not in first.model_dump(mode="json")
    # Every key written is one the request had before `supplement` (what an institution that
    # refuses unknown fields expects), and it reads back as the same request.
    assert set(written) <= set(StopRequestV1.model_fields) - {"supplement"}
    assert StopRequestV1.model_validate(written) == first


def test_a_supplement_says_what_it_adds_to_and_reads_back() -> None:
    h = hold()
    parent = uuid4()
    extra = Supplement(h.id, 3, 0, 7_500, parent, AT)
    wire = StopRequestV1.from_command(extra.request(h))
    written = json.loads(wire.model_dump_json())
    assert written["idempotency_key"] == f"stopper-{h.id}-s3"
    assert written["amount"] == "75.00"  # the supplementary amount, as every amount travels
    assert written["supplement"] == {
        "number": 3,
        "adds_to": f"stopper-{h.id}-0",
        "merged_from_hold_id": str(parent),
    }
    read = StopRequestV1.model_validate_json(wire.model_dump_json())
    assert read == wire
    part = extra.request(h).supplement
    assert read.supplement is not None and part is not None
    assert (read.supplement.number, read.supplement.adds_to) == (part.number, part.adds_to)
    assert read.supplement.merged_from_hold_id == part.merged_from


@pytest.mark.parametrize("number", [0, 100])
def test_a_supplement_number_outside_what_a_key_holds_is_refused(number: int) -> None:
    h = hold()
    body = json.loads(StopRequestV1.from_command(h.stop_request(AT)).model_dump_json())
    body["supplement"] = {"number": number, "adds_to": "k", "merged_from_hold_id": str(uuid4())}
    with pytest.raises(ValidationError):
        StopRequestV1.model_validate(body)
