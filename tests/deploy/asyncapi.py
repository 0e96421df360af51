"""deploy/asyncapi.yaml and the validators built from it (shared by the document's test and
the integration test that checks real records against it)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema_rs
import yaml

from tests.deploy.tools import REPO

ASYNCAPI = REPO / "deploy" / "asyncapi.yaml"
ASYNCAPI_SCHEMA = REPO / "tests" / "data" / "asyncapi" / "asyncapi-3.0.0.json"


def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(ASYNCAPI.read_text())
    return loaded


def document_validator() -> jsonschema_rs.Validator:
    """The AsyncAPI 3.0.0 JSON Schema (draft-07)."""
    return jsonschema_rs.validator_for(json.loads(ASYNCAPI_SCHEMA.read_text()))


def payload_validator(message: str = "caseEvent") -> jsonschema_rs.Validator:
    """A message's payload schema (the case event's by default; `fraudReport`), its
    `#/components/...` references resolved in the document itself (a Schema Object of AsyncAPI
    3 is a JSON Schema draft-07 superset)."""
    doc = document()
    ref = doc["components"]["messages"][message]["payload"]["$ref"]
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "allOf": [{"$ref": ref}],
        "components": doc["components"],
    }
    return jsonschema_rs.validator_for(schema, validate_formats=True)
