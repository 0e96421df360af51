from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.servers import TestServers, postgres, tansu


@pytest.fixture(scope="session")
def server_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="stopper-test-servers-") as tmp:
        # The PostgreSQL cluster runs as another user, who must be able to reach its folder.
        Path(tmp).chmod(0o755)
        yield Path(tmp)


@pytest.fixture(scope="session")
def postgres_url(server_dir: Path) -> Iterator[str]:
    configured = TestServers().database_url
    if configured:
        yield configured
        return
    with ExitStack() as stack:
        pg_dir = server_dir / "pg"
        pg_dir.mkdir()
        yield stack.enter_context(postgres(pg_dir))


@pytest.fixture(scope="session")
def kafka_bootstrap(server_dir: Path) -> Iterator[str]:
    configured = TestServers().kafka_bootstrap
    if configured:
        yield configured
        return
    with tansu(server_dir) as bootstrap:
        yield bootstrap
