"""The operator console in a real headless Chromium while reports come in: what a person sees,
updating without a reload. A screenshot of the run is kept in test-output/console.png."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, async_playwright

from stopper.api.app import create_app
from stopper.app.hold_changes import Concluded
from stopper.app.ports import Divergence, HoldRecord, HoldUpdate
from stopper.config import ApiSettings, DatabaseSettings, InstitutionsSettings, Settings
from stopper.domain.holds import HoldEvent
from stopper.registry import load_registry
from stopper.runtime import Runtime, build_runtime
from stopper.serving import free_port, serving
from stopper.simulation.institutions import Simulation
from stopper.simulation.profiles import profile
from stopper.simulation.reports import ReportFactory
from stopper.simulation.server import create_simulation_app
from tests.integration.helpers import eventually

pytestmark = pytest.mark.integration

OUTPUT = Path(__file__).resolve().parents[2] / "test-output"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Chromium is missing: `make test` installs Debian's chromium package")
    return path


@asynccontextmanager
async def running(
    tmp_path: Path, *, require_keys: bool = False
) -> AsyncIterator[tuple[Runtime, str]]:
    """Stopper on the embedded default with the simulated institutions answering, served on a
    port of its own (a browser calls it)."""
    registry = load_registry()
    port = free_port()
    settings = Settings(
        database=DatabaseSettings(embedded_path=tmp_path / "stopper.db"),
        api=ApiSettings(port=port, require_keys=require_keys),
    )
    simulation = Simulation(
        registry,
        profile("realistic", registry),
        secret_for=lambda ref: settings.institutions.secret_for(ref, settings.environment),
        stopper_url=f"http://127.0.0.1:{port}",
    )
    async with serving(create_simulation_app(simulation)) as sim_url:
        settings = settings.model_copy(
            update={"institutions": InstitutionsSettings(base_url=sim_url)}
        )
        runtime = build_runtime(settings)
        async with serving(create_app(runtime), port=port) as url:
            yield runtime, url
        simulation.close_requests()


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[tuple[Runtime, str]]:
    async with running(tmp_path) as stopper:
        yield stopper


async def panel_text(page: Page, panel: str) -> str:
    return await page.locator(f"#{panel}").inner_text()


async def test_the_console_shows_a_live_scenario_to_a_person(live: tuple[Runtime, str]) -> None:
    runtime, url = live
    OUTPUT.mkdir(exist_ok=True)
    factory = ReportFactory(load_registry(), seed=5)
    reports = [factory.report(datetime.now(UTC)) for _ in range(6)]
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium(), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1800})
            await page.goto(f"{url}/console")
            assert await page.title() == "Stopper console"
            assert "No active cases." in await panel_text(page, "cases")

            # Reports come in while the page is open; it updates without a reload.
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                case_ids = []
                for report in reports:
                    answer = await client.post("/v1/reports", json=report)
                    assert answer.status_code == 202
                    case_ids.append(answer.json()["case_id"])

            async def cases_listed() -> str | None:
                text = await panel_text(page, "cases")
                return text if all(c[:8] in text for c in case_ids) else None

            cases = await eventually(cases_listed, timeout=20)
            assert re.search(r"in 4[78]h \d\dm \d\ds", cases), "each case's next lapse counts down"

            async def stops_counting_down() -> str | None:
                text = await panel_text(page, "lapsing")
                return text if re.search(r"L[1-5]\s.*in 4[78]h \d\dm \d\ds", text) else None

            lapsing = await eventually(stops_counting_down, timeout=30)
            seen = set()
            for _ in range(8):
                seen.add(await page.locator("#lapsing .countdown").first.inner_text())
                await page.wait_for_timeout(500)
            assert len(seen) >= 2, "the countdown ticks in the browser"
            assert "stopped" in await panel_text(page, "summary")

            # A hold Stopper gives up on shows up for a person, with the reason.
            await give_up_on(runtime, case_ids)
            failed = await eventually(
                lambda: text_with(page, "failed", "institution unreachable for 40 minutes"),
                timeout=15,
            )
            assert "failed" in failed

            # Accepted requests awaiting their answer have their own list, not "failed"; a
            # divergence reconciliation found shows up with what each side said.
            assert "unconfirmed" in (await panel_text(page, "unconfirmed")).lower()
            await note_divergence(runtime)
            divergence = await eventually(
                lambda: text_with(page, "divergences", "institution said"), timeout=15
            )
            assert "unconfirmed" in divergence and "stopped" in divergence

            # The workers' view of the institutions arrives within a few seconds.
            health = await eventually(lambda: institutions_with_attempts(page), timeout=20)
            assert re.search(r"(closed|half_open|open)", health)

            await page.screenshot(path=str(OUTPUT / "console.png"), full_page=True)
            html = await page.content()
        finally:
            await browser.close()
    # A person sees masked accounts only.
    numbers = re.findall(r'"account_number": "([A-Za-z0-9]+)"', json.dumps(reports))
    assert numbers and not any(n in html for n in numbers)
    assert "****" in lapsing


async def text_with(page: Page, panel: str, needle: str) -> str | None:
    text = await panel_text(page, panel)
    return text if needle in text else None


async def institutions_with_attempts(page: Page) -> str | None:
    rows = await page.locator("#institutions tbody tr").all_inner_texts()
    busy = [r for r in rows if int(r.split("\t")[4]) > 0]
    return "\n".join(busy) if busy else None


async def note_divergence(runtime: Runtime) -> None:
    holds = await runtime.store.list_holds(states=["stopped"], limit=1)
    await runtime.store.record_divergence(
        Divergence(holds[0].hold.hold_id, "BK01", "unconfirmed", "stopped", datetime.now(UTC))
    )


async def give_up_on(runtime: Runtime, case_ids: list[str]) -> Any:
    """Re-apply one stopped hold and give up on it at once: a failed hold for a person."""
    holds = await runtime.store.list_holds(states=["stopped"], limit=1)
    assert holds, "some stop was confirmed by now"
    now = datetime.now(UTC)

    def fail(record: HoldRecord) -> HoldUpdate:
        moved = [
            record.hold.apply(event, cause="console test", actor="test", at=now)
            for event in (HoldEvent.REAPPLIED, HoldEvent.GAVE_UP)
        ]
        return HoldUpdate(
            at=now,
            transitions=moved,
            change=Concluded("institution unreachable for 40 minutes"),
        )

    return await runtime.store.update_hold(holds[0].hold.hold_id, fail)
