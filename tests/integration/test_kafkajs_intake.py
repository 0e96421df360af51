"""An intake system not written in Python files a report on the reports topic: kafkajs, a
Node.js Kafka client, produces it (tests/clients/kafkajs/produce.js) to the real broker, as
deploy/asyncapi.yaml describes it; Stopper opens the case on PostgreSQL and fans its stop
requests out to the (simulated) institutions.

kafkajs is installed from its lockfile with `npm ci` once (cached per lockfile, outside the
repository); `make test-binaries` installs Node.js and npm where they are missing."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from stopper.adapters.db.models import HoldRow
from stopper.domain.cases import case_id_for
from tests.deploy.asyncapi import payload_validator
from tests.deploy.tools import REPO
from tests.integration.helpers import eventually, read_topic
from tests.integration.live_stack import live_stack

pytestmark = pytest.mark.integration

CLIENT = REPO / "tests" / "clients" / "kafkajs"
PINNED = ("package.json", "package-lock.json", ".npmrc")


@pytest.fixture(scope="session")
def kafkajs_client() -> Path:
    """A folder with produce.js beside kafkajs as the lockfile pins it."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "Node.js and npm are needed: `make test-binaries` installs them"
    digest = hashlib.sha256(b"".join((CLIENT / name).read_bytes() for name in PINNED))
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = cache / "stopper-tests" / f"kafkajs-{digest.hexdigest()[:16]}"
    installed = folder / ".installed"
    if not installed.exists():
        folder.mkdir(parents=True, exist_ok=True)
        for name in PINNED:
            shutil.copyfile(CLIENT / name, folder / name)
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        installed.touch()
    shutil.copyfile(CLIENT / "produce.js", folder / "produce.js")
    return folder


async def produce(folder: Path, *args: str) -> dict[str, Any]:
    """Run the Node.js producer; what it printed."""
    process = await asyncio.create_subprocess_exec(
        "node",
        "produce.js",
        *args,
        cwd=folder,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "KAFKAJS_NO_PARTITIONER_WARNING": "1"},
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    printed: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return printed


async def test_a_report_produced_by_kafkajs_opens_its_case_and_is_fanned_out(
    kafkajs_client: Path, tmp_path: Path, migrated_postgres: str, kafka_bootstrap: str
) -> None:
    report_id = f"JS-{uuid.uuid4().hex[:12]}"
    accounts = [("BK07", "6222070000004242"), ("BK08", "6222080000004343"), ("PI02", "628802")]
    async with live_stack(
        tmp_path, migrated_postgres, kafka_bootstrap, by_callback={"PI02": True}
    ) as stack:
        sent = await produce(
            kafkajs_client,
            *("--brokers", kafka_bootstrap, "--topic", stack.settings.kafka.reports_topic),
            *("--report-id", report_id, "--agency", "PSB-JS"),
            *("--transfer", f"BK07:{accounts[0][1]}:4554000"),
            *("--transfer", f"BK08:{accounts[1][1]}:1200000"),
            *("--transfer", f"PI02:{accounts[2][1]}:880050"),
        )
        topic = stack.settings.kafka.reports_topic
        assert (sent["topic"], sent["report_id"]) == (topic, report_id)
        # The record itself, as deploy/asyncapi.yaml describes the reports channel.
        [(key, value, _)] = await read_topic(kafka_bootstrap, topic, 1)
        assert key == report_id.encode()
        errors = payload_validator("fraudReport").iter_errors(json.loads(value))
        assert [e.message for e in errors] == []
        case_id = case_id_for(report_id)

        async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:

            async def fanned_out() -> dict[str, Any] | None:
                answer = await client.get(f"/v1/cases/{case_id}")
                if answer.status_code != 200:
                    return None
                case: dict[str, Any] = answer.json()
                return case if {h["state"] for h in case["holds"]} == {"stopped"} else None

            case = await eventually(fanned_out, timeout=60)
        async with stack.runtime.engine.connect() as connection:
            holds = (
                await connection.execute(
                    select(HoldRow.id, HoldRow.institution_code).where(HoldRow.case_id == case_id)
                )
            ).all()
    assert (case["report_id"], case["agency_code"], case["transfers"]) == (report_id, "PSB-JS", 3)
    assert sorted((h["institution_code"], h["amount_asked"]) for h in case["holds"]) == [
        ("BK07", "45540.00"),
        ("BK08", "12000.00"),
        ("PI02", "8800.50"),
    ]
    # Each institution received the stop request of its hold, with the hold's key, and
    # executed it once; the one answering later did so by a signed callback.
    for hold_id, code in holds:
        record = stack.simulation.institutions[code].stop_record(f"stopper-{hold_id}-0")
        assert record is not None and record.outcome["status"] == "stopped", code
    assert sum(sim.counts.double_stops for sim in stack.simulation.institutions.values()) == 0
    assert stack.simulation.institutions["PI02"].counts.callbacks_sent == 1
    assert {code for code, _ in accounts} == {code for _, code in holds}
