"""The crash harness: Stopper as real processes on the real PostgreSQL and broker, under a steady
load of reports, while its processes are killed (SIGKILL) and restarted, the broker is paused
(SIGSTOP) and PostgreSQL is restarted. Then it checks what must always hold:

- every report Stopper accepted (HTTP 202, or 200 for a repost) has its case;
- every hold reached a state an institution's answer or Stopper's deadline put it in (none is
  left `requested`, `sent` or `unconfirmed`);
- no institution executed a stop twice (the simulated institutions count it);
- every hold's audit trail is a gapless chain from its birth to its current state.

A scenario with `ledger_within_s` (`REALISTIC_UNDER_FAULTS`: the packaged registry's real
timeouts and callback waits, 20 reports/s) checks more, against what the institutions did: that
long after the last fault and the end of the load, every hold matches its institution's ledger
(`tests/crash/ledger.py`): no divergence, no hold `failed` whose funds are stopped.

The suite runs bounded scenarios (`tests/crash/test_crash.py`); `make soak` runs a longer one
(`python -m tests.crash`) and prints the counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from stopper.registry import load_registry
from stopper.simulation.reports import ReportFactory
from tests.crash.ledger import Comparison, LedgerEntry, StopperHold, compare
from tests.integration.helpers import fast_registry
from tests.servers import Broker, PostgresServer, create_database, free_port

SETTLED = {"stopped", "not_found", "rejected", "failed"}
IN_FLIGHT = {"requested", "sent", "unconfirmed"}  # no answer yet
LEDGER_POLL_S = 3.0  # between two comparisons with the ledger


@dataclass(frozen=True)
class Scenario:
    load_s: float = 45.0  # how long reports keep coming
    rate_per_s: float = 4.0
    kills: int = 6  # SIGKILLs of a Stopper process during the load
    broker_pause_s: float = 30.0  # 0: the broker is never paused
    restart_postgres: bool = True
    workers: int = 2
    kill_workers_only: bool = False
    revive: bool = True  # False: a killed process stays dead (the others must take its work)
    settle_s: float = 150.0  # after the load: time for everything to settle
    seed: int = 7
    # True: the packaged registry's timeouts, callback waits and deadlines, as deployed; False:
    # scaled down for speed (`fast_registry`, 120 s deadlines).
    packaged_registry: bool = False
    spread_kills: bool = False  # True: each process is killed once before any is killed twice
    # > 0: every hold must match its institution's ledger within this many seconds of the
    # later of the last fault and the end of the load (instead of `settle_s` to settle).
    ledger_within_s: float = 0.0


# The scenario: the realistic profile at 20 reports/s for two minutes on the registry as
# deployed, the api and both workers SIGKILLed (and restarted), the broker paused for 20 s and
# PostgreSQL restarted, all mid-load; then 60 s for every hold to match the institutions' ledger.
REALISTIC_UNDER_FAULTS = Scenario(
    load_s=120.0,
    rate_per_s=20.0,
    kills=4,
    broker_pause_s=20.0,
    restart_postgres=True,
    workers=2,
    spread_kills=True,
    packaged_registry=True,
    ledger_within_s=60.0,
    seed=20,
)


@dataclass
class Outcome:
    reports_sent: int = 0
    accepted: int = 0
    cases: int = 0
    holds_by_state: dict[str, int] = field(default_factory=dict)
    stops_executed: int = 0
    double_stops: int = 0
    stop_requests: int = 0  # that reached the institutions, retries and repeats included
    callbacks_failed: int = 0  # that the institutions gave up delivering
    lost: list[str] = field(default_factory=list)  # accepted report ids without a case
    stuck: int = 0  # holds still without an answer (IN_FLIGHT) at the end
    audit_gaps: list[str] = field(default_factory=list)
    disturbances: list[str] = field(default_factory=list)
    # With a ledger check: the last comparison, and when everything matched (seconds after the
    # later of the last fault and the end of the load; None: not within the time allowed).
    ledger: Comparison | None = None
    matched_after_s: float | None = None
    last_fault_s: float = 0.0  # seconds after the load began: the end of the last disturbance

    @property
    def clean(self) -> bool:
        """Nothing lost, nothing doubled, no gap; with a ledger check, every hold matches."""
        settled = (
            self.stuck == 0
            if self.ledger is None
            else (
                self.matched_after_s is not None
                and self.ledger.divergent == 0
                and self.ledger.unsettled == 0
                and not self.ledger.executed_twice
                and not self.ledger.unknown_to_stopper
            )
        )
        return (
            settled
            and not self.lost
            and self.double_stops == 0
            and not self.audit_gaps
            and self.accepted == self.reports_sent
        )

    def lines(self) -> list[str]:
        states = " ".join(f"{k}:{v}" for k, v in sorted(self.holds_by_state.items()))
        ledger = [] if self.ledger is None else [*self._ledger_lines(), *self.ledger.lines()]
        return [
            f"reports sent      {self.reports_sent}",
            f"accepted          {self.accepted}",
            f"cases             {self.cases}",
            f"holds by state    {states}",
            f"stops executed    {self.stops_executed}",
            f"stop requests     {self.stop_requests} ({self._per_hold(self.stop_requests)} a hold)",
            f"callbacks failed  {self.callbacks_failed}",
            f"doubles           {self.double_stops}",
            f"lost              {len(self.lost)}",
            f"stuck in flight   {self.stuck}",
            f"audit gaps        {len(self.audit_gaps)}",
            f"disturbances      {len(self.disturbances)}: {', '.join(self.disturbances)}",
            *ledger,
        ]

    def _per_hold(self, count: int) -> str:
        holds = sum(self.holds_by_state.values())
        return f"{count / holds:.2f}" if holds else "-"

    def _ledger_lines(self) -> list[str]:
        if self.matched_after_s is None:
            when = "not within the time allowed"
        else:
            when = f"{self.matched_after_s:.0f} s after the later of the last fault and the load"
        return [
            f"last fault        {self.last_fault_s:.0f} s into the load",
            f"all matched       {when}",
        ]


class Process:
    """One OS process of Stopper (or of the simulated institutions), restartable."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> None:
        self.name, self.args, self.env = name, args, env
        self.log_path = logs / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.port = int(args[args.index("--port") + 1])

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "stopper.cli", *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait()

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                if self.popen is not None and self.popen.poll() is not None:
                    raise RuntimeError(f"{self.name} exited: see {self.log_path}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/healthz", timeout=2)).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer /healthz: see {self.log_path}")


