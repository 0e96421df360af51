"""(e) Live reports while a re-verification drains: issue #17's "live reports never wait behind
bulk work".

Stopper's api, a worker and the simulated institutions (profile `instant`) as processes, on a
fresh database of the fsync-off server. `--reverify-holds` stopped first-level holds (300,000)
are seeded straight into PostgreSQL by COPY (cases, accounts, holds: stopped a day ago, their
stops lapsing in 47 hours) and into the simulated institutions' ledgers from the same
generated list (`POST /institutions/{code}/ledger/stops`), so each institution knows each of
its holds as stopped under the key Stopper asks with. Then:

1. a baseline: live reports over HTTP at `--reverify-rate` (20) per second for
   `--reverify-seconds`, with no job running;
2. a re-verification of every institution is started (`POST /v1/reverifications`) and, while it
   drains, live reports at the same rate for the same time; the job is followed once a second
   and then until it finishes (or `--reverify-timeout`).

Per load, report accepted -> stop request sent (`sent_at`, from the holds table, as (b)) p50 /
p95 / p99 for the live first-level holds; the job's rate (holds asked per second from its
start to its end, or to the last reading), whether it finished, whether it was still draining
when the live load ended (else the load's end ran without it), and its outcomes (every seeded
hold must be confirmed).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.loadgen import Race, send_http
from bench.stack import Stack, connect, settled
from stopper.registry import load_registry
from tests.crash.harness import fresh_database
from tests.servers import Broker, PostgresServer, drop_database

HELD = 100_000  # minor units, each seeded stop
_SIM_CHUNK = 20_000  # holds per seeding request to the simulator


def seeded_holds(count: int, codes: list[str]) -> list[tuple[uuid.UUID, str]]:
    """The generated list both sides are seeded from: each hold's id and institution."""
    return [(uuid.uuid4(), codes[n % len(codes)]) for n in range(count)]


async def seed_database(database_url: str, holds: list[tuple[uuid.UUID, str]]) -> None:
    """Cases, accounts and stopped first-level holds, by COPY: one case and account per hold."""
    now = datetime.now(UTC)
    confirmed = now - timedelta(days=1)
    expires = now + timedelta(hours=47)
    connection = await connect(database_url)
    try:
        cases, accounts, rows = [], [], []
        for n, (hold_id, code) in enumerate(holds):
            case_id, account_id = uuid.uuid4(), uuid.uuid4()
            cases.append(
                (
                    case_id,
                    f"SEED-{hold_id.hex}",
                    "PSB-SEED",
                    hold_id.hex,
                    "http",
                    confirmed,
                    confirmed,
                    confirmed,
                )
            )
            accounts.append((account_id, code, f"62{n:014d}", None, confirmed))
            rows.append(
                (
                    hold_id,
                    case_id,
                    account_id,
                    code,
                    "stopped",
                    4,
                    "CNY",
                    HELD,
                    HELD,
                    0,
                    0,
                    1,
                    0,
                    confirmed,
                    expires,
                    confirmed,
                    confirmed,
                    1,
                    confirmed,
                    confirmed,
                    HELD,
                )
            )
        await connection.copy_records_to_table(
            "cases",
            records=cases,
            columns=[
                "id",
                "report_id",
                "agency_code",
                "report_fingerprint",
                "source",
                "reported_at",
                "accepted_at",
                "opened_at",
            ],
        )
        await connection.copy_records_to_table(
            "accounts",
            records=accounts,
            columns=["id", "institution_code", "account_number", "holder_name", "first_seen_at"],
        )
        await connection.copy_records_to_table(
            "holds",
            records=rows,
            columns=[
                "id",
                "case_id",
                "account_id",
                "institution_code",
                "state",
                "version",
                "currency",
                "amount_asked",
                "amount_stopped",
                "amount_frozen",
                "amount_returned",
                "layer",
                "reapplications",
                "requested_at",
                "stop_expires_at",
                "updated_at",
                "report_accepted_at",
                "attempts",
                "sent_at",
                "confirmed_at",
                "amount_first_request",
            ],
        )
        await connection.execute("ANALYZE cases; ANALYZE accounts; ANALYZE holds")
    finally:
        await connection.close()


