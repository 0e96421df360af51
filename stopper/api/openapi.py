"""The OpenAPI document: FastAPI's, completed with the request bodies that routes read
themselves, so that every `$ref` in it resolves and a client generator can use it.

FastAPI documents the bodies it parses. Intake and the institutions' callbacks read their bytes
themselves (their own size limits, error answers and validation context), so they declare their
bodies with `json_body(Model)`: a reference to ``#/components/schemas/Model``. `complete` makes
the app's document add those models' schemas, and the models they use, to its components, and
refuse to be served with a reference to a schema it does not define (the document is made once,
on its first request).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

COMPONENTS: Final = "#/components/schemas/"

DESCRIPTION: Final = """\
Police intake systems file fraud reports (`POST /v1/reports`) and read their cases; operators
act on holds; institutions answer stop requests by signed callbacks.

**Amounts** are decimal strings in the currency's major unit with the currency's minor digits,
on every interface: `"45540.00"` CNY (two digits for every currency Stopper takes: CNY, HKD,
USD, EUR, GBP). Stopper writes exactly the minor digits and reads at most that many; never a JSON
number. During a transition the forms of before are still read, deprecated: a JSON number in a
report (major units) and a JSON integer in a callback (minor units: `125000` is `"1250.00"`).
"""

# Models whose schemas `json_body` referred to, by name (a name is one model).
_BODIES: dict[str, type[BaseModel]] = {}


def json_body(model: type[BaseModel], description: str | None = None) -> dict[str, Any]:
    """The `requestBody` of a route that reads its JSON body itself: `model`'s schema."""
    name = model.__name__
    known = _BODIES.setdefault(name, model)
    if known is not model:
        raise ValueError(f"two request bodies are named {name}")
    body: dict[str, Any] = {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": COMPONENTS + name}}},
    }
    if description is not None:
        body["description"] = description
    return body


def complete(app: FastAPI) -> None:
    """Make `app`'s document define the schemas `json_body` referred to."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()  # FastAPI's, kept as app.openapi_schema
            add_bodies(document)
            return document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def add_bodies(document: dict[str, Any]) -> None:
    """Add to `document`'s components the body schemas its operations refer to; ValueError if
    a reference still resolves to nothing."""
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    referred = set(refs(document))
    wanted = [
        model
        for name, model in _BODIES.items()
        if name not in schemas and COMPONENTS + name in referred
    ]
    if wanted:
        _, generated = models_json_schema(
            [(model, "validation") for model in wanted], ref_template=COMPONENTS + "{model}"
        )
        for name, schema in generated.get("$defs", {}).items():
            if schemas.setdefault(name, schema) != schema:
                raise ValueError(f"two schemas are named {name} in the OpenAPI document")
    dangling = sorted(
        {ref for ref in refs(document) if ref.removeprefix(COMPONENTS) not in schemas}
    )
    if dangling:
        raise ValueError(f"the OpenAPI document refers to what it does not define: {dangling}")


def refs(node: object) -> Iterator[str]:
    """Every `$ref` in a JSON document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)
