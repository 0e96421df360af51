"""The embedded default keeps what it accepted: a report answered 202 is on disk, so a process
killed at once (SIGKILL, before intake could record anything) opens its case after a restart.

`stopper serve` runs as a real process on a SQLite file of this test's own, with no servers
(no STOPPER_DATABASE_URL, no STOPPER_KAFKA_BOOTSTRAP) and its institutions pointed at a port
nothing listens on (the stops are not the subject; the cases are).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from stopper.registry import load_registry
from stopper.simulation.reports import ReportFactory
from tests.servers import free_port

POSTERS = 8  # reports in flight at once, as from several intake systems
ACCEPTED_BEFORE_KILL = 60


class Serve:
    """`stopper serve` on the embedded default, as an OS process."""

    def __init__(self, db_path: Path, logs: Path) -> None:
        self.db_path = db_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._logs = logs
        self._env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("STOPPER_")},
            "STOPPER_DATABASE_EMBEDDED_PATH": str(db_path),
            "STOPPER_INSTITUTIONS_BASE_URL": f"http://127.0.0.1:{free_port()}",
            "STOPPER_LOG_LEVEL": "WARNING",
        }
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._logs.open("ab") as log:
            self._popen = subprocess.Popen(
                [sys.executable, "-m", "stopper.cli", "serve", "--port", str(self.port)],
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        if self._popen is not None and self._popen.poll() is None:
            self._popen.send_signal(signal.SIGKILL)
            self._popen.wait()

    def stop(self) -> None:
        if self._popen is not None and self._popen.poll() is None:
            self._popen.terminate()
            try:
                self._popen.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    async def ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.url) as client:
            while time.monotonic() < deadline:
                if self._popen is not None and self._popen.poll() is not None:
                    raise RuntimeError(f"stopper serve exited: see {self._logs}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/readyz", timeout=2)).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"stopper serve was not ready in {timeout}s: see {self._logs}")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    process = Serve(tmp_path / "stopper.db", tmp_path / "serve.log")
    try:
        yield process
    finally:
        process.stop()


async def post_until_accepted(
    url: str, reports: list[dict[str, Any]], wanted: int, then: Callable[[], None]
) -> list[str]:
    """Post reports from several concurrent posters until `wanted` were answered 202, and call
    `then` at once; the case ids answered 202 by then (requests in flight are not counted)."""
    accepted: list[str] = []
    enough = asyncio.Event()
    queue = iter(reports)

    async def poster(client: httpx.AsyncClient) -> None:
        for report in queue:
            answer = await client.post("/v1/reports", json=report)
            assert answer.status_code == 202, answer.text
            accepted.append(answer.json()["case_id"])
            if len(accepted) >= wanted:
                enough.set()

    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        posters = [asyncio.create_task(poster(client)) for _ in range(POSTERS)]
        waiter = asyncio.create_task(enough.wait())
        await asyncio.wait([waiter, *posters], return_when=asyncio.FIRST_COMPLETED)
        accepted_then = list(accepted)
        if enough.is_set():
            then()
        for task in [waiter, *posters]:
            task.cancel()
        for outcome in await asyncio.gather(*posters, return_exceptions=True):
            if isinstance(outcome, Exception):
                raise outcome
    return accepted_then


def cases_on_disk(db_path: Path) -> set[str]:
    """The ids of the cases recorded in the database file (of a process no longer running)."""
    with contextlib.closing(sqlite3.connect(db_path)) as connection:
        return {str(uuid.UUID(hex=row[0])) for row in connection.execute("SELECT id FROM cases")}


async def test_reports_answered_202_survive_a_sigkill(serve: Serve) -> None:
    serve.start()
    await serve.ready()
    factory = ReportFactory(load_registry(), seed=41)
    reports = [factory.report(datetime.now(UTC)) for _ in range(ACCEPTED_BEFORE_KILL * 2)]

    # Killed at once: intake has not recorded the latest reports yet.
    accepted = await post_until_accepted(serve.url, reports, ACCEPTED_BEFORE_KILL, serve.kill)
    unrecorded = set(accepted) - cases_on_disk(serve.db_path)
    # Else this run proves nothing: the kill must come before intake recorded everything.
    assert unrecorded, "intake had recorded every accepted report before the kill"

    serve.start()
    await serve.ready()
    missing = set(accepted)
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(base_url=serve.url, timeout=10) as client:
        while missing and time.monotonic() < deadline:
            for case_id in sorted(missing):
                answer = await client.get(f"/v1/cases/{case_id}")
                if answer.status_code == 200:
                    assert sum(answer.json()["holds_by_state"].values()) >= 1
                    missing.discard(case_id)
            await asyncio.sleep(0.2)
    assert not missing, f"{len(missing)} of {len(accepted)} reports answered 202 have no case"
