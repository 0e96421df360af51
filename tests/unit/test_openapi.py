"""The OpenAPI document Stopper serves: valid (openapi-spec-validator), every `$ref` resolving
(the validator does not follow those of request bodies: checked here), the bodies routes read
themselves defined in its components, and every amount a decimal string. A client generated
from it files a report in tests/integration/test_generated_client.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from openapi_spec_validator import validate

from stopper.api import openapi
from stopper.api.app import create_app
from stopper.config import DatabaseSettings, Settings
from stopper.contracts.institutions import CallbackV1
from stopper.contracts.reports import FraudReportV1
from stopper.runtime import build_runtime

AMOUNT_NAMES = ("amount", "unrecoverable", "unallocated")


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path: Path = tmp_path_factory.mktemp("openapi") / "stopper.db"
    runtime = build_runtime(Settings(database=DatabaseSettings(embedded_path=path)))
    served: dict[str, Any] = create_app(runtime, start_runtime=False).openapi()
    return served


def resolve(document: dict[str, Any], ref: str) -> object:
    """The JSON pointer `ref` in `document`; KeyError if it points at nothing."""
    assert ref.startswith("#/"), ref
    node: object = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            raise KeyError(ref)
        node = node[part]
    return node


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"].startswith("3.1")


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    found = set(openapi.refs(document))
    assert "#/components/schemas/FraudReportV1" in found
    unresolved = []
    for ref in sorted(found):
        try:
            resolve(document, ref)
        except KeyError:
            unresolved.append(ref)
    assert unresolved == []


def test_the_bodies_routes_read_themselves_are_components(document: dict[str, Any]) -> None:
    paths = document["paths"]

    def body(path: str, media: str = "application/json") -> dict[str, Any]:
        request: dict[str, Any] = paths[path]["post"]["requestBody"]
        assert request["required"] is True
        schema: dict[str, Any] = request["content"][media]["schema"]
        return schema

    assert body("/v1/reports") == {"$ref": "#/components/schemas/FraudReportV1"}
    assert body("/v1/institutions/{code}/callbacks") == {"$ref": "#/components/schemas/CallbackV1"}
    assert body("/v1/institutions/{code}/callbacks/iso20022", "application/xml") == {
        "type": "string"
    }
    schemas = document["components"]["schemas"]
    for model in (FraudReportV1, CallbackV1):
        generated = model.model_json_schema(ref_template="#/components/schemas/{model}")
        nested = generated.pop("$defs", {})
        assert schemas[model.__name__] == generated
        assert {name: schemas[name] for name in nested} == nested
    signed = paths["/v1/institutions/{code}/callbacks"]["post"]["parameters"]
    assert {p["name"] for p in signed if p["in"] == "header"} == {
        "X-Stopper-Timestamp",
        "X-Stopper-Nonce",
        "X-Stopper-Signature",
    }


def amount_schemas(node: object, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema of a property named like an amount, with where it is."""
    if isinstance(node, dict):
        for name, schema in (node.get("properties") or {}).items():
            if name.startswith(AMOUNT_NAMES):
                yield f"{where}.{name}", schema
        for key, value in node.items():
            yield from amount_schemas(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from amount_schemas(item, f"{where}[{index}]")


def leaves(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The value schemas of an amount: through null alternatives and by-currency maps."""
    if "anyOf" in schema:
        for option in schema["anyOf"]:
            if option != {"type": "null"}:
                yield from leaves(option)
    elif schema.get("type") == "object":
        yield from leaves(schema["additionalProperties"])
    else:
        yield schema


def test_every_amount_is_a_decimal_string(document: dict[str, Any]) -> None:
    found = list(amount_schemas(document["components"]))
    assert len(found) > 15  # reports, callbacks, holds, trails, returns, summaries
    for where, schema in found:
        for leaf in leaves(schema):
            assert leaf["type"] == "string" and leaf["pattern"].startswith("^[0-9]"), where
            assert leaf["examples"] == ["1250.00"], where
    assert "**Amounts** are decimal strings" in document["info"]["description"]


def test_a_body_schema_with_references_of_its_own_is_refused() -> None:
    # What the reports route declared before: pydantic's schema inline, whose `#/$defs/...`
    # point into a document that has no `$defs`.
    app = FastAPI()

    @app.post(
        "/reports",
        openapi_extra={
            "requestBody": {
                "content": {"application/json": {"schema": FraudReportV1.model_json_schema()}}
            }
        },
    )
    async def reports() -> None: ...

    openapi.complete(app)
    with pytest.raises(ValueError, match=r"#/\$defs/AgencyV1"):
        app.openapi()
