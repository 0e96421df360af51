"""A real Prometheus scrapes a real Stopper (embedded default) and evaluates the alert rules and
the dashboard's queries against what it scraped."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from stopper.api.app import create_app
from stopper.config import ApiSettings, DatabaseSettings, Settings
from stopper.runtime import build_runtime
from stopper.serving import free_port, serving
from tests.deploy.tools import RULES, as_promql, binary, dashboard_queries, load_dashboard
from tests.factories import report_doc

pytestmark = pytest.mark.integration

T = TypeVar("T")
TIMEOUT_S = 60.0


@contextlib.asynccontextmanager
async def prometheus(tmp_path: Path, stopper_url: str) -> AsyncIterator[str]:
    """A Prometheus scraping `stopper_url` every second with Stopper's rules; yields its URL."""
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": "stopper",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [urlsplit(stopper_url).netloc]}],
            }
        ],
    }
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    log_file = tmp_path / "prometheus.log"
    with log_file.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            binary("prometheus"),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    try:
        try:
            yield f"http://127.0.0.1:{port}"
        except BaseException as e:
            e.add_note(f"--- prometheus log ---\n{log_file.read_text()[-4000:]}")
            raise
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                process.kill()
                await process.wait()


async def eventually(what: str, probe: Callable[[], Awaitable[T | None]]) -> T:
    deadline = asyncio.get_running_loop().time() + TIMEOUT_S
    while True:
        with contextlib.suppress(httpx.TransportError):  # Prometheus still starting
            found = await probe()
            if found:
                return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: not seen within {TIMEOUT_S:.0f} s")
        await asyncio.sleep(0.25)


async def query(client: httpx.AsyncClient, promql: str) -> list[dict[str, Any]]:
    answer = await client.get("/api/v1/query", params={"query": promql})
    body = answer.json()
    assert answer.status_code == 200 and body["status"] == "success", (promql, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def test_prometheus_scrapes_stopper_and_evaluates_the_rules(tmp_path: Path) -> None:
    settings = Settings(
        database=DatabaseSettings(url=None, embedded_path=tmp_path / "stopper.db"),
        api=ApiSettings(),
    )
    async with serving(create_app(build_runtime(settings))) as stopper_url:
        async with httpx.AsyncClient(base_url=stopper_url) as stopper:
            answer = await stopper.post("/v1/reports", json=report_doc())
            assert answer.status_code == 202, answer.text

        async with (
            prometheus(tmp_path, stopper_url) as prometheus_url,
            httpx.AsyncClient(base_url=prometheus_url, timeout=10) as client,
        ):

            async def ready() -> bool:
                return (await client.get("/-/ready")).status_code == 200

            await eventually("Prometheus ready", ready)

            async def accepted() -> list[dict[str, Any]]:
                samples = await query(client, "stopper_reports_received_total")
                return [s for s in samples if s["metric"].get("outcome") == "accepted"]

            [sample] = await eventually("an accepted report in Prometheus", accepted)
            assert sample["metric"]["job"] == "stopper"
            assert float(sample["value"][1]) >= 1

            [up] = await query(client, 'up{job="stopper"}')
            assert up["value"][1] == "1"

            async def evaluated_group() -> dict[str, Any] | None:
                answer = await client.get("/api/v1/rules")
                groups = answer.json()["data"]["groups"]
                for group in groups:
                    if group["name"] == "stopper" and all(
                        r["health"] != "unknown" for r in group["rules"]
                    ):
                        return dict(group)
                return None

            group = await eventually("the stopper rule group evaluated", evaluated_group)
            rules = group["rules"]
            assert len(rules) >= 10
            for rule in rules:
                where = rule["name"]
                assert rule["type"] == "alerting", where
                assert rule["health"] == "ok", (where, rule.get("lastError"))
                assert rule["labels"].get("severity") in {"page", "ticket"}, where
                assert {"summary", "description", "runbook"} <= set(rule["annotations"]), where

            # Pending from the evaluation before the first scrape (absent), then quiet: Prometheus
            # reaches Stopper.
            async def stopper_down_quiet() -> bool:
                group = await evaluated_group()
                assert group is not None
                [down] = [r for r in group["rules"] if r["name"] == "StopperDown"]
                return bool(down["state"] == "inactive")

            await eventually("StopperDown inactive", stopper_down_quiet)

            # The dashboard's queries run against real data without errors.
            for promql in dashboard_queries(load_dashboard()):
                if not promql.startswith("label_values("):
                    await query(client, as_promql(promql))
