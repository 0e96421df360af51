"""(d) the realistic run: Stopper's api and two workers and `stopper simulate --profile
realistic` as separate processes, on a PostgreSQL with `fsync` and `synchronous_commit` on,
reports posted over HTTP in steps of rising rate (10, 20, 50, 100, 200 reports/s, two minutes
each by default), stopping after the first step that fails.

Each step runs on a fresh stack (processes, database, topics), so it counts its own holds only
and inherits no backlog: a step's holds are those of the cases its reports opened, every
layer of the money trail included. After the load, the benchmark compares every hold with the
institutions' own ledger (`GET /ledger` of the simulator; the rule is the crash harness's,
`tests/crash/ledger.py`) once a second until every one matches, or for `settle_s` at most. A
step passes when every report was accepted, every hold its reports call for exists and every
hold matched within `pass_within_s` (10 s) of the end of its load.

Per step: holds, matched, divergent (and unsettled: never reached), p50/p95/p99 report -> stop
confirmed (first-level holds, `report_accepted_at -> confirmed_at`), stop requests and
callbacks per hold (the simulator's `/stats` totals, the step's share: after minus before),
CPU seconds per confirmed hold of each process (`bench/cpu.py`: the api, each worker, the
simulator, PostgreSQL with all its backends, the broker, the benchmark itself) from the start
of the load to the end of the comparison, and the seconds from the end of the load until
every hold matched.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import aiohttp

from bench.cpu import cpu_seconds
from bench.loadgen import Race, Sent, measure, send_http
from bench.stack import IN_FLIGHT, Stack, connect
from tests.crash.harness import fresh_database
from tests.crash.ledger import Comparison, LedgerEntry, StopperHold, compare
from tests.servers import Broker, PostgresServer, _postgres_bin, drop_database, free_port

DURABILITY = "fsync=on, synchronous_commit=on"


@dataclass(frozen=True)
class Steps:
    rates: tuple[float, ...] = (10, 20, 50, 100, 200)
    seconds: float = 120.0
    settle_s: float = 60.0  # how long after the load to wait for every hold to match
    pass_within_s: float = 10.0
    workers: int = 2


class LedgerUnavailable(RuntimeError):
    """The simulator does not serve `GET /ledger`."""


@contextmanager
def durable_postgres_server(workdir: Path) -> Iterator[PostgresServer]:
    """A private cluster like the test suite's (`tests.servers.postgres_server`), but durable:
    `fsync`, `synchronous_commit` and `full_page_writes` on, as production runs it. Every
    commit waits for its WAL to reach the disk (about 0.7 ms here, `../shared/MEASURED.md`)."""
    bindir = _postgres_bin()
    data = workdir / "pgdata"
    port = free_port()
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(workdir, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "stopper", "-A", "trust"],
        check=True,
        capture_output=True,
    )
    options = (
        f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=on "
        "-c synchronous_commit=on -c full_page_writes=on -c max_connections=200"
    )
    pg_ctl = [*as_user, str(bindir / "pg_ctl"), "-D", str(data)]
    subprocess.run(
        [*pg_ctl, "-o", options, "-l", str(workdir / "postgres.log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run(
            [
                *(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port)),
                *("-U", "stopper", "stopper"),
            ],
            check=True,
            capture_output=True,
        )
        yield PostgresServer(
            f"postgresql+asyncpg://stopper@127.0.0.1:{port}/stopper", data, tuple(as_user)
        )
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "stop"], capture_output=True)


async def durability(pg: PostgresServer) -> str:
    """What the server itself says of its durability, as recorded in the results."""
    connection = await connect(pg.url)
    try:
        fsync = await connection.fetchval("SHOW fsync")
        synchronous_commit = await connection.fetchval("SHOW synchronous_commit")
    finally:
        await connection.close()
    return f"fsync={fsync}, synchronous_commit={synchronous_commit}"


def postmaster_pid(pg: PostgresServer) -> int:
    return int((pg.data / "postmaster.pid").read_text().split()[0])


async def realistic(steps: Steps, pg: PostgresServer, broker: Broker, root: Path) -> dict[str, Any]:
    """Every step in turn, until one fails; the results' `realistic_*` keys."""
    said = await durability(pg)
    if said != DURABILITY:
        raise RuntimeError(f"(d) needs a durable PostgreSQL; the server says {said}")
    results: list[dict[str, Any]] = []
    for n, rate in enumerate(steps.rates):
        step = await run_step(steps, rate, pg, broker, root, seed=100 + n)
        results.append(step)
        print(json.dumps({"realistic_step": step}), flush=True)
        if not step["passed"]:
            break
    return {
        "postgres_durability": said,
        "realistic_settings": {
            "rates": list(steps.rates),
            "step_seconds": steps.seconds,
            "settle_s": steps.settle_s,
            "pass_within_s": steps.pass_within_s,
            "workers": steps.workers,
            "institutions": "simulated, profile realistic",
        },
        "realistic_steps": results,
        "realistic_max_reports_per_s": max((s["rate"] for s in results if s["passed"]), default=0),
    }


