"""A client generated from Stopper's OpenAPI document by a real generator (openapi-python-client,
its CLI, once per session) files a report against a running Stopper (the API over loopback on
PostgreSQL and the broker, the simulated institutions behind it) and reads its case back, its
amounts decimal strings both ways."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from stopper.api.app import create_app
from stopper.config import DatabaseSettings, Settings
from stopper.runtime import build_runtime
from tests.integration.helpers import eventually
from tests.integration.live_stack import live_stack

pytestmark = pytest.mark.integration

PACKAGE = "stopper_api_client"
# The XML callback is for institutions, not this client's users: the generator takes its body
# as bytes. Its post-hooks (ruff) format the code, as for any client.
GENERATOR_CONFIG = """\
content_type_overrides:
  application/xml: application/octet-stream
"""


def stopper_document(tmp: Path) -> dict[str, Any]:
    """The document Stopper serves (the same for every deployment of this version)."""
    runtime = build_runtime(Settings(database=DatabaseSettings(embedded_path=tmp / "s.db")))
    document: dict[str, Any] = create_app(runtime, start_runtime=False).openapi()
    return document


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Any], str]]:
    """The client package, generated and importable; with the document it came from."""
    workdir = tmp_path_factory.mktemp("generated-client")
    document = stopper_document(workdir)
    (workdir / "openapi.json").write_text(json.dumps(document))
    (workdir / "config.yaml").write_text(GENERATOR_CONFIG)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(workdir / "openapi.json"),
            "--config",
            str(workdir / "config.yaml"),
            "--output-path",
            str(workdir / PACKAGE),
            "--meta",
            "none",
            "--fail-on-warning",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        },
    )
    assert done.returncode == 0, done.stdout + done.stderr
    sys.path.insert(0, str(workdir))
    try:
        yield document, PACKAGE
    finally:
        sys.path.remove(str(workdir))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def part(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


def a_report(models: ModuleType, agency: str) -> Any:
    """A report built with the generated models, as a client program would."""
    now = datetime.now(UTC)

    def transfer(code: str, account: str, amount: str, minutes: int) -> Any:
        return models.TransferV1(
            victim_id="V1",
            victim_account=models.AccountV1(institution_code="BK02", account_number="62170001"),
            receiving_account=models.ReceivingAccountV1(
                institution_code=code, account_number=account
            ),
            amount=amount,
            currency="CNY",
            transferred_at=now - timedelta(minutes=minutes),
            channel=models.TransferV1Channel.MOBILE_BANKING,
        )

    return models.FraudReportV1(
        report_id=f"{agency}-{uuid.uuid4().hex[:12]}",
        agency=models.AgencyV1(code=agency, name="Generated-client test"),
        reported_at=now,
        victims=[models.VictimV1(victim_id="V1")],
        transfers=[
            transfer("BK07", "6222070000000001", "45540.00", 40),  # answered at once
            transfer("PI01", "6288010000000001", "8800.5", 30),  # answered by callback
            transfer("PI01", "6288010000000001", "0.50", 20),  # the same account: one hold
        ],
    )


async def test_a_generated_client_files_a_report_and_reads_its_case(
    generated: tuple[dict[str, Any], str],
    tmp_path: Path,
    migrated_postgres: str,
    kafka_bootstrap: str,
) -> None:
    document, package = generated
    client_module = importlib.import_module(package)
    models = part("models")
    post_report = part("api.default.post_report_v1_reports_post")
    get_case = part("api.default.get_case_v1_cases_case_id_get")
    agency = f"PSB-GEN-{uuid.uuid4().hex[:6]}"
    async with live_stack(
        tmp_path, migrated_postgres, kafka_bootstrap, by_callback={"PI01": True}
    ) as stack:
        async with httpx.AsyncClient(base_url=stack.url) as plain:
            assert (await plain.get("/openapi.json")).json() == document  # what it was made from
        async with client_module.Client(base_url=stack.url, timeout=httpx.Timeout(30)) as client:
            report = a_report(models, agency)
            filed = await post_report.asyncio_detailed(client=client, body=report)
            assert filed.status_code == 202, filed.content
            accepted = filed.parsed
            assert isinstance(accepted, models.ReportAcceptedV1)
            assert (accepted.report_id, accepted.duplicate) == (report.report_id, False)

            async def settled() -> Any:
                answer = await get_case.asyncio_detailed(
                    client=client, case_id=uuid.UUID(accepted.case_id)
                )
                if answer.status_code != 200:
                    return None  # still queued
                case = answer.parsed
                return case if {h.state for h in case.holds} == {"stopped"} else None

            case = await eventually(settled, timeout=60)
            again = await post_report.asyncio_detailed(client=client, body=report)
    assert isinstance(case, models.CaseV1)
    assert (str(case.case_id), case.report_id, case.agency_code) == (
        accepted.case_id,
        report.report_id,
        agency,
    )
    assert (case.victims, case.transfers) == (1, 3)
    # The amounts went to the institutions as decimal strings and came back as decimal strings
    # (at once and by callback): every cent of them, summed per account.
    held = {(h.institution_code, h.account): (h.amount_asked, h.amount_stopped) for h in case.holds}
    assert held == {
        ("BK07", "****0001"): ("45540.00", "45540.00"),
        ("PI01", "****0001"): ("8801.00", "8801.00"),
    }
    assert stack.simulation.institutions["PI01"].counts.callbacks_sent == 1
    assert again.status_code == 200 and again.parsed.duplicate is True
