"""The gateway at the end of the real pipeline: simulator -> collector -> Kafka -> worker ->
widgets topic -> gateway -> a real WebSocket client.

Sessions come from the simulator (producers/simulator) and are posted to a private collector; a
private worker turns them into widget updates on private topics; an in-process gateway reads
those topics. What the worker published is read back on its own (``WidgetsReader``) and the
client's snapshot and updates are held against it.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from gateway_support import SECRET, GatewayUnderTest, free_port, receive_json, receive_until
from pipeline_support import Pipeline, WidgetsReader, running_pipeline
from pydantic import SecretStr

from consumers.gateway.app import create_app
from consumers.gateway.state import PATTERN_WIDGET
from pipeline.settings import GatewaySettings, Settings
from producers.simulator.driver import Driver, Target
from producers.simulator.run import generate
from producers.simulator.script import SessionScript

pytestmark = pytest.mark.integration

OWNER = "alice"


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    # Module scope: starting a worker costs seconds; each test plays its own session on it.
    with running_pipeline(kafka_bootstrap, tmp_path_factory.mktemp("pipeline"), OWNER) as pipe:
        yield pipe


@pytest.fixture
def reader(pipeline: Pipeline) -> Iterator[WidgetsReader]:
    r = WidgetsReader(pipeline.bootstrap, pipeline.topic("widgets"))
    yield r
    r.close()


@pytest.fixture
async def gateway(pipeline: Pipeline, tmp_path: Path) -> AsyncIterator[GatewayUnderTest]:
    port = free_port()
    settings = Settings(
        kafka={"bootstrap_servers": pipeline.bootstrap},
        topics={"widgets": pipeline.topic("widgets"), "patterns": pipeline.topic("patterns"),
                "replay": pipeline.topic("replay"), "partitions": pipeline.partitions},
        gateway=GatewaySettings(port=port, jwt_secret=SecretStr(SECRET), replay_to_kafka=False),
        stack={"dir": tmp_path / "stack"},
        archive={"target": (tmp_path / "archive").as_uri()},
    )
    app = create_app(settings, clickhouse=False)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    gut = GatewayUnderTest(f"http://127.0.0.1:{port}", settings, app, pipeline.topic("widgets"),
                           pipeline.topic("patterns"), pipeline.bootstrap)
    await gut.wait_caught_up()
    yield gut
    await runner.cleanup()


class Player:
    """Posts one simulated session's payloads to the collector, a slice at a time."""

    def __init__(self, pipeline: Pipeline, scenario: str, **overrides: Any) -> None:
        self.script: SessionScript = generate(1, scenario, seed=uuid.uuid4().hex, **overrides)[0]
        self.driver = Driver(Target.from_base(pipeline.collector_url), rate=40.0)
        self.sent = 0
        self.expected_events = 0
        """Events the worker will have counted once everything sent so far is processed."""

    @property
    def session_id(self) -> str:
        return self.script.session_id

    async def play(self, upto: int | None = None) -> None:
        steps = self.script.steps[self.sent:upto]
        async with aiohttp.ClientSession() as http:
            for step in steps:
                await self.driver.pacer.wait()
                assert await self.driver.send(http, step), self.driver.stats.to_json()
                self.sent += 1
                self.expected_events += len(step.expect)

    def processed(self, gut: GatewayUnderTest) -> bool:
        """The gateway holds the state after every event sent so far (summary counts them)."""
        session = gut.gw.store.get(self.session_id)
        summary = session.widgets.get("session_summary") if session is not None else None
        return summary is not None and summary.data.get("events") == self.expected_events


def _gateway_versions(gut: GatewayUnderTest, sid: str) -> dict[str, int]:
    """The sequence number of every widget (not alerts) the gateway holds for ``sid``."""
    session = gut.gw.store.get(sid)
    if session is None:
        return {}
    return {w: state.seq for w, state in session.widgets.items() if w != PATTERN_WIDGET}


