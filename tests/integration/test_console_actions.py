"""Acting from the console in a real headless Chromium, with keys required as in production:
the operator's key entered once (kept in sessionStorage, sent as the bearer header, never in a
URL), then each action confirmed, answered and seen in the live view; the case page with its
trail graph, payouts and timeline. Screenshots in test-output/console-*.png."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import httpx
import pytest
from playwright.async_api import Page, async_playwright

from stopper.app.auth import KeyRole, new_key
from stopper.app.hold_changes import Concluded
from stopper.app.ports import HoldRecord, HoldUpdate
from stopper.domain.holds import HoldEvent
from stopper.registry import load_registry
from stopper.runtime import Runtime
from stopper.simulation.reports import ReportFactory
from tests.integration.helpers import eventually
from tests.integration.test_console import CHROMIUM_FLAGS, OUTPUT, chromium, running

pytestmark = pytest.mark.integration


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[tuple[Runtime, str]]:
    async with running(tmp_path, require_keys=True) as stopper:
        yield stopper


async def token(
    runtime: Runtime, role: KeyRole, agency: str | None = None, holder: str | None = None
) -> str:
    stored, secret = new_key(agency, role, "console test", datetime.now(UTC), holder)
    await runtime.store.add_api_key(stored)
    return secret


async def act(page: Page, button: str, value: str, *, by_keyboard: bool = False) -> str:
    """Press the action `button`, check the confirmation says what it will do, enter
    `value`, confirm, and return the API's answer as the page shows it."""
    await page.locator("#answer").evaluate("el => el.textContent = ''")
    target = page.locator(button)
    what = await target.get_attribute("data-what")
    if by_keyboard:
        await target.focus()
        await page.keyboard.press("Enter")
    else:
        await target.click()
    dialog = page.locator("dialog#confirm")
    await dialog.wait_for(state="visible")
    assert await page.locator("#confirm-what").inner_text() == what
    if by_keyboard and not value:
        await page.keyboard.press("Enter")  # nothing to enter: Confirm has the focus
    elif by_keyboard:
        await page.keyboard.type(value)  # the field has the focus
        await page.keyboard.press("Tab")  # Cancel
        await page.keyboard.press("Tab")  # Confirm
        await page.keyboard.press("Enter")
    else:
        if value:
            await page.locator("#confirm-field").fill(value)
        await page.locator("#confirm-go").click()
    await page.wait_for_function(
        "() => /HTTP \\d{3}/.test(document.getElementById('answer').textContent)"
    )
    return await page.locator("#answer").inner_text()


async def stopped_holds(runtime: Runtime, at_least: int) -> list[tuple[UUID, UUID]] | None:
    views = await runtime.store.list_holds(states=["stopped"], limit=50)
    # The freeze's target must hold something, or its case has nothing to return.
    found = [(v.hold.hold_id, v.case_id) for v in views if v.hold.amount_stopped > 0]
    return found if len(found) >= at_least else None


async def fail(runtime: Runtime, hold_id: UUID) -> None:
    now = datetime.now(UTC)

    def give_up(record: HoldRecord) -> HoldUpdate:
        moved = [
            record.hold.apply(event, cause="console test", actor="test", at=now)
            for event in (HoldEvent.REAPPLIED, HoldEvent.GAVE_UP)
        ]
        return HoldUpdate(at=now, transitions=moved, change=Concluded("bank line down"))

    assert await runtime.store.update_hold(hold_id, give_up)


async def state_of(runtime: Runtime, hold_id: UUID) -> str:
    record = await runtime.store.get_hold(hold_id)
    assert record is not None
    return record.hold.state.value


