"""Stopper as real processes for the benchmarks: one api, some workers and the simulated
institutions, on a private PostgreSQL and broker (`on_servers`), and a run of reports posted
over HTTP against them (`http_load`)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from bench.loadgen import Race, Sent, measure, send_http
from stopper.registry import load_registry
from stopper.simulation.reports import ReportFactory
from tests.crash.harness import Process, fresh_database
from tests.servers import Broker, PostgresServer, free_port, postgres_server, tansu_broker

T = TypeVar("T")

# States in which Stopper still owes a hold its institution's answer.
IN_FLIGHT = ("requested", "sent", "unconfirmed")


class Stack:
    """Stopper's api and workers, and the simulated institutions, as processes."""

    def __init__(
        self,
        workdir: Path,
        database_url: str,
        broker: Broker,
        workers: int,
        profile: str = "instant",
        registry_path: Path | None = None,
    ) -> None:
        """`registry_path`: the institutions' registry for Stopper and the simulator alike
        (default: the packaged world)."""
        tag = uuid.uuid4().hex[:8]
        self.reports_topic = f"bench.reports.{tag}"
        api_port, sim_port = free_port(), free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("STOPPER_")},
            "STOPPER_DATABASE_URL": database_url,
            "STOPPER_DATABASE_MIGRATE_ON_START": "false",
            "STOPPER_DATABASE_POOL_SIZE": "20",
            "STOPPER_KAFKA_BOOTSTRAP": broker.bootstrap,
            "STOPPER_KAFKA_REPORTS_TOPIC": self.reports_topic,
            "STOPPER_KAFKA_REPORTS_DLQ_TOPIC": f"bench.reports.dlq.{tag}",
            "STOPPER_KAFKA_STOP_REQUESTS_TOPIC": f"bench.stop-requests.{tag}",
            "STOPPER_KAFKA_STOP_REQUESTS_DLQ_TOPIC": f"bench.stop-requests.dlq.{tag}",
            "STOPPER_KAFKA_HOLD_EVENTS_TOPIC": f"bench.hold-events.{tag}",
            "STOPPER_KAFKA_INTAKE_GROUP": f"bench-intake-{tag}",
            "STOPPER_KAFKA_DISPATCH_GROUP": f"bench-dispatch-{tag}",
            "STOPPER_INSTITUTIONS_BASE_URL": f"http://127.0.0.1:{sim_port}",
            "STOPPER_LOG_LEVEL": "WARNING",
        }
        if registry_path is not None:
            self.env["STOPPER_REGISTRY_PATH"] = str(registry_path)
        logs = workdir / "logs"
        logs.mkdir(exist_ok=True)
        serve = ["serve", "--host", "127.0.0.1", "--port"]
        self.institutions = Process(
            "institutions",
            [
                "simulate",
                "--port",
                str(sim_port),
                "--profile",
                profile,
                "--stopper-url",
                f"http://127.0.0.1:{api_port}",
            ],
            self.env,
            logs,
        )
        self.processes = [
            self.institutions,
            Process("api", [*serve, str(api_port), "--role", "api"], self.env, logs),
        ]
        for n in range(1, workers + 1):
            self.processes.append(
                Process(
                    f"worker-{n}",
                    [*serve, str(free_port()), "--role", "worker"],
                    {**self.env, "STOPPER_INSTANCE_ID": f"worker-{n}"},
                    logs,
                )
            )
        self.api_url = f"http://127.0.0.1:{api_port}"

    def pids(self) -> dict[str, int]:
        """The running processes by name."""
        return {p.name: p.popen.pid for p in self.processes if p.popen is not None}

    async def start(self) -> None:
        migrate = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "stopper.cli", "migrate"],
            env=self.env,
            capture_output=True,
        )
        if migrate.returncode:
            raise RuntimeError(migrate.stderr.decode()[-2000:])
        for process in self.processes:
            process.start()
        for process in self.processes:
            await process.healthy()
        # Consumers join their groups (about 5 s on this broker) before the clock starts.
        report = ReportFactory(load_registry(), seed=99).report(datetime.now(UTC))
        async with httpx.AsyncClient(base_url=self.api_url, timeout=30) as client:
            case_id = (await client.post("/v1/reports", json=report)).json()["case_id"]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                case = await client.get(f"/v1/cases/{case_id}")
                if case.status_code == 200 and all(
                    h["state"] not in IN_FLIGHT for h in case.json()["holds"]
                ):
                    return
                await asyncio.sleep(0.2)
        raise RuntimeError("Stopper did not settle its warm-up report")

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


