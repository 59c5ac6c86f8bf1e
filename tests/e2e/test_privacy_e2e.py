"""The Privacy page in headless Chromium over the real pipeline (collector -> Kafka -> worker ->
ClickHouse sink / archive sink / widgets -> gateway), with a ClickHouse database of its own.

Two users' sessions go in through the collector. Alice, signed in as a viewer, changes her
consent and retention, downloads her export (all and only her data), starts an erasure and
cancels it (nothing changes), then confirms it: a follow-up API read holds nothing of hers and
Bob's data is untouched. Screenshots at 375x812 and 1440x900 go to tests/e2e/artifacts/.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    DESKTOP,
    PHONE,
    Pipeline,
    hook,
    no_horizontal_overflow,
    running_pipeline,
    small_targets,
    token,
)
from playwright.async_api import ViewportSize

from pipeline.migrations import apply_migrations, client
from pipeline.settings import ClickHouseSettings

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

DATA_RECORDS = {"event", "session", "alert", "dead_letter"}
# Whether the browser's storage (the dashboard's offline copy) mentions a session.
NARROW: ViewportSize = {"width": 320, "height": 640}
WIDE: ViewportSize = {"width": 1920, "height": 1080}
HOLDS = "sid => Object.entries(localStorage).some(([k, v]) => (k + v).includes(sid))"


@pytest.fixture(scope="module")
def database(clickhouse: ClickHouseSettings) -> Iterator[str]:
    name = f"e2epriv_{uuid.uuid4().hex[:8]}"
    conn = client(clickhouse)
    conn.execute(f"CREATE DATABASE {name}")
    try:
        apply_migrations(clickhouse, name)
        yield name
    finally:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.disconnect()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str,
             database: str) -> Iterator[Pipeline]:
    env = {"AGENTWATCH_CLICKHOUSE__DATABASE": database, "AGENTWATCH_GATEWAY__AUDIT_FLUSH_S": "0.2"}
    with running_pipeline(tmp_path_factory.mktemp("e2epriv"), kafka_bootstrap,
                          ["worker", "archive", "clickhouse", "collector", "gateway"], env) as p:
        yield p


def _records(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in body.decode().splitlines() if line.strip()]


def _read(path: Path) -> str:
    return path.read_text()


def _export(pipeline: Pipeline, user_token: str) -> list[dict[str, Any]]:
    status, body = pipeline.api("GET", "/api/user/telemetry/export?format=json", user_token)
    assert status == 200, body[:500]
    return _records(body)


def _stored(clickhouse: ClickHouseSettings, database: str, sessions: list[str]) -> dict[str, int]:
    conn = client(clickhouse, database)
    try:
        rows = conn.execute("SELECT session_id, count() FROM telemetry_events "
                            "WHERE session_id IN %(s)s GROUP BY session_id", {"s": tuple(sessions)})
    finally:
        conn.disconnect()
    return {str(s): int(n) for s, n in rows}


def _post_session(pipeline: Pipeline, sid: str, user: str, files: int) -> None:
    pipeline.post_hook(hook("session_start", sid), user=user)
    for i in range(files):
        pipeline.post_hook(hook("post_write_create", sid, tool_input={
            "file_path": f"/home/{user}/app/{user}_file_{i}.py", "content": "x = 1\n"}), user=user)
    pipeline.post_hook(hook("post_bash_failure", sid), user=user)


async def test_privacy_page_consent_export_and_erasure(
        pipeline: Pipeline, clickhouse: ClickHouseSettings, database: str) -> None:
    from playwright.async_api import async_playwright, expect

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    alice_sid, bob_sid = str(uuid.uuid4()), str(uuid.uuid4())
    _post_session(pipeline, alice_sid, "alice", 3)
    _post_session(pipeline, bob_sid, "bob", 2)
    deadline = time.monotonic() + 60
    while set(_stored(clickhouse, database, [alice_sid, bob_sid])) != {alice_sid, bob_sid}:
        assert time.monotonic() < deadline, "the sessions never reached ClickHouse"
        await asyncio.sleep(0.5)
    stored_before = _stored(clickhouse, database, [alice_sid, bob_sid])
    alice, bob = token("alice"), token("bob")

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # From 320 to 1920 px: the page fits, its targets are touch-sized, it shows the
            # settings. Screenshots at the phone and desktop sizes; the phone goes on below.
            for label, viewport in (("desktop", DESKTOP), ("narrow", NARROW), ("wide", WIDE),
                                    ("phone", PHONE)):
                context = await browser.new_context(viewport=viewport, has_touch=label == "phone",
                                                    accept_downloads=True)
                page = await context.new_page()
                await page.goto(f"{pipeline.gateway_url}/#token={alice}")
                await expect(page.locator(f'[data-session="{alice_sid}"]')).to_be_visible(
                    timeout=30_000)
                await expect(page.locator(f'[data-session="{bob_sid}"]')).to_have_count(0)
                await page.get_by_test_id("nav-privacy").click()
                current = page.get_by_test_id("privacy-current")
                await expect(current).to_contain_text("alice: telemetry", timeout=15_000)
                assert await no_horizontal_overflow(page), label
                assert not await small_targets(page), await small_targets(page)
                if label in ("desktop", "phone"):
                    await page.screenshot(path=str(ARTIFACTS / f"privacy-{label}.png"),
                                          full_page=True)
                if label != "phone":
                    await context.close()

            # Consent and retention: saved through PUT, shown, and what the API now answers.
            await expect(current).to_contain_text("telemetry enabled")
            await page.locator('#privacy-form input[value="minimal"]').check()
            await page.get_by_test_id("retention-days").fill("30")
            await page.get_by_test_id("privacy-save").click()
            await expect(page.get_by_test_id("privacy-saved")).to_have_text("saved", timeout=15_000)
            await expect(current).to_contain_text("telemetry minimal, events kept for 30 days")
            status, body = pipeline.api("GET", "/api/user/privacy", alice)
            assert status == 200
            assert (json.loads(body)["telemetry"], json.loads(body)["retention_days"]) == (
                "minimal", 30)
            assert json.loads(pipeline.api("GET", "/api/user/privacy", bob)[1])["telemetry"] == \
                "enabled"

            # Export: the downloaded file holds Alice's events and nothing of Bob's.
            async with page.expect_download() as info:
                await page.get_by_test_id("export-json").click()
            text = await asyncio.to_thread(_read, await (await info.value).path())
            records = _records(text.encode())
            events = [r for r in records if r["record_type"] == "event"]
            assert len(events) == stored_before[alice_sid]
            assert {r["data"]["session_id"] for r in events} == {alice_sid}
            assert bob_sid not in text and "bob_file" not in text
            assert any("alice_file_2.py" in json.dumps(r["data"]) for r in events)
            assert records[-1]["record_type"] == "manifest"
            await expect(page.get_by_test_id("export-state")).to_contain_text("downloaded")
            async with page.expect_download() as info:
                await page.get_by_test_id("export-csv").click()
            rows = list(csv.DictReader(io.StringIO(
                await asyncio.to_thread(_read, await (await info.value).path()))))
            assert {r["session_id"] for r in rows if r["record_type"] == "event"} == {alice_sid}

            # Erasure, first cancelled: the confirmation needs the typed word; cancel erases nothing.
            await page.get_by_test_id("delete-start").click()
            confirm = page.get_by_test_id("delete-confirm")
            await expect(confirm).to_be_visible()
            await expect(page.get_by_test_id("delete-go")).to_be_disabled()
            await page.get_by_test_id("delete-typed").fill("remove")
            await expect(page.get_by_test_id("delete-go")).to_be_disabled()
            await page.screenshot(path=str(ARTIFACTS / "privacy-confirm-phone.png"), full_page=True)
            await page.get_by_test_id("delete-cancel").click()
            await expect(confirm).to_be_hidden()
            await expect(page.get_by_test_id("delete-result")).to_have_text("nothing was deleted")
            assert _stored(clickhouse, database, [alice_sid, bob_sid]) == stored_before
            assert len([r for r in _export(pipeline, alice) if r["record_type"] == "event"]) == \
                stored_before[alice_sid]

            # A second tab watches the session; the browser holds its state for offline use.
            viewer = await context.new_page()
            await viewer.goto(f"{pipeline.gateway_url}/#/session/{alice_sid}")
            await expect(viewer.get_by_test_id("conn-status")).to_have_text("live", timeout=15_000)
            await expect(viewer.get_by_test_id("event-log").locator("li").first).to_be_visible(
                timeout=15_000)
            assert await page.evaluate(HOLDS, alice_sid)

            # Then confirmed: erased, verified, and nothing of Alice's is left to read.
            await page.get_by_test_id("delete-start").click()
            await page.get_by_test_id("delete-typed").fill("delete")
            await page.get_by_test_id("delete-go").click()
            result = page.get_by_test_id("delete-result")
            await expect(result).to_contain_text("verified, nothing remains", timeout=180_000)
            await page.screenshot(path=str(ARTIFACTS / "privacy-erased-phone.png"), full_page=True)
            await expect(viewer.get_by_test_id("conn-status")).to_have_text("session erased",
                                                                            timeout=30_000)
            await expect(viewer.get_by_test_id("event-log").locator("li")).to_have_count(0)
            assert not await page.evaluate(HOLDS, alice_sid)
            await context.close()

            context = await browser.new_context(viewport=DESKTOP)
            page = await context.new_page()
            await page.goto(f"{pipeline.gateway_url}/#token={alice}")
            await expect(page.get_by_test_id("sessions").locator("[data-session]")).to_have_count(0)
            await page.get_by_test_id("nav-privacy").click()
            await expect(page.get_by_test_id("privacy-current")).to_contain_text(
                "telemetry minimal", timeout=15_000)  # the consent row outlives the erasure
            await page.screenshot(path=str(ARTIFACTS / "privacy-after-desktop.png"), full_page=True)
            await context.close()
        finally:
            await browser.close()

    left = [r for r in _export(pipeline, alice) if r["record_type"] in DATA_RECORDS]
    assert left == []
    assert alice_sid not in _stored(clickhouse, database, [alice_sid, bob_sid])
    status, _ = pipeline.api("GET", f"/api/sessions/{alice_sid}", token("e2e-admin", "admin"))
    assert status == 404
    bob_events = [r for r in _export(pipeline, bob) if r["record_type"] == "event"]
    assert len(bob_events) == stored_before[bob_sid]
    assert {r["data"]["session_id"] for r in bob_events} == {bob_sid}