def _summary_seq(gut: GatewayUnderTest, sid: str) -> int:
    return _gateway_versions(gut, sid).get("session_summary", -1)


def _quiet_for(sid: str, seconds: float) -> Callable[[WidgetsReader], bool]:
    """A read_until condition: no new update of ``sid`` was read for ``seconds``."""
    last = {"count": -1, "since": 0.0}

    def quiet(r: WidgetsReader) -> bool:
        count, now = len(r.updates(sid)), time.monotonic()
        if count != last["count"]:
            last["count"], last["since"] = count, now
        return now - last["since"] >= seconds

    return quiet


def without_alerts(widgets: dict[str, Any]) -> dict[str, Any]:
    return {w: v for w, v in widgets.items() if w != PATTERN_WIDGET}


def _finished(reader: WidgetsReader, sid: str) -> bool:
    summary = reader.latest(sid).get("session_summary")
    return summary is not None and summary["data"]["status"] == "completed"


async def test_snapshot_equals_published_state_then_ordered_updates(
        pipeline: Pipeline, gateway: GatewayUnderTest, reader: WidgetsReader) -> None:
    player = Player(pipeline, "failing_tests", compile_errors=2)
    sid = player.session_id
    await player.play(upto=len(player.script.steps) // 2)
    await gateway.wait_for("first half processed", lambda: player.processed(gateway), within=45)
    seq = _summary_seq(gateway, sid)
    reader.read_until(lambda r: r.latest(sid).get("session_summary", {}).get("version") == seq)
    # Other widgets changed by the last events may still be inside their coalescing interval
    # and leave after the summary (CI once saw session_progress v20 read here while the gateway
    # still held v14): read until the session's updates stop, then let the gateway catch up
    # with every widget, so the snapshot is taken of a settled state.
    reader.read_until(_quiet_for(sid, 1.5), 30)
    published = reader.latest(sid)
    versions = {w: u["version"] for w, u in published.items()}
    await gateway.wait_for("the gateway to hold every published widget",
                           lambda: _gateway_versions(gateway, sid) == versions, within=30)

    async with aiohttp.ClientSession() as http, http.ws_connect(
            f"{gateway.ws_url}/sessions/{sid}", headers=gateway.headers(OWNER)) as ws:
        snap = await receive_json(ws)
        assert snap["message_type"] == "snapshot" and snap["session_id"] == sid
        # Every widget the worker published so far, exactly as published (pattern alerts come
        # from the patterns topic, with a sequence of their own: checked apart).
        assert without_alerts(snap["widgets"]) == {
            w: {"data": u["data"], "seq": u["version"], "timestamp": u["timestamp"]}
            for w, u in published.items()}
        assert snap["seq"] == max(u["version"] for u in published.values())
        assert snap["overview"]["user_id"] == OWNER
        assert snap["overview"]["events"] == player.expected_events

        await player.play()
        reader.read_until(lambda r: _finished(r, sid), 45)
        final_seq = max(u["version"] for u in reader.updates(sid))
        last, before = await receive_until(
            ws, lambda m: m.get("seq") == final_seq and m.get("widget") != PATTERN_WIDGET,
            within=45)
        received = [*before, last]
        assert all(m["message_type"] == "widget_update" and m["session_id"] == sid
                   for m in received), [m["message_type"] for m in received]
        updates = [m for m in received if m["widget"] != PATTERN_WIDGET]
        seqs = [m["seq"] for m in updates]
        assert len(seqs) >= 2 and seqs == sorted(set(seqs)), seqs
        assert seqs[0] > snap["seq"]
        alert_seqs = [m["seq"] for m in received if m["widget"] == PATTERN_WIDGET]
        assert alert_seqs == sorted(set(alert_seqs))

    # Exactly what was published after the snapshot, in the worker's order, none lost.
    published_after = [u for u in reader.updates(sid) if u["version"] > snap["seq"]]
    assert seqs == [u["version"] for u in published_after]
    assert [(m["widget"], m["data"]) for m in updates] == [
        (u["widget"], u["data"]) for u in published_after]
    summary = [m for m in updates if m["widget"] == "session_summary"][-1]
    assert summary["data"]["status"] == "completed"
    assert summary["data"]["events"] == player.expected_events


async def test_error_log_filter(pipeline: Pipeline, gateway: GatewayUnderTest,
                                reader: WidgetsReader) -> None:
    player = Player(pipeline, "failing_tests", compile_errors=2)
    sid = player.session_id
    await player.play(upto=3)  # the session exists, with its owner, before anyone connects
    await gateway.wait_for("session known", lambda: player.processed(gateway), within=45)

    async with aiohttp.ClientSession() as http, http.ws_connect(
            f"{gateway.ws_url}/sessions/{sid}", headers=gateway.headers(OWNER)) as ws:
        assert (await receive_json(ws))["message_type"] == "snapshot"
        await ws.send_json({"action": "filter", "widget": "error_log",
                            "criteria": {"severity": ["error"]}})
        ack, _ = await receive_until(ws, lambda m: m["message_type"] == "filtered")
        assert ack["criteria"] == {"severity": ["error"]}

        await player.play()
        reader.read_until(lambda r: _finished(r, sid), 45)
        everything = reader.latest(sid)["error_log"]
        final, before = await receive_until(
            ws, lambda m: m["message_type"] == "widget_update" and m["widget"] == "error_log"
            and m["seq"] == everything["version"], within=45)
        updates = [m for m in before if m["message_type"] == "widget_update"
                   and m["widget"] == "error_log"] + [final]
        for m in updates:
            assert m["data"]["filtered"] is True
            assert {e["severity"] for e in m["data"]["errors"]} <= {"error"}, m["data"]

    wanted = [e for e in everything["data"]["errors"] if e["severity"] == "error"]
    # The filter did narrow: the session has errors of both kinds.
    assert wanted and len(wanted) < len(everything["data"]["errors"])
    assert final["data"]["errors"] == wanted
    assert final["data"]["open"] == sum(1 for e in wanted if e["status"] == "open")


def _forge(claims: dict[str, Any], key: str = SECRET) -> str:
    return jwt.encode(claims, key, algorithm="HS256")


def _unsigned(claims: dict[str, Any]) -> str:
    def b64(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


async def test_auth_failures_are_refused(pipeline: Pipeline, gateway: GatewayUnderTest) -> None:
    player = Player(pipeline, "clean")
    sid = player.session_id
    await player.play()
    await gateway.wait_for("session processed", lambda: player.processed(gateway), within=45)
    now = int(time.time())
    good = {"sub": OWNER, "role": "viewer", "aud": "agentwatch", "iss": "agentwatch",
            "iat": now, "exp": now + 600}

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    refusals: dict[str, tuple[dict[str, str], int]] = {
        "no token": ({}, 401),
        "bad signature": (bearer(_forge(good, "not-the-secret-0123456789abcdef-xyz")), 401),
        "alg none": (bearer(_unsigned(good)), 401),
        "expired": (bearer(_forge({**good, "iat": now - 7200, "exp": now - 3600})), 401),
        "other user's session": (gateway.headers("bob"), 403),
    }
    url = f"{gateway.ws_url}/sessions/{sid}"
    async with aiohttp.ClientSession() as http:
        for name, (headers, status) in refusals.items():
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                async with http.ws_connect(url, headers=headers):
                    pass
            assert refused.value.status == status, name
        # The same session is open to its owner's valid token and to an admin.
        for headers in (bearer(_forge(good)), gateway.headers("root", "admin")):
            async with http.ws_connect(url, headers=headers) as ws:
                snap = await receive_json(ws)
                assert snap["message_type"] == "snapshot" and snap["seq"] > 0
    failures = gateway.gw.metrics.auth_failures
    assert failures.labels("algorithm")._value.get() >= 1
    assert failures.labels("expired")._value.get() >= 1
    assert failures.labels("forbidden")._value.get() >= 1
