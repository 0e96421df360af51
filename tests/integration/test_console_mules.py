"""The console's mule-account registry in a real headless Chromium: the known mule accounts'
page, masked, and a case's links and ring on its page, reached by following the links a person
would. A screenshot is kept in test-output/console-mules.png."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import async_playwright

from stopper.runtime import Runtime
from tests.factories import fresh_account, naming_doc
from tests.integration.helpers import eventually
from tests.integration.test_console import CHROMIUM_FLAGS, OUTPUT, chromium, panel_text, running

pytestmark = pytest.mark.integration


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[tuple[Runtime, str]]:
    async with running(tmp_path) as stopper:
        yield stopper


async def test_a_person_finds_the_known_mules_and_follows_a_case_to_its_ring(
    live: tuple[Runtime, str],
) -> None:
    _, url = live
    OUTPUT.mkdir(exist_ok=True)
    mule, bridge, lone = fresh_account("BK07"), fresh_account("PI02"), fresh_account("BK08")
    docs = [naming_doc(mule, lone), naming_doc(mule, bridge), naming_doc(bridge)]
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        case_ids = []
        for doc in docs:
            answer = await client.post("/v1/reports", json=doc)
            assert answer.status_code == 202, answer.text
            case_ids.append(answer.json()["case_id"])

        async def recorded() -> bool:
            codes = [(await client.get(f"/v1/cases/{c}")).status_code for c in case_ids]
            return codes == [200, 200, 200]

        await eventually(recorded, timeout=20)
    first, second, third = case_ids
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium(), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1200})
            await page.goto(f"{url}/console")
            await page.click("text=known mule accounts")
            assert await page.title() == "Known mule accounts · Stopper console"
            flagged = await panel_text(page, "flagged")
            row = next(r for r in flagged.splitlines() if "****" + mule[1][-4:] in r)
            assert re.search(r"BK07\s+\*{4}\d{4}\s+2\s", row), row
            assert "****" + bridge[1][-4:] in flagged
            assert "****" + lone[1][-4:] not in flagged, "named in one case only"

            # From the mule's row to the first case's page, and its links.
            await page.click(f'#flagged tr:has-text("{mule[1][-4:]}") a[title="{first}"]')
            await page.wait_for_url(f"**/console/cases/{first}")
            links = await panel_text(page, "links")
            assert second[:8] in links and third[:8] in links
            assert "Linked cases: sharing an account (1)" in links
            assert "Ring: 3 cases connected through shared accounts" in links
            assert f"BK07 ****{mule[1][-4:]}" in links

            # The ring leads on: the third case shares nothing with the first, only with the
            # second, and its page says so.
            await page.click(f'#links p.ring a[title="{third}"]')
            await page.wait_for_url(f"**/console/cases/{third}")

            async def third_links() -> str | None:
                text = await panel_text(page, "links")
                return text if "Ring: 3 cases" in text else None

            text = await eventually(third_links, timeout=10)
            assert f"PI02 ****{bridge[1][-4:]}" in text and second[:8] in text
            await page.screenshot(path=str(OUTPUT / "console-mules.png"), full_page=True)
            html = await page.content()
            await page.goto(f"{url}/console/accounts")
            html += await page.content()
        finally:
            await browser.close()
    for account in (mule, bridge, lone):
        assert account[1] not in html, "a person sees masked accounts only"