async def test_an_operator_acts_from_the_console(guarded: tuple[Runtime, str]) -> None:
    runtime, url = guarded
    OUTPUT.mkdir(exist_ok=True)
    # Money going out needs a key naming its holder (four eyes: a second person approves).
    operator_key = await token(runtime, KeyRole.OPERATOR, holder="duty-officer")
    second_key = await token(runtime, KeyRole.OPERATOR, holder="second-officer")
    factory = ReportFactory(load_registry(), seed=11)
    reports = [factory.report(datetime.now(UTC)) for _ in range(6)]
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for report in reports:
            intake = await token(runtime, KeyRole.INTAKE, report["agency"]["code"])
            answer = await client.post(
                "/v1/reports", json=report, headers={"authorization": f"Bearer {intake}"}
            )
            assert answer.status_code == 202
    (freeze_id, case_id), (reapply_id, _), (handle_id, _) = (
        await eventually(lambda: stopped_holds(runtime, 3), timeout=40)
    )[:3]
    await fail(runtime, handle_id)

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium(), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            context = await browser.new_context(
                viewport={"width": 1440, "height": 900},
                http_credentials={"username": "operator", "password": operator_key},
            )
            page = await context.new_page()
            urls: list[str] = []
            page.on("request", lambda r: urls.append(r.url))
            await page.goto(f"{url}/console")
            assert await page.title() == "Stopper console"

            # Without a key an action asks for one first and sends nothing.
            await page.locator(f'[data-act="reapply"][data-hold="{reapply_id}"]').click()
            assert "operator key first" in await page.locator("#answer").inner_text()
            await page.locator("#key-who").fill("duty-officer")
            await page.locator("#key-value").fill(operator_key)
            await page.locator("#key-form button[type=submit]").click()
            assert "acting as duty-officer" in await page.locator("#key-state").inner_text()
            assert await page.evaluate("sessionStorage.getItem('stopper.operatorKey')") == (
                operator_key
            )

            # The summary band: the last hour and the latency chart, from the store.
            assert int(await page.locator("#figure-reports b").inner_text()) >= 6
            assert re.search(r"\d+(\.\d)? (s|min)", await page.inner_text("#figure-p95"))
            assert await page.locator("#latency-chart circle.dot").count() >= 3

            # Re-apply a stop: confirmed, answered, and the hold moves at once.
            said = await act(
                page, f'[data-act="reapply"][data-hold="{reapply_id}"]', "bank asked us to"
            )
            assert "HTTP 202" in said and '"state": "requested"' in said
            assert await state_of(runtime, reapply_id) != "stopped"

            # Mark the failed hold handled, by keyboard alone: it leaves the list.
            handled = f'#failed [data-act="handled"][data-hold="{handle_id}"]'
            await page.locator(handled).wait_for()
            said = await act(page, handled, "phoned BK: stop in place", by_keyboard=True)
            assert "HTTP 200" in said and '"handled": true' in said
            await page.locator(handled).wait_for(state="detached", timeout=5000)
            # Unconfirmed holds come and go under the simulation: the figure is checked by
            # the API test; here it is there and counts.
            assert int(await page.locator("#figure-needing b").inner_text()) >= 0

            # Order a freeze on the case page.
            await page.locator(f'#cases a[href="/console/cases/{case_id}"]').click()
            await page.wait_for_url(f"**/console/cases/{case_id}")
            said = await act(page, f'[data-act="freeze"][data-hold="{freeze_id}"]', "COURT-77/2026")
            assert "HTTP 202" in said and "COURT-77/2026" in said

            async def frozen() -> bool:
                return await state_of(runtime, freeze_id) == "frozen"

            await eventually(frozen, timeout=30)
            # The live view shows it and offers the return that now applies.
            returning = page.locator(f'[data-act="return"][data-case="{case_id}"]')
            await returning.wait_for(timeout=10000)
            graph = page.locator("#trail-graph")
            assert (
                await graph.locator("g.node").count()
                == await page.locator("#holds tbody tr").count()
            )
            assert await graph.locator(f'g.node[data-hold="{freeze_id}"]').count() == 1
            node = await graph.locator(f'g.node[data-hold="{freeze_id}"]').text_content() or ""
            assert "frozen" in node and "****" in node
            said = await act(page, f'[data-act="return"][data-case="{case_id}"]', "COURT-78/2026")
            # Four eyes: the return waits for a second operator's approval.
            assert "HTTP 202" in said and '"approval": "pending"' in said, said
            # The order waits on the case page; the one who asked cannot approve it.
            approve = "#approvals [data-act=approve]"
            await page.locator(approve).wait_for(timeout=5000)
            assert "duty-officer" in await page.locator("#approvals").inner_text()
            said = await act(page, approve, "")
            assert "HTTP 403" in said, said
            # A second operator, under a key of their own, approves: the return is sent.
            await page.locator("#key-forget").click()
            await page.locator("#key-who").fill("second-officer")
            await page.locator("#key-value").fill(second_key)
            await page.locator("#key-form button[type=submit]").click()
            said = await act(page, approve, "", by_keyboard=True)
            assert "HTTP 202" in said and '"approval": "approved"' in said, said
            await page.locator(approve).wait_for(state="detached", timeout=5000)

            async def returning_or_returned() -> bool:
                return await state_of(runtime, freeze_id) in ("returning", "returned")

            await eventually(returning_or_returned, timeout=30)
            timeline = await page.locator("#timeline").inner_text()
            assert "stop_confirmed" in timeline and "freeze_confirmed" in timeline
            assert "operator:duty-officer" in timeline or "request" in timeline
            await page.screenshot(path=str(OUTPUT / "console-case.png"), full_page=True)
            case_html = await page.content()

            await page.goto(f"{url}/console")
            await page.screenshot(path=str(OUTPUT / "console-actions.png"), full_page=True)
            main_html = await page.content()
            # Still handled after the other holds moved on meanwhile.
            assert str(handle_id)[:8] not in await page.locator("#failed").inner_text()
        finally:
            await browser.close()
    # The key went as a header, never in a URL; pages show masked accounts only.
    assert not [u for u in urls if operator_key in u]
    assert all("/console" in u or "/v1/" in u for u in urls if u.startswith(url))
    numbers = re.findall(r'"account_number": "([A-Za-z0-9]+)"', json.dumps(reports))
    assert numbers and not any(n in html for n in numbers for html in (case_html, main_html))


