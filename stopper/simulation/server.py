"""The simulated institutions' HTTP side (`stopper simulate`), served by FastAPI:

    POST /institutions/{code}/stops                    StopRequestV1 -> 200 outcome | 202 accepted
    GET  /institutions/{code}/stops/{idempotency_key}  -> StopStatusV1: 200 outcome, 202 pending,
                                                          404 unknown (never received)
    POST /institutions/{code}/stops/status             StopStatusQueryV1 -> 200 StopStatusesV1
    POST /institutions/{code}/freezes, .../returns, .../releases   answered at once
    POST /institutions/{code}/ledger/stops              {"stops": [{hold_id, generation, amount}]}
    POST /institutions/{code}/ledger/lifted             {"idempotency_keys": [...]}: the
                                                          ledger changed directly (tests, bench)
    POST /institutions/{code}/iso20022/camt.056, .../iso20022/return   the ISO 20022 institutions
                                                          (iso_banks.py)
    GET  /stats, /ledger, /healthz                     the simulation's own counts and record,
                                                          for tests (in minor units, as it counts)

What they do is `institutions.py`'s. The simulation counts in minor units; what it answers is
written as the contracts say (`stopper.contracts.institutions`: amounts as decimal strings), so
the simulated institutions speak exactly what a real one must."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal, TypeVar
from uuid import UUID

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError

from stopper.contracts.institutions import (
    FreezeAnswerV1,
    FreezeRequestV1,
    ReleaseAnswerV1,
    ReleaseRequestV1,
    ReturnAnswerV1,
    ReturnRequestV1,
    StopAnswerV1,
    StopRequestV1,
    StopStatusesV1,
    StopStatusQueryV1,
    StopStatusV1,
)
from stopper.simulation.institutions import SimulatedInstitution, Simulation
from stopper.simulation.iso_banks import add_iso_routes
from stopper.simulation.records import INQUIRY_HTTP_STATUS

_Order = FreezeRequestV1 | ReturnRequestV1
# The requests about a hold that `admitted` checks before they are carried out.
_Admitted = TypeVar("_Admitted", StopRequestV1, ReleaseRequestV1)

log = logging.getLogger(__name__)


def written(contract: type[BaseModel], outcome: dict[str, Any]) -> dict[str, Any]:
    """What the simulation decided (in minor units) as an institution writes it: the
    contract's JSON, amounts as decimal strings, with the fields it decided and no others."""
    return contract.model_validate(outcome).model_dump(mode="json", exclude_unset=True)


class SeededStopV1(BaseModel):
    hold_id: UUID
    generation: int = Field(default=0, ge=0)
    amount: int = Field(gt=0, description="Held, in minor units (as the simulation counts).")


class SeededStopsV1(BaseModel):
    stops: list[SeededStopV1] = Field(max_length=100_000)


