"""FastAPI dependencies that say who is calling (`stopper.app.auth`): any caller, or operators
only. The API key comes as `Authorization: Bearer <key>`, or, from a browser (the console), as
the password of HTTP Basic authentication."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import Depends, Request

from stopper.app.auth import ANONYMOUS, Caller


class AuthRefused(Exception):
    """Answered with `status` and `detail`; counted by `reason`."""

    def __init__(self, status: int, detail: str, reason: str) -> None:
        super().__init__(detail)
        self.status, self.detail, self.reason = status, detail, reason


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
            return ANONYMOUS
        raise AuthRefused(401, "an API key is required: Authorization: Bearer <key>", "missing")
    found: Caller | None = await runtime.keys.authenticate(key)
    if found is None:
        raise AuthRefused(401, "the API key is not valid", "invalid")
    return found


async def operator(who: Annotated[Caller, Depends(caller)]) -> Caller:
    if not who.is_operator:
        raise AuthRefused(403, "this needs an operator key", "not_operator")
    return who