async def run_step(
    steps: Steps, rate: float, pg: PostgresServer, broker: Broker, root: Path, *, seed: int
) -> dict[str, Any]:
    """One step on a fresh stack and database: the load, then the comparison with the ledger."""
    database = await fresh_database(pg)
    stack = Stack(root, database, broker, steps.workers, profile="realistic")
    await stack.start()
    try:
        async with aiohttp.ClientSession(
            base_url=stack.institutions.url, timeout=aiohttp.ClientTimeout(total=60)
        ) as simulator:
            roots = {**stack.pids(), "postgres": postmaster_pid(pg), "broker": broker.process.pid}
            totals_before = await _totals(simulator)
            cpu_before = {**cpu_seconds(roots), "bench": _own_cpu()}
            since = datetime.now(UTC)
            sent = await send_http(stack.api_url, rate, steps.seconds, seed=seed)
            load_ended = time.monotonic()
            settling = await compare_until_matched(database, since, sent, simulator, steps)
            cpu_after = {**cpu_seconds(roots), "bench": _own_cpu()}
            totals_after = await _totals(simulator)
        race = await measure(database, since)
        if settling.final is not None:
            verdicts = settling.final.summary()
        else:
            holds, _ = await _holds(database, since)
            verdicts = {
                "holds": len(holds),
                "ledger": settling.ledger_error,
                "stopper_states": dict(Counter(h.state for h in holds)),
            }
        run = StepRun(
            rate=rate,
            sent=sent,
            verdicts=verdicts,
            confirmed=await _confirmed(database, since),
            seconds_to_match=(
                None if settling.matched_at is None else settling.matched_at - load_ended
            ),
            simulator_totals={k: totals_after.get(k, 0) - v for k, v in totals_before.items()},
            cpu_s={n: cpu_after[n] - cpu_before[n] for n in cpu_before if n in cpu_after},
            report_to_stopped_ms=Race.percentiles(race.confirmed_ms),
            comparisons=settling.comparisons,
            comparison_s=settling.spent_s,
        )
    finally:
        stack.stop()
    await drop_database(database)
    await _checkpoint(pg)  # the next step should not pay for this one's dirty pages
    return step_result(steps, run)


@dataclass(frozen=True)
class StepRun:
    """What one step measured."""

    rate: float
    sent: Sent
    verdicts: dict[str, Any]  # StepComparison.summary(), or holds and why there is none
    confirmed: int  # the step's holds whose stop an institution confirmed, every layer
    seconds_to_match: float | None  # from the end of the load; None: not within settle_s
    simulator_totals: dict[str, int]  # the step's share of GET /stats totals
    cpu_s: dict[str, float]  # by process, from the start of the load to the last comparison
    report_to_stopped_ms: dict[str, float]
    comparisons: int = 0
    comparison_s: float = 0.0


# The simulator's counters reported per hold, by the name they have in the results. The
# simulator calls every stop POST it received `stop_requests` (before: `requests`).
_PER_HOLD = {
    "stop_requests_per_hold": ("stop_requests", "requests"),
    "callbacks_per_hold": ("callbacks_sent",),
    "status_inquiries_per_hold": ("status_inquiries",),
    "status_queries_per_hold": ("status_queries",),
}


