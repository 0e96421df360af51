"""FastAPI dependencies that say who is calling (`stopper.app.auth`): any caller, operators
only, or a filer of reports. The API key comes as `Authorization: Bearer <key>`, or, from a
browser (the console), as the password of HTTP Basic authentication.

Where keys are not required, a caller without a key may name the person acting with the
`X-Operator` header (four eyes need two people, also in a demo); it is ignored wherever a key
says who is calling, and wherever keys are required."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import Depends, Request

from stopper.app.auth import Caller, anonymous
from stopper.errors import AuthRefusal, AuthRefused

OPERATOR_HEADER = "x-operator"


def presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return ""
        return decoded.partition(":")[2]
    return None


async def caller(request: Request) -> Caller:
    runtime = request.app.state.runtime
    key = presented_key(request)
    if key is None:
        if not runtime.settings.keys_required:
            name = request.headers.get(OPERATOR_HEADER, "").strip()[:64]
            return anonymous(name if name.isprintable() else None)
        raise AuthRefused(
            AuthRefusal.MISSING, "an API key is required: Authorization: Bearer <key>"
        )
    found: Caller | None = await runtime.keys.authenticate(key)
    if found is None:
        raise AuthRefused(AuthRefusal.INVALID, "the API key is not valid")
    return found


async def operator(who: Annotated[Caller, Depends(caller)]) -> Caller:
    if not who.is_operator:
        raise AuthRefused(AuthRefusal.NOT_OPERATOR, "this needs an operator key")
    return who


async def filer(who: Annotated[Caller, Depends(caller)]) -> Caller:
    """A caller who may file reports; refused before the body is read."""
    if not who.files_reports:
        raise AuthRefused(AuthRefusal.NOT_INTAKE, "reports are filed with an intake key")
    return who