def create_simulation_app(simulation: Simulation) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await simulation.start()
        try:
            yield
        finally:
            await simulation.stop()

    app = FastAPI(title="Stopper: simulated institutions", lifespan=lifespan)

    async def admitted(
        request: Request,
        contract: type[_Admitted],
        what: str,
        counter: Literal["stop_requests", "release_requests"],
    ) -> tuple[SimulatedInstitution, _Admitted] | Response:
        """What a request about a hold passes before it is carried out: an institution of the
        path's code (counted by `counter` from there on), up, the body its contract, its key
        the header's and the institution the path's, and no 5xx rolled (one comes after the
        institution's latency). The institution and the request, or the answer to give."""
        sim = simulation.institutions.get(request.path_params["code"])
        if sim is None:
            return JSONResponse({"detail": "no such institution"}, status_code=404)
        setattr(sim.counts, counter, getattr(sim.counts, counter) + 1)
        if sim.down(simulation.elapsed_s()):
            return JSONResponse({"detail": "service unavailable"}, status_code=503)
        try:
            parsed = contract.model_validate_json(await request.body())
        except ValidationError:
            return JSONResponse({"detail": f"invalid {what}"}, status_code=422)
        key = request.headers.get("idempotency-key")
        if key != parsed.idempotency_key or parsed.institution_code != sim.institution.code:
            return JSONResponse(
                {"detail": "idempotency key or institution mismatch"}, status_code=400
            )
        if sim.roll(sim.behaviour.error_rate):
            await asyncio.sleep(sim.latency_s())
            return JSONResponse({"detail": "internal error"}, status_code=500)
        return sim, parsed

    async def stop(request: Request) -> Response:
        admission = await admitted(request, StopRequestV1, "stop request", "stop_requests")
        if isinstance(admission, Response):
            return admission
        sim, stop_request = admission
        b = sim.behaviour
        record = simulation.execute(sim, stop_request)
        if sim.roll(b.timeout_rate):
            # The stop happened, but the answer never arrives in time.
            await simulation.hang(b.hang_s)
        else:
            await asyncio.sleep(sim.latency_s())
        if sim.roll(b.malformed_rate):
            return Response(b"<html>gateway says hello", status_code=200, media_type="text/html")
        if b.answers_by_callback:
            return JSONResponse({"status": "accepted"}, status_code=202)
        return JSONResponse(written(StopAnswerV1, record.outcome), status_code=200)

    async def stop_status(request: Request) -> Response:
        """One stop request's status, by its key: refused like a stop when down."""
        sim = simulation.institutions.get(request.path_params["code"])
        if sim is None:
            return JSONResponse({"detail": "no such institution"}, status_code=404)
        sim.counts.status_inquiries += 1
        if sim.down(simulation.elapsed_s()):
            return JSONResponse({"detail": "service unavailable"}, status_code=503)
        await asyncio.sleep(sim.latency_s())
        status = sim.status(request.path_params["idempotency_key"], time.monotonic())
        return JSONResponse(
            written(StopStatusV1, status),
            status_code=INQUIRY_HTTP_STATUS.get(status["status"], 200),
        )

    async def stop_statuses(request: Request) -> Response:
        """Many stop requests' statuses at once, one entry per key asked, in the order asked."""
        sim = simulation.institutions.get(request.path_params["code"])
        if sim is None:
            return JSONResponse({"detail": "no such institution"}, status_code=404)
        sim.counts.status_queries += 1
        if sim.down(simulation.elapsed_s()):
            return JSONResponse({"detail": "service unavailable"}, status_code=503)
        try:
            query = StopStatusQueryV1.model_validate_json(await request.body())
        except ValidationError:
            return JSONResponse({"detail": "invalid status query"}, status_code=422)
        sim.counts.status_keys_asked += len(query.idempotency_keys)
        await asyncio.sleep(sim.latency_s())
        now = time.monotonic()
        statuses = {"statuses": [sim.status(k, now) for k in query.idempotency_keys]}
        return JSONResponse(written(StopStatusesV1, statuses))

    async def seed_stops(request: Request) -> Response:
        """Stops put on the institution's record directly (tests, the benchmark's stopped
        holds): `{"stops": [{"hold_id", "generation", "amount"}]}`, amounts in minor units."""
        sim = simulation.institutions.get(request.path_params["code"])
        if sim is None:
            return JSONResponse({"detail": "no such institution"}, status_code=404)
        try:
            body = SeededStopsV1.model_validate_json(await request.body())
        except ValidationError:
            return JSONResponse({"detail": "invalid stops"}, status_code=422)
        sim.seed_stops([(s.hold_id, s.generation, s.amount) for s in body.stops])
        return JSONResponse({"seeded": len(body.stops)})

    async def lift_stops(request: Request) -> Response:
        """Stops the institution lifts on its own decision: `{"idempotency_keys": [...]}`."""
        sim = simulation.institutions.get(request.path_params["code"])
        if sim is None:
            return JSONResponse({"detail": "no such institution"}, status_code=404)
        try:
            body = StopStatusQueryV1.model_validate_json(await request.body())
        except ValidationError:
            return JSONResponse({"detail": "invalid keys"}, status_code=422)
        return JSONResponse({"lifted": sim.lift(list(body.idempotency_keys))})

    # Plain Starlette routes: every stop request of a benchmark comes here, and FastAPI's
    # parameter machinery would cost the simulated banks more than Stopper spends per hold; an
    # inquiry may follow every accepted stop whose callback is late.
    app.add_route("/institutions/{code}/stops", stop, methods=["POST"])
    app.add_route("/institutions/{code}/stops/status", stop_statuses, methods=["POST"])
    app.add_route("/institutions/{code}/stops/{idempotency_key}", stop_status, methods=["GET"])
    app.add_route("/institutions/{code}/ledger/stops", seed_stops, methods=["POST"])
    app.add_route("/institutions/{code}/ledger/lifted", lift_stops, methods=["POST"])
    add_iso_routes(app, simulation)  # the iso20022 institutions' camt.056 and return routes

    async def order(
        code: str,
        request: Request,
        idempotency_key: str | None,
        model: type[_Order],
        carry_out: Callable[[SimulatedInstitution, Any], dict[str, Any]],
        answer: type[FreezeAnswerV1 | ReturnAnswerV1],
    ) -> Response:
        """A freeze or a return: refused like a stop when down, answered at once."""
        sim = simulation.institutions.get(code)
        if sim is None:
            return JSONResponse({"detail": "no such institution"}, status_code=404)
        if sim.down(simulation.elapsed_s()):
            return JSONResponse({"detail": "service unavailable"}, status_code=503)
        try:
            parsed = model.model_validate_json(await request.body())
        except ValidationError:
            return JSONResponse({"detail": "invalid request"}, status_code=422)
        if idempotency_key != parsed.idempotency_key:
            return JSONResponse({"detail": "idempotency key mismatch"}, status_code=400)
        await asyncio.sleep(sim.latency_s())
        return JSONResponse(written(answer, carry_out(sim, parsed)))

    @app.post("/institutions/{code}/freezes")
    async def freeze(
        code: str, request: Request, idempotency_key: str | None = Header(default=None)
    ) -> Response:
        return await order(
            code,
            request,
            idempotency_key,
            FreezeRequestV1,
            SimulatedInstitution.freeze,
            FreezeAnswerV1,
        )

    @app.post("/institutions/{code}/returns")
    async def pay_back(
        code: str, request: Request, idempotency_key: str | None = Header(default=None)
    ) -> Response:
        return await order(
            code,
            request,
            idempotency_key,
            ReturnRequestV1,
            SimulatedInstitution.pay_back,
            ReturnAnswerV1,
        )

    @app.post("/institutions/{code}/releases")
    async def release(request: Request) -> Response:
        """A release, faulted like a stop (a 5xx before it is carried out, an answer that comes
        too late after it was), answered at once."""
        admission = await admitted(request, ReleaseRequestV1, "release request", "release_requests")
        if isinstance(admission, Response):
            return admission
        sim, parsed = admission
        b = sim.behaviour
        result = sim.release(parsed)
        if sim.roll(b.timeout_rate):
            await simulation.hang(b.hang_s)  # released, but the answer never arrives in time
        else:
            await asyncio.sleep(sim.latency_s())
        return JSONResponse(written(ReleaseAnswerV1, result))

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        return simulation.stats()

    @app.get("/ledger")
    async def ledger() -> Response:
        # Straight to JSON: after a benchmark it lists hundreds of thousands of holds.
        return JSONResponse({"holds": simulation.ledger()})

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