async def test_an_operator_releases_a_hold_and_withdraws_a_case_from_the_console(
    guarded: tuple[Runtime, str],
) -> None:
    runtime, url = guarded
    OUTPUT.mkdir(exist_ok=True)
    operator_key = await token(runtime, KeyRole.OPERATOR, holder="duty-officer")
    factory = ReportFactory(load_registry(), seed=23)
    reports = [factory.report(datetime.now(UTC)) for _ in range(6)]
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for report in reports:
            intake = await token(runtime, KeyRole.INTAKE, report["agency"]["code"])
            answer = await client.post(
                "/v1/reports", json=report, headers={"authorization": f"Bearer {intake}"}
            )
            assert answer.status_code == 202

    async def two_cases() -> list[tuple[UUID, UUID]] | None:
        found = await stopped_holds(runtime, 2)
        if found is None:
            return None
        by_case = dict((case, hold) for hold, case in found)
        return [(hold, case) for case, hold in by_case.items()] if len(by_case) >= 2 else None

    (release_id, release_case), (_, withdraw_case) = (await eventually(two_cases, timeout=40))[:2]

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium(), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            context = await browser.new_context(
                viewport={"width": 1440, "height": 900},
                http_credentials={"username": "operator", "password": operator_key},
            )
            page = await context.new_page()
            await page.goto(f"{url}/console/cases/{release_case}")
            await page.locator("#key-who").fill("duty-officer")
            await page.locator("#key-value").fill(operator_key)
            await page.locator("#key-form button[type=submit]").click()

            # Release one hold: the confirmation says what it does, the answer is the API's.
            button = f'[data-act="release"][data-hold="{release_id}"]'
            what = await page.locator(button).get_attribute("data-what") or ""
            assert what.startswith(f"Release hold {str(release_id)[:8]}")
            assert "lifts the stop" in what
            said = await act(page, button, "bank confirmed the account is cleared")
            assert "HTTP 202" in said and '"outcome": "ordered"' in said, said

            async def released() -> bool:
                return await state_of(runtime, release_id) == "released"

            await eventually(released, timeout=30)
            # The live view shows it released, and no release is offered any more.
            node = page.locator(f'#trail-graph g.node[data-hold="{release_id}"]')
            await page.wait_for_function(
                "id => [...document.querySelectorAll('#trail-graph g.node')]"
                ".some(g => g.dataset.hold === id && g.textContent.includes('released'))",
                arg=str(release_id),
                timeout=10000,
            )
            assert "released" in (await node.text_content() or "")
            await page.locator(button).wait_for(state="detached", timeout=5000)
            # The case's timeline from the audit: who ordered it, why, the bank's confirmation.
            timeline = await page.locator("#timeline").inner_text()
            assert "release_ordered" in timeline and "release_confirmed" in timeline
            assert "operator:duty-officer" in timeline and "account cleared" in timeline

            # Withdraw another case's report from its page, by keyboard.
            await page.goto(f"{url}/console/cases/{withdraw_case}")
            withdraw = f'[data-act="withdraw"][data-case="{withdraw_case}"]'
            what = await page.locator(withdraw).get_attribute("data-what") or ""
            assert what.startswith(f"Withdraw the report of case {str(withdraw_case)[:8]}")
            said = await act(page, withdraw, "complaint withdrawn by the victim", by_keyboard=True)
            assert "HTTP 202" in said and '"ground": "report_withdrawn"' in said, said

            async def case_released() -> bool:
                view = await runtime.store.get_case(withdraw_case)
                assert view is not None
                return all(h.state in ("released", "not_found", "rejected") for h in view.holds)

            await eventually(case_released, timeout=30)
            await page.locator(withdraw).wait_for(state="detached", timeout=10000)
            # The live view follows: every hold released or over, none releasing any more.
            await page.wait_for_function(
                "() => !document.getElementById('holds').textContent.includes('releasing')",
                timeout=10000,
            )
            assert "released" in await page.locator("#holds").inner_text()
            await page.screenshot(path=str(OUTPUT / "console-release.png"), full_page=True)
            case_html = await page.content()
        finally:
            await browser.close()
    numbers = re.findall(r'"account_number": "([A-Za-z0-9]+)"', json.dumps(reports))
    assert numbers and not any(n in case_html for n in numbers)
