"""The mule-account registry: the known mule accounts, and an account looked up. Operators
only (as the institution lists and the console): an intake key is an agency's system filing
reports, and one that could look up any number would tell every agency what the others' cases
name; an agency sees its own cases' links in the case view. The number to look up travels in
the body, never in a URL (URLs end up in access logs and proxies)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response

from stopper.api.auth import operator
from stopper.api.refusals import error_response
from stopper.api.wire import account_record_v1, flagged_accounts_v1
from stopper.app.auth import Caller
from stopper.app.mules import MuleRegistry
from stopper.contracts.accounts import AccountLookupV1, AccountRecordV1, FlaggedAccountsV1
from stopper.contracts.reports import ErrorV1

# The same answer whether or not Stopper has the number in another role (a victim's own
# account, a payout's): a look-up learns only what the cases say.
NOT_NAMED = "no case names this account"


def router(registry: MuleRegistry) -> APIRouter:
    routes = APIRouter()

    @routes.get(
        "/v1/accounts/flagged",
        response_model=FlaggedAccountsV1,
        summary="Known mule accounts (named in two or more cases, reported or found by the "
        "money trail), the most recently named first, masked.",
    )
    async def flagged(
        _: Annotated[Caller, Depends(operator)],
        limit: int = Query(default=50, ge=1, le=500),
        offset: int = Query(default=0, ge=0, le=1_000_000),
    ) -> Response:
        view = await registry.flagged(limit, offset)
        return JSONResponse(flagged_accounts_v1(view, offset).model_dump(mode="json"))

    @routes.post(
        "/v1/accounts/lookup",
        response_model=AccountRecordV1,
        responses={404: {"model": ErrorV1, "description": "No case names this account."}},
        summary="One account, by institution and number in the body: whether it is a known "
        "mule, and the cases naming it.",
    )
    async def look_up(body: AccountLookupV1, _: Annotated[Caller, Depends(operator)]) -> Response:
        found = await registry.look_up(body.institution_code, body.account_number)
        if found is None:
            return error_response(404, NOT_NAMED)
        return JSONResponse(account_record_v1(found).model_dump(mode="json"))

    return routes