async def seed_simulator(sim_url: str, holds: list[tuple[uuid.UUID, str]]) -> None:
    by_code: dict[str, list[uuid.UUID]] = {}
    for hold_id, code in holds:
        by_code.setdefault(code, []).append(hold_id)
    async with httpx.AsyncClient(base_url=sim_url, timeout=120) as client:
        for code, ids in by_code.items():
            for start in range(0, len(ids), _SIM_CHUNK):
                stops = [
                    {"hold_id": str(h), "generation": 0, "amount": HELD}
                    for h in ids[start : start + _SIM_CHUNK]
                ]
                answer = await client.post(
                    f"/institutions/{code}/ledger/stops", json={"stops": stops}
                )
                answer.raise_for_status()


def _race(race: Race, accepted: int) -> dict[str, Any]:
    return {
        "holds": race.holds,
        "reports_accepted": accepted,
        "report_to_request_ms": Race.percentiles(race.requested_ms),
        "report_to_stopped_ms": Race.percentiles(race.confirmed_ms),
    }


async def reverify_bench(
    pg: PostgresServer,
    broker: Broker,
    root: Path,
    *,
    holds: int,
    rate: float,
    seconds: float,
    timeout: float,
    workers: int = 1,
    page: int | None = None,
    holds_per_s: float | None = None,
) -> dict[str, Any]:
    """`page`, `holds_per_s`: the workers' STOPPER_REVERIFY_PAGE and _HOLDS_PER_S (default:
    theirs)."""
    database = await fresh_database(pg)
    stack = Stack(root, database, broker, workers)
    tuned = {"STOPPER_REVERIFY_PAGE": page, "STOPPER_REVERIFY_HOLDS_PER_S": holds_per_s}
    for process in stack.processes:
        process.env.update({k: str(v) for k, v in tuned.items() if v is not None})
    sim_url = stack.env["STOPPER_INSTITUTIONS_BASE_URL"]
    codes = sorted(load_registry())
    generated = seeded_holds(holds, codes)
    try:
        await stack.start()
        started = time.perf_counter()
        await seed_database(database, generated)
        await seed_simulator(sim_url, generated)
        seed_s = time.perf_counter() - started

        since = datetime.now(UTC)
        sent = await send_http(stack.api_url, rate, seconds, seed=31)
        baseline = await settled(database, since, sent.holds, timeout=120)
        baseline_doc = _race(baseline, sent.accepted)

        async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as client:
            begun = await client.post("/v1/reverifications", json={"requested_by": "bench"})
            begun.raise_for_status()
            job = begun.json()
            job_started = time.perf_counter()
            readings: list[dict[str, Any]] = []
            done = asyncio.Event()

            async def follow() -> None:
                while not done.is_set():
                    now = (await client.get(f"/v1/reverifications/{job['id']}")).json()
                    readings.append({"t": time.perf_counter() - job_started, **now})
                    if now["state"] == "finished":
                        return
                    await asyncio.sleep(1.0)

            following = asyncio.create_task(follow())
            since = datetime.now(UTC)
            sent = await send_http(stack.api_url, rate, seconds, seed=32)
            at_load_end = readings[-1] if readings else job
            race = await settled(database, since, sent.holds, timeout=120)
            try:
                await asyncio.wait_for(asyncio.shield(following), timeout=timeout)
            except TimeoutError:
                done.set()
                await following
        last = readings[-1]
        finished = last["state"] == "finished"
        asked = last["asked"] + last["unreachable"]
        elapsed = last["t"]
        if finished:
            # The job's own clock: from its start to its end.
            elapsed = (
                datetime.fromisoformat(last["finished_at"])
                - datetime.fromisoformat(last["started_at"])
            ).total_seconds()
        live = _race(race, sent.accepted)
    finally:
        stack.stop()
    await drop_database(database)
    return {
        "reverify": {
            "holds": holds,
            "seed_s": round(seed_s, 1),
            "rate": rate,
            "seconds": seconds,
            "workers": workers,
            "page": page,
            "holds_per_s_cap": holds_per_s,
            "baseline": baseline_doc,
            "live": live,
            "job": {
                "holds": job["holds"],
                "asked": asked,
                "finished": finished,
                "draining_at_load_end": at_load_end["state"] != "finished",
                "seconds": round(elapsed, 1),
                "outcomes": last["outcomes"],
            },
        },
        "reverify_holds": holds,
        "reverify_live_p50_ms": live["report_to_request_ms"]["p50"],
        "reverify_live_p99_ms": live["report_to_request_ms"]["p99"],
        "reverify_baseline_p99_ms": baseline_doc["report_to_request_ms"]["p99"],
        "reverify_holds_per_s": round(asked / elapsed, 1) if elapsed > 0 else 0.0,
        "reverify_finished": finished,
    }