async def fresh_database(server: PostgresServer) -> str:
    return await create_database(server.url, "crash")


class Harness:
    def __init__(
        self, scenario: Scenario, workdir: Path, postgres: PostgresServer, broker: Broker
    ) -> None:
        self.scenario = scenario
        self.workdir = workdir
        self.postgres = postgres
        self.broker = broker
        self.rng = random.Random(scenario.seed)
        self.outcome = Outcome()
        self.accepted: set[str] = set()
        self.processes: dict[str, Process] = {}
        self.dead: set[str] = set()  # killed for good (`Scenario.revive` False)
        self.kills: Counter[str] = Counter()
        self.database_url = ""
        self.load_started = self.load_ended = self.last_fault = 0.0  # monotonic

    async def run(self) -> Outcome:
        self.database_url = await fresh_database(self.postgres)
        await self._start_all()
        try:
            self.load_started = time.monotonic()
            load = asyncio.create_task(self._load())
            chaos = asyncio.create_task(self._chaos())
            await load
            await chaos
            await self._all_up()
            if self.scenario.ledger_within_s:
                await self._match_ledger()
            else:
                await self._settle()
            await self._check()
        finally:
            for process in self.processes.values():
                process.stop()
        return self.outcome

    # --- the processes ---------------------------------------------------------------------

    async def _start_all(self) -> None:
        tag = uuid.uuid4().hex[:8]
        api_port, sim_port = free_port(), free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("STOPPER_")},
            "STOPPER_DATABASE_URL": self.database_url,
            "STOPPER_DATABASE_MIGRATE_ON_START": "false",
            "STOPPER_KAFKA_BOOTSTRAP": self.broker.bootstrap,
            "STOPPER_KAFKA_REPORTS_TOPIC": f"crash.reports.{tag}",
            "STOPPER_KAFKA_REPORTS_DLQ_TOPIC": f"crash.reports.dlq.{tag}",
            "STOPPER_KAFKA_STOP_REQUESTS_TOPIC": f"crash.stop-requests.{tag}",
            "STOPPER_KAFKA_STOP_REQUESTS_DLQ_TOPIC": f"crash.stop-requests.dlq.{tag}",
            "STOPPER_KAFKA_HOLD_EVENTS_TOPIC": f"crash.hold-events.{tag}",
            "STOPPER_KAFKA_INTAKE_GROUP": f"crash-intake-{tag}",
            "STOPPER_KAFKA_DISPATCH_GROUP": f"crash-dispatch-{tag}",
            "STOPPER_KAFKA_TOPIC_PARTITIONS": "4",
            "STOPPER_INSTITUTIONS_BASE_URL": f"http://127.0.0.1:{sim_port}",
            "STOPPER_LOG_LEVEL": "WARNING",
            "STOPPER_SIMULATION_SEED": str(self.scenario.seed),
        }
        if not self.scenario.packaged_registry:
            # Long enough to outlast the disturbances: holds recover rather than fail.
            env["STOPPER_REGISTRY_PATH"] = str(fast_registry(self.workdir, deadline_s=120))
            env["STOPPER_DISPATCH_FIRST_DISPATCH_GRACE_S"] = "3"
        migrate = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "stopper.cli", "migrate"],
            env=env,
            capture_output=True,
        )
        if migrate.returncode != 0:
            raise RuntimeError(migrate.stderr.decode()[-2000:])
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        serve = ["serve", "--host", "127.0.0.1", "--port"]
        self.processes["institutions"] = Process(
            "institutions",
            [
                "simulate",
                "--port",
                str(sim_port),
                "--profile",
                "realistic",
                "--stopper-url",
                f"http://127.0.0.1:{api_port}",
            ],
            env,
            logs,
        )
        self.processes["api"] = Process(
            "api",
            [*serve, str(api_port), "--role", "api"],
            {**env, "STOPPER_INSTANCE_ID": "api"},
            logs,
        )
        for n in range(1, self.scenario.workers + 1):
            name = f"worker-{n}"
            self.processes[name] = Process(
                name,
                [*serve, str(free_port()), "--role", "worker"],
                {**env, "STOPPER_INSTANCE_ID": name},
                logs,
            )
        for process in self.processes.values():
            process.start()
        for process in self.processes.values():
            await process.healthy()
        if self.scenario.ledger_within_s:
            await self._ledger()  # before the load: a simulator without a ledger fails at once

    async def _all_up(self) -> None:
        for name, process in self.processes.items():
            if name in self.dead:
                continue
            if process.popen is None or process.popen.poll() is not None:
                process.start()
            await process.healthy(timeout=120)

    # --- load and chaos --------------------------------------------------------------------

    async def _load(self) -> None:
        factory = ReportFactory(load_registry(), seed=self.scenario.seed)
        s = self.scenario
        count = int(s.load_s * s.rate_per_s)
        give_up_at = self.load_started + s.load_s + (s.ledger_within_s or s.settle_s / 2)
        async with httpx.AsyncClient(base_url=self.processes["api"].url, timeout=10) as client:
            tasks = []
            for n in range(count):
                report = factory.report(datetime.now(UTC))
                self.outcome.reports_sent += 1
                tasks.append(asyncio.create_task(self._post(client, report, give_up_at)))
                # On a schedule, not a sleep after each: 20 reports/s stay 20 on a busy machine.
                due = self.load_started + (n + 1) / s.rate_per_s
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            self.load_ended = time.monotonic()
            await asyncio.gather(*tasks)
        self.outcome.accepted = len(self.accepted)

    async def _post(
        self, client: httpx.AsyncClient, report: dict[str, Any], give_up_at: float
    ) -> None:
        """An intake system's behaviour: send again, same report, until Stopper takes it."""
        while time.monotonic() < give_up_at:
            with contextlib.suppress(httpx.HTTPError):
                answer = await client.post("/v1/reports", json=report)
                if answer.status_code in (200, 202):
                    self.accepted.add(report["report_id"])
                    return
                if answer.status_code < 500:
                    raise AssertionError(f"report refused: {answer.status_code} {answer.text}")
            await asyncio.sleep(0.5)

    async def _chaos(self) -> None:
        s = self.scenario
        start = time.monotonic()
        events: list[tuple[float, str]] = [
            (self.rng.uniform(0.05, 0.95) * s.load_s, "kill") for _ in range(s.kills)
        ]
        if s.broker_pause_s:
            events.append((0.3 * s.load_s, "pause broker"))
        if s.restart_postgres:
            events.append((0.75 * s.load_s, "restart postgres"))
        for at, what in sorted(events):
            await asyncio.sleep(max(0.0, start + at - time.monotonic()))
            if what == "kill":
                await self._kill_one()
            elif what == "pause broker":
                self.outcome.disturbances.append(f"broker paused {s.broker_pause_s:g}s")
                self.broker.pause()
                try:
                    await asyncio.sleep(s.broker_pause_s)
                finally:
                    self.broker.resume()
            else:
                self.outcome.disturbances.append("postgres restarted")
                await asyncio.to_thread(self.postgres.restart)
            self.last_fault = time.monotonic()
        self.outcome.last_fault_s = self.last_fault - self.load_started

    async def _kill_one(self) -> None:
        victims = [
            name
            for name in self.processes
            if name != "institutions"
            and name not in self.dead
            and (name.startswith("worker") or not self.scenario.kill_workers_only)
        ]
        if self.scenario.spread_kills:
            fewest = min(self.kills[name] for name in victims)
            victims = [name for name in victims if self.kills[name] == fewest]
        name = self.rng.choice(victims)
        self.kills[name] += 1
        process = self.processes[name]
        process.kill()
        self.outcome.disturbances.append(f"SIGKILL {name}")
        if not self.scenario.revive:
            self.dead.add(name)
            return
        await asyncio.sleep(self.rng.uniform(0.3, 2.0))
        process.start()

    # --- checks ----------------------------------------------------------------------------

    async def _settle(self) -> None:
        deadline = time.monotonic() + self.scenario.settle_s
        while time.monotonic() < deadline:
            cases, in_flight = await self._progress()
            if cases >= len(self.accepted) and in_flight == 0:
                return
            await asyncio.sleep(1.0)

    async def _match_ledger(self) -> None:
        """Compare every hold with the institutions' ledger, every few seconds, until all match
        and every accepted report has its case, or the time allowed is up."""
        since = max(self.last_fault, self.load_ended)
        deadline = since + self.scenario.ledger_within_s
        while True:
            began = time.monotonic()
            # Stopper between two reads of the ledger: see `compare`.
            ledger = await self._ledger()
            holds = await self._holds()
            comparison = compare(holds, ledger, await self._ledger())
            cases, _ = await self._progress()
            self.outcome.ledger = comparison
            if not comparison.mismatches and cases >= len(self.accepted):
                self.outcome.matched_after_s = time.monotonic() - since
                return
            if time.monotonic() >= deadline:
                return
            # Reading is not free on two cores: at most a third of the time, as the ledger grows.
            pause = max(LEDGER_POLL_S, 2 * (time.monotonic() - began))
            await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))

    async def _ledger(self) -> list[LedgerEntry]:
        url = f"{self.processes['institutions'].url}/ledger"
        async with httpx.AsyncClient(timeout=60) as client:
            answer = await client.get(url)
        if answer.status_code == 404:
            raise RuntimeError(f"the simulated institutions serve no ledger ({url}: 404)")
        answer.raise_for_status()
        return [LedgerEntry.from_json(raw) for raw in answer.json()["holds"]]

    async def _holds(self) -> list[StopperHold]:
        connection = await self._connect()
        try:
            rows = await connection.fetch(
                "SELECT id, institution_code, state, amount_stopped, reapplications FROM holds"
            )
        finally:
            await connection.close()
        return [
            StopperHold(
                UUID(bytes=r["id"].bytes),  # asyncpg's own UUID type, as the standard one
                r["institution_code"],
                r["state"],
                r["amount_stopped"],
                r["reapplications"],
            )
            for r in rows
        ]

    async def _connect(self) -> asyncpg.Connection:
        url = make_url(self.database_url)
        return await asyncpg.connect(
            host=url.host, port=url.port, user=url.username, database=url.database
        )

    async def _progress(self) -> tuple[int, int]:
        connection = await self._connect()
        try:
            cases = await connection.fetchval(
                "SELECT count(*) FROM cases WHERE report_id = ANY($1::text[])",
                list(self.accepted),
            )
            in_flight = await connection.fetchval(
                "SELECT count(*) FROM holds WHERE state = ANY($1::text[])", list(IN_FLIGHT)
            )
        finally:
            await connection.close()
        return int(cases), int(in_flight)

    async def _check(self) -> None:
        out = self.outcome
        connection = await self._connect()
        try:
            found = {
                r["report_id"]
                for r in await connection.fetch(
                    "SELECT report_id FROM cases WHERE report_id = ANY($1::text[])",
                    list(self.accepted),
                )
            }
            out.cases = int(await connection.fetchval("SELECT count(*) FROM cases"))
            out.lost = sorted(self.accepted - found)
            # One snapshot for both: a hold still moving must not look like a gap in its trail.
            async with connection.transaction(isolation="repeatable_read", readonly=True):
                states = await connection.fetch("SELECT id, state FROM holds")
                trail = await connection.fetch(
                    "SELECT hold_id, from_state, to_state FROM hold_transitions"
                    " ORDER BY hold_id, id"
                )
            out.holds_by_state = dict(Counter(r["state"] for r in states))
            out.stuck = sum(1 for r in states if r["state"] in IN_FLIGHT)
        finally:
            await connection.close()
        chains: dict[Any, list[tuple[str | None, str]]] = {}
        for row in trail:
            chains.setdefault(row["hold_id"], []).append((row["from_state"], row["to_state"]))
        for row in states:
            chain = chains.get(row["id"], [])
            ok = bool(chain) and chain[0][0] is None and chain[-1][1] == row["state"]
            ok = ok and all(a[1] == b[0] for a, b in itertools.pairwise(chain))
            if not ok:
                out.audit_gaps.append(str(row["id"]))
        async with httpx.AsyncClient() as client:
            stats = (await client.get(f"{self.processes['institutions'].url}/stats")).json()
        out.stops_executed = stats["totals"]["stops_executed"]
        out.double_stops = stats["totals"]["double_stops"]
        out.stop_requests = stats["totals"]["requests"]
        out.callbacks_failed = stats["totals"]["callbacks_failed"]
