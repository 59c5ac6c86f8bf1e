"""The dashboard in headless Chromium (Playwright driving /usr/bin/chromium) over the real
pipeline: hooks posted to the collector -> Kafka -> worker -> widgets topic -> gateway -> browser.

Phone (375x812) and desktop (1440x900): a live update after a posted hook, the severity filter,
replay controls, low-bandwidth mode, the disconnected state with cached data and the reconnect.
Screenshots go to tests/e2e/artifacts/ (git-ignored), with the measured hook-to-screen delays in
latency.json (recorded, not asserted: tests never assert on elapsed time).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "e2e" / "artifacts"
HOOKS = json.loads((REPO / "tests" / "data" / "claude_code_hooks.json").read_text())
SECRET = "e2e-secret-0123456789abcdef0123456789"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    health: str
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    out: Any = None

    def start(self, timeout_s: float = 90.0) -> None:
        self.out = self.log.open("ab")
        self.proc = subprocess.Popen(self.argv, cwd=REPO, env=self.env, stdout=self.out,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.out.close()
                raise AssertionError(f"{self.name} exited: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.health, timeout=1) as r:
                    body = json.loads(r.read())
                if body.get("healthy") and body.get("caught_up", True) is not False:
                    return
            except Exception:
                pass
            time.sleep(0.3)
        self.stop()
        raise AssertionError(f"{self.name} not healthy: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.out is not None:
            self.out.close()
            self.out = None


@dataclass
class Pipeline:
    collector_url: str
    gateway_url: str
    gateway: Proc
    procs: list[Proc] = field(default_factory=list)

    def post_hook(self, payload: dict[str, Any]) -> None:
        req = urllib.request.Request(f"{self.collector_url}/hooks", data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200


def admin_token() -> str:
    now = int(time.time())
    return jwt.encode({"sub": "e2e-admin", "role": "admin", "aud": "agentwatch", "iss": "agentwatch",
                       "iat": now, "exp": now + 3600}, SECRET, algorithm="HS256")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> Iterator[Pipeline]:
    work = tmp_path_factory.mktemp("e2e")
    prefix = f"e2e{uuid.uuid4().hex[:8]}"
    ports = {name: free_port() for name in ("worker", "collector", "gateway", "archive")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    env.update({
        "AGENTWATCH_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        **{f"AGENTWATCH_TOPICS__{t.upper()}": f"{prefix}.{t}"
           for t in ("ingest", "events", "widgets", "patterns", "dlq", "replay")},
        "AGENTWATCH_TOPICS__PARTITIONS": "2",
        "AGENTWATCH_WORKER__APP_ID": prefix,
        "AGENTWATCH_WORKER_HTTP__PORT": str(ports["worker"]),
        "AGENTWATCH_COLLECTOR__PORT": str(ports["collector"]),
        "AGENTWATCH_GATEWAY__PORT": str(ports["gateway"]),
        "AGENTWATCH_GATEWAY__JWT_SECRET": SECRET,
        "AGENTWATCH_ARCHIVE_SINK_HTTP__PORT": str(ports["archive"]),
        "AGENTWATCH_ARCHIVE__TARGET": (work / "archive").as_uri(),
        "AGENTWATCH_ARCHIVE__CONSUMER_GROUP": f"{prefix}-archive",
        "AGENTWATCH_ARCHIVE__SEGMENT_MAX_AGE_S": "0.5",
        "AGENTWATCH_STACK__DIR": str(work / "stack"),
        "AGENTWATCH_LOG_FORMAT": "text",
        # The worker's aiokafka has no lz4 library here (the producers' default codec): gzip.
        "AGENTWATCH_PRODUCER__COMPRESSION": "gzip",
    })
    cli = [sys.executable, "-m", "pipeline.cli"]

    def proc(name: str, args: list[str], port: int) -> Proc:
        return Proc(name, cli + args, env, f"http://127.0.0.1:{port}/health", work / f"{name}.log")

    worker = proc("worker", ["worker"], ports["worker"])
    archive = proc("archive", ["sink", "archive"], ports["archive"])
    collector = proc("collector", ["collector"], ports["collector"])
    gateway = proc("gateway", ["gateway"], ports["gateway"])
    started: list[Proc] = []
    try:
        for p in (worker, archive, collector, gateway):
            started.append(p)
            p.start()
        yield Pipeline(f"http://127.0.0.1:{ports['collector']}",
                       f"http://127.0.0.1:{ports['gateway']}", gateway, started)
    finally:
        for p in reversed(started):
            p.stop()
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
        if mine:
            for fut in admin.delete_topics(mine, operation_timeout=30).values():
                with contextlib.suppress(Exception):
                    fut.result()


def hook(name: str, session_id: str, **over: Any) -> dict[str, Any]:
    payload = copy.deepcopy(HOOKS[name])
    payload["session_id"] = session_id
    if "tool_use_id" in payload:
        payload["tool_use_id"] = f"toolu_{uuid.uuid4().hex[:16]}"
    payload.update(over)
    return payload


async def _no_horizontal_overflow(page: Any) -> bool:
    return bool(await page.evaluate(
        "document.documentElement.scrollWidth <= window.innerWidth + 1"))


async def _small_targets(page: Any) -> list[str]:
    return list(await page.evaluate("""() => [...document.querySelectorAll(
        'button, .filters label, .toggle, .session-card, select')]
        .filter(e => e.offsetParent !== null)
        .map(e => [e, e.getBoundingClientRect()])
        .filter(([e, r]) => r.height < 44 || r.width < 44)
        .map(([e, r]) => (e.id || e.textContent.trim().slice(0, 20))
             + ' ' + Math.round(r.width) + 'x' + Math.round(r.height))"""))


async def test_dashboard_phone_and_desktop(pipeline: Pipeline) -> None:
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
            for label, viewport in (("phone", {"width": 375, "height": 812}),
                                    ("desktop", {"width": 1440, "height": 900})):
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
                    await page.get_by_test_id("replay-pause").click()
                    await expect(state).to_contain_text("paused", timeout=5_000)
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
            context = await browser.new_context(viewport={"width": 375, "height": 812})
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
