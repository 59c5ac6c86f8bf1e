"""The dashboard in headless Chromium (Playwright driving /usr/bin/chromium) over the real
pipeline: hooks posted to the collector -> Kafka -> worker -> widgets topic -> gateway -> browser.

Phone (375x812) and desktop (1440x900): a live update after a posted hook, the severity filter,
replay controls, low-bandwidth mode, the disconnected state with cached data and the reconnect.
Screenshots go to tests/e2e/artifacts/ (git-ignored), with the measured hook-to-screen delays in
latency.json (recorded, not asserted: tests never assert on elapsed time).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator

import pytest
from e2e_support import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    DESKTOP,
    PHONE,
    Pipeline,
    admin_token,
    hook,
    running_pipeline,
)
from e2e_support import no_horizontal_overflow as _no_horizontal_overflow
from e2e_support import small_targets as _small_targets

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> Iterator[Pipeline]:
    with running_pipeline(tmp_path_factory.mktemp("e2e"), kafka_bootstrap,
                          ["worker", "archive", "collector", "gateway"]) as p:
        yield p


async def test_dashboard_phone_and_desktop(pipeline: Pipeline) -> None:
    from playwright.async_api import TimeoutError as PlaywrightTimeoutError
    from playwright.async_api import async_playwright, expect

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    sid = str(uuid.uuid4())
    pipeline.post_hook(hook("session_start", sid))
    pipeline.post_hook(hook("post_write_create", sid))
    pipeline.post_hook(hook("post_bash_failure", sid))
    latencies: dict[str, float] = {}
    token = admin_token()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for label, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
                context = await browser.new_context(viewport=viewport, has_touch=label == "phone")
                page = await context.new_page()
                await page.goto(f"{pipeline.gateway_url}/#token={token}")
                card = page.locator(f'[data-session="{sid}"]')
                await expect(card).to_be_visible(timeout=30_000)
                assert await _no_horizontal_overflow(page), label
                await page.screenshot(path=str(ARTIFACTS / f"overview-{label}.png"), full_page=True)
                await card.click()
                await expect(page.get_by_test_id("conn-status")).to_have_text("live", timeout=15_000)
                await expect(page.get_by_test_id("event-log").locator("li").first).to_be_visible(
                    timeout=30_000)

                # Live: a hook posted now shows on screen (file count goes up by one).
                files = page.locator("#summary-stats dd").nth(1)
                before = await files.inner_text()
                started = time.monotonic()
                path = f"/home/dev/app/{label}_{uuid.uuid4().hex[:6]}.py"
                pipeline.post_hook(hook("post_write_create", sid, tool_input={
                    "file_path": path, "content": "x = 1\n"}))
                await expect(files).not_to_have_text(before, timeout=15_000)
                latencies[label] = round(time.monotonic() - started, 3)

                # Severity filter: hide errors, see them come back.
                log = page.get_by_test_id("event-log").locator("li")
                await expect(log.first).to_have_attribute("data-severity", "error")
                await page.locator('#severity-filter input[value="error"]').uncheck()
                await expect(log).to_have_count(0, timeout=10_000)
                await page.locator('#severity-filter input[value="error"]').check()
                await expect(log.first).to_be_visible(timeout=10_000)
                assert not await _small_targets(page), await _small_targets(page)
                assert await _no_horizontal_overflow(page), label
                await page.screenshot(path=str(ARTIFACTS / f"session-{label}.png"), full_page=True)

                # Replay: play at 0.5x (slow enough to pause), pause, speed change, stop.
                await page.get_by_test_id("replay-speed").select_option("0.5")
                state = page.get_by_test_id("replay-state")
                for _ in range(20):  # the archive writes its first segment within a second
                    await page.get_by_test_id("replay-play").click()
                    await expect(state).not_to_have_text("not replaying", timeout=10_000)
                    await expect(state).not_to_contain_text("loading", timeout=10_000)
                    if "failed" not in await state.inner_text():
                        break
                    await page.wait_for_timeout(500)
                await expect(page.get_by_test_id("replay-event").first).to_be_visible(timeout=15_000)
                await expect(state).to_contain_text("replay")
                if "running" in await state.inner_text():
                    try:
                        await page.get_by_test_id("replay-pause").click(timeout=5_000)
                    except PlaywrightTimeoutError:
                        # The replay ended between reading its state and the click (the pause
                        # button is disabled then): it must say so.
                        await expect(state).to_contain_text("finished", timeout=5_000)
                    else:
                        await expect(state).to_contain_text(re.compile("paused|finished"),
                                                            timeout=5_000)
                await page.screenshot(path=str(ARTIFACTS / f"replay-{label}.png"), full_page=True)
                if await page.locator("#replay-stop").is_enabled():
                    await page.locator("#replay-stop").click()

                # Low-bandwidth mode: charts hidden, summaries still live.
                await page.get_by_test_id("low-bandwidth").check()
                await expect(page.locator("#agents-chart")).to_be_hidden()
                await expect(page.get_by_test_id("cost-total")).to_be_visible()
                await page.screenshot(path=str(ARTIFACTS / f"lowbw-{label}.png"), full_page=True)
                await page.get_by_test_id("low-bandwidth").uncheck()
                await context.close()

            # Offline: the gateway goes away, the page keeps the last state and says so; it
            # reconnects by itself when the gateway is back.
            context = await browser.new_context(viewport=PHONE)
            page = await context.new_page()
            await page.goto(f"{pipeline.gateway_url}/#token={token}")
            await page.locator(f'[data-session="{sid}"]').click()
            await expect(page.get_by_test_id("conn-status")).to_have_text("live", timeout=15_000)
            await expect(page.get_by_test_id("event-log").locator("li").first).to_be_visible(timeout=15_000)
            pipeline.gateway.stop()
            await expect(page.get_by_test_id("conn-status")).to_have_text(
                "disconnected, reconnecting…", timeout=15_000)
            await expect(page.get_by_test_id("event-log").locator("li").first).to_be_visible()
            await page.screenshot(path=str(ARTIFACTS / "disconnected-phone.png"), full_page=True)
            pipeline.gateway.start()
            await expect(page.get_by_test_id("conn-status")).to_have_text("live", timeout=45_000)
            await context.close()
        finally:
            await browser.close()
    (ARTIFACTS / "latency.json").write_text(json.dumps(
        {"hook_posted_to_screen_s": latencies}, indent=2) + "\n")
    print("hook posted -> visible on the dashboard:", latencies)


async def test_reload_without_the_gateway_shows_the_last_known_state(pipeline: Pipeline) -> None:
    """Issue 9's offline display: the page itself comes from the service worker's cache and the
    widgets from the last state the page saved, with the disconnected state shown; back online it
    reconnects by itself. Both ways of losing the gateway: the browser offline, the gateway gone."""
    from playwright.async_api import async_playwright, expect

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    sid = str(uuid.uuid4())
    pipeline.post_hook(hook("session_start", sid))
    pipeline.post_hook(hook("post_bash_failure", sid))
    token = admin_token()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport=PHONE, has_touch=True)
            page = await context.new_page()
            await page.goto(f"{pipeline.gateway_url}/#token={token}")
            await page.locator(f'[data-session="{sid}"]').click()
            status = page.get_by_test_id("conn-status")
            await expect(status).to_have_text("live", timeout=15_000)
            first = page.get_by_test_id("event-log").locator("li").first
            await expect(first).to_have_attribute("data-severity", "error", timeout=30_000)
            logged = await first.inner_text()
            events = await page.locator("#summary-stats dd").first.inner_text()
            await page.wait_for_function("navigator.serviceWorker.controller !== null",
                                         timeout=15_000)

            async def shows_last_state() -> None:
                await expect(page.get_by_test_id("session-title")).to_have_text(sid)
                await expect(status).to_have_text("disconnected, reconnecting…", timeout=15_000)
                await expect(first).to_have_text(logged)
                await expect(page.locator("#summary-stats dd").first).to_have_text(events)

            await context.set_offline(True)
            await page.reload()
            await shows_last_state()
            await page.screenshot(path=str(ARTIFACTS / "offline-reload-phone.png"), full_page=True)
            await context.set_offline(False)
            await expect(status).to_have_text("live", timeout=45_000)

            pipeline.gateway.stop()
            try:
                await page.reload()
                await shows_last_state()
                await page.screenshot(path=str(ARTIFACTS / "gateway-down-reload-phone.png"),
                                      full_page=True)
            finally:
                pipeline.gateway.start()
            await expect(status).to_have_text("live", timeout=45_000)
            await expect(first).to_have_text(logged)
            await context.close()
        finally:
            await browser.close()