def step_result(steps: Steps, run: StepRun) -> dict[str, Any]:
    """A step's entry of `realistic_steps`. It passes when every report was accepted and every
    hold matched the ledger within `steps.pass_within_s` of the end of the load."""
    holds = int(run.verdicts["holds"])
    per_hold: dict[str, float | None] = {}
    for key, names in _PER_HOLD.items():
        name = next((n for n in names if n in run.simulator_totals), None)
        if name is not None:
            per_hold[key] = round(run.simulator_totals[name] / holds, 3) if holds else None
        elif key in ("stop_requests_per_hold", "callbacks_per_hold"):
            per_hold[key] = None
    matched_in = None if run.seconds_to_match is None else round(run.seconds_to_match, 1)
    return {
        "rate": run.rate,
        "seconds": steps.seconds,
        "reports": run.sent.reports,
        "accepted": run.sent.accepted,
        "refused": run.sent.refused,
        "first_level_holds_called_for": run.sent.holds,
        **run.verdicts,
        "confirmed_holds": run.confirmed,
        "seconds_to_match": matched_in,
        "passed": (
            run.sent.refused == 0
            and holds > 0
            and run.seconds_to_match is not None
            and run.seconds_to_match <= steps.pass_within_s
        ),
        "report_to_stopped_ms": run.report_to_stopped_ms,
        **per_hold,
        "simulator_totals": run.simulator_totals,
        "cpu_s": {name: round(v, 2) for name, v in run.cpu_s.items()},
        "cpu_ms_per_confirmed_hold": {
            name: round(v * 1e3 / run.confirmed, 3) if run.confirmed else None
            for name, v in run.cpu_s.items()
        },
        "comparisons": run.comparisons,
        "comparison_s": round(run.comparison_s, 2),
    }


@dataclass
class Settling:
    """How a step's holds came to match the ledger (or did not)."""

    final: StepComparison | None  # None: the ledger could not be read
    # time.monotonic() when Stopper's holds were read in the first comparison that found every
    # one matching
    matched_at: float | None
    comparisons: int  # full comparisons made (each reads every hold and the whole ledger)
    spent_s: float  # time those took
    ledger_error: str | None = None


@dataclass(frozen=True)
class StepComparison:
    """One comparison of the step's holds with the ledger (`tests/crash/ledger.py`'s rule),
    leaving out the ledger's entries for holds of earlier reports (the warm-up's)."""

    comparison: Comparison
    stopper_states: dict[str, int]

    @property
    def all_match(self) -> bool:
        return self.comparison.holds > 0 and not self.comparison.mismatches

    def summary(self) -> dict[str, Any]:
        c = self.comparison
        pairs = Counter(f"{state} / {status}" for state, status in c.mismatches.values())
        return {
            "holds": c.holds,
            "matched": c.matched,
            "divergent": c.divergent,
            "unsettled": c.unsettled,
            "failed_but_stopped": len(c.failed_but_stopped),
            "executed_twice": len(c.executed_twice),
            "unknown_to_stopper": len(c.unknown_to_stopper),
            "mismatches_by_state_and_ledger": dict(pairs.most_common()),
            "stopper_states": dict(sorted(self.stopper_states.items())),
        }


async def compare_until_matched(
    database_url: str,
    since: datetime,
    sent: Sent,
    simulator: aiohttp.ClientSession,
    steps: Steps,
) -> Settling:
    """Compare the step's holds with the ledger once a second until every one matches, or
    `steps.settle_s` after the load. A full comparison (the ledger, every hold, the ledger
    again: a hold matches if it matches either read, as the crash harness counts it) is made
    only when counts say it could succeed (every hold the reports call for exists, none is
    `requested` or `failed`, which never match), and the next one no sooner than three times
    as long as it took: reading tens of thousands of rows from both sides would otherwise take
    the machine from what is measured. The read after one comparison's holds is the read
    before the next one's, when no round without a comparison came between.

    Without a ledger (a simulator that does not serve it) nothing can match: the step waits
    until Stopper has nothing in flight, so its other figures are still those of the whole
    race, and says why it failed."""
    give_up = time.monotonic() + steps.settle_s
    comparisons, spent, pause = 0, 0.0, 1.0
    error: str | None = None
    last: StepComparison | None = None
    carried: list[LedgerEntry] | None = None  # the previous round's read after its holds
    while True:
        tick = time.monotonic()
        gate = await _gate(database_url, since)
        complete = gate.first_level >= sent.holds
        compared = False
        if error is None and complete and gate.blocking == 0:
            try:
                last, carried, read_at = await compare_step(database_url, since, simulator, carried)
            except LedgerUnavailable as e:
                error = str(e)
            else:
                compared = True
                took = time.monotonic() - tick
                comparisons, spent, pause = comparisons + 1, spent + took, max(1.0, 3 * took)
                if last.all_match:
                    return Settling(last, read_at, comparisons, spent)
        if not compared:
            carried = None
        if error is not None and complete and gate.in_flight == 0:
            break
        if time.monotonic() >= give_up:
            break
        await asyncio.sleep(max(0.0, tick + pause - time.monotonic()))
    if error is not None:
        return Settling(None, None, comparisons, spent, error)
    if not compared or last is None:
        # Every hold, however far from matching, for the step's final count.
        last, _, _ = await compare_step(database_url, since, simulator, None)
        comparisons += 1
    return Settling(last, None, comparisons, spent)