def registry_on(adapter: str, directory: Path) -> Path:
    """The packaged world with every institution on `adapter` (`http_json` or `iso20022`), as a
    file in `directory`."""
    text = resources.files("stopper.data").joinpath("institutions.toml").read_text()
    text = re.sub(r'(?m)^adapter = "[a-z0-9_]+"\n', "", text)  # each institution's own
    text = text.replace("[defaults.bank]\n", f'[defaults.bank]\nadapter = "{adapter}"\n')
    text = text.replace(
        "[defaults.payment_institution]\n",
        f'[defaults.payment_institution]\nadapter = "{adapter}"\n',
    )
    path = directory / f"institutions-{adapter}.toml"
    path.write_text(text)
    registry = load_registry(path)
    assert {i.adapter for i in registry.values()} == {adapter}, "every institution on it"
    return path


async def connect(database_url: str) -> asyncpg.Connection:
    url = make_url(database_url)
    return await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, database=url.database
    )


async def settled(database_url: str, since: datetime, expected: int, timeout: float) -> Race:
    """The races once every expected hold exists and none is in flight. Polled with two counts:
    reading every hold each second would steal the machine from what is measured."""
    deadline = time.monotonic() + timeout
    while True:
        holds, in_flight = await _counts(database_url, since)
        if (holds >= expected and in_flight == 0) or time.monotonic() > deadline:
            return await measure(database_url, since)
        await asyncio.sleep(1.0)


async def _counts(database_url: str, since: datetime) -> tuple[int, int]:
    """First-level holds of reports accepted since `since` (as `measure` counts them), and holds
    still in flight."""
    connection = await connect(database_url)
    try:
        row = await connection.fetchrow(
            """
            SELECT
              count(*) FILTER (WHERE layer = 1 AND reapplications = 0
                               AND report_accepted_at >= $1) AS holds,
              count(*) FILTER (WHERE state = ANY($2::text[])) AS in_flight
            FROM holds
            """,
            since,
            list(IN_FLIGHT),
        )
        assert row is not None
        return int(row["holds"]), int(row["in_flight"])
    finally:
        await connection.close()


async def failed_reasons(database_url: str, since: datetime, most: int = 5) -> str:
    """The commonest causes holds of reports accepted since `since` were given up for, from the
    audit (a late truth may have moved a hold on since), with their institution and count:
    what a failed run says it failed of (the database goes with it)."""
    connection = await connect(database_url)
    try:
        rows = await connection.fetch(
            """
            SELECT h.institution_code, left(t.cause, 160) AS cause, count(*) AS holds
            FROM hold_transitions t JOIN holds h ON h.id = t.hold_id
            WHERE t.to_state = 'failed' AND h.report_accepted_at >= $1
            GROUP BY 1, 2 ORDER BY holds DESC LIMIT $2
            """,
            since,
            most,
        )
    finally:
        await connection.close()
    return "; ".join(f"{r['holds']} at {r['institution_code']}: {r['cause']}" for r in rows)


@dataclass(frozen=True)
class HttpRun:
    database_url: str
    since: datetime
    sent: Sent
    race: Race


async def http_load(
    pg: PostgresServer,
    broker: Broker,
    root: Path,
    *,
    workers: int,
    rate: float,
    seconds: float,
    seed: int,
    timeout: float,
) -> HttpRun:
    """Stopper on a fresh database, reports posted over HTTP at `rate` for `seconds`; returns
    once every hold of theirs has settled (or `timeout`), the processes stopped."""
    database = await fresh_database(pg)
    stack = Stack(root, database, broker, workers)
    await stack.start()
    try:
        since = datetime.now(UTC)
        sent = await send_http(stack.api_url, rate, seconds, seed=seed)
        race = await settled(database, since, sent.holds, timeout=timeout)
    finally:
        stack.stop()
    return HttpRun(database, since, sent, race)


def on_servers(
    prefix: str,
    work: Callable[[PostgresServer, Broker, Path], Coroutine[Any, Any, T]],
    postgres: Callable[[Path], AbstractContextManager[PostgresServer]] = postgres_server,
) -> T:
    """Run `work` against a private PostgreSQL (`postgres`: the test suite's, fsync off, unless
    told) and broker, in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        (root / "pg").mkdir()
        with postgres(root / "pg") as pg, tansu_broker(root) as broker:
            return asyncio.run(work(pg, broker, root))