async def compare_step(
    database_url: str,
    since: datetime,
    simulator: aiohttp.ClientSession,
    before: list[LedgerEntry] | None,
) -> tuple[StepComparison, list[LedgerEntry], float]:
    """Every hold of the step against the institutions' ledger read before (unless given) and
    after it; the read after, and when Stopper's holds were read (monotonic seconds)."""
    if before is None:
        before = await _ledger(simulator)
    read_at = time.monotonic()
    step, earlier = await _holds(database_url, since)
    after = await _ledger(simulator)
    return step_comparison(step, earlier, before, after), after, read_at


async def _ledger(simulator: aiohttp.ClientSession) -> list[LedgerEntry]:
    async with simulator.get("/ledger") as answer:
        if answer.status in (404, 405):
            raise LedgerUnavailable("the simulator does not serve GET /ledger")
        answer.raise_for_status()
        body = await answer.read()
    document = await asyncio.to_thread(json.loads, body)
    return [LedgerEntry.from_json(raw) for raw in document["holds"]]


def step_comparison(
    step: list[StopperHold],
    earlier: set[UUID],
    before: list[LedgerEntry],
    after: list[LedgerEntry],
) -> StepComparison:
    """The step's holds against the ledger read before and after them, without the entries of
    `earlier` holds (those of reports before the step's)."""
    return StepComparison(
        compare(
            step,
            [e for e in before if e.hold_id not in earlier],
            [e for e in after if e.hold_id not in earlier],
        ),
        dict(Counter(h.state for h in step)),
    )


_STEP_HOLDS = """
    FROM holds h JOIN cases c ON c.id = h.case_id
    WHERE c.accepted_at >= $1
"""


async def _holds(database_url: str, since: datetime) -> tuple[list[StopperHold], set[UUID]]:
    """The step's holds, and the ids of the holds of earlier reports (the warm-up's)."""
    connection = await connect(database_url)
    try:
        rows = await connection.fetch(
            """
            SELECT h.id, h.institution_code, h.state, h.amount_stopped, h.reapplications,
                   c.accepted_at >= $1 AS of_step
            FROM holds h JOIN cases c ON c.id = h.case_id
            """,
            since,
        )
    finally:
        await connection.close()
    step = [
        StopperHold(
            UUID(bytes=r["id"].bytes),  # asyncpg's own UUID type, as the standard one
            r["institution_code"],
            r["state"],
            int(r["amount_stopped"] or 0),
            int(r["reapplications"]),
        )
        for r in rows
        if r["of_step"]
    ]
    return step, {UUID(bytes=r["id"].bytes) for r in rows if not r["of_step"]}


@dataclass(frozen=True)
class Gate:
    first_level: int  # first-level holds (what the reports call for)
    blocking: int  # holds that cannot match as they stand: requested, failed
    in_flight: int  # holds Stopper still works on: requested, sent, unconfirmed


async def _gate(database_url: str, since: datetime) -> Gate:
    connection = await connect(database_url)
    try:
        row = await connection.fetchrow(
            f"""
            SELECT count(*) FILTER (WHERE h.layer = 1 AND h.reapplications = 0) AS first_level,
                   count(*) FILTER (WHERE h.state IN ('requested', 'failed')) AS blocking,
                   count(*) FILTER (WHERE h.state = ANY($2::text[])) AS in_flight
            {_STEP_HOLDS}
            """,
            since,
            list(IN_FLIGHT),
        )
    finally:
        await connection.close()
    assert row is not None
    return Gate(int(row["first_level"]), int(row["blocking"]), int(row["in_flight"]))


async def _confirmed(database_url: str, since: datetime) -> int:
    """The step's holds whose stop an institution confirmed (every layer)."""
    connection = await connect(database_url)
    try:
        found = await connection.fetchval(
            f"SELECT count(*) {_STEP_HOLDS} AND h.confirmed_at IS NOT NULL", since
        )
    finally:
        await connection.close()
    return int(found)


async def _totals(simulator: aiohttp.ClientSession) -> dict[str, int]:
    async with simulator.get("/stats") as answer:
        answer.raise_for_status()
        document = await answer.json()
    return {k: int(v) for k, v in document["totals"].items() if isinstance(v, int | float)}


async def _checkpoint(pg: PostgresServer) -> None:
    connection = await connect(pg.url)
    try:
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()


def _own_cpu() -> float:
    """This process's CPU seconds: the load generator and the comparisons (its children, the
    processes of the stack, are counted on their own)."""
    times = os.times()
    return times.user + times.system
