"""Gateway abuse: connection floods, oversized WebSocket frames, invalid JWTs and rate-limit bursts
while simulated sessions flow. The gateway must stay up (health 200, process alive, clean exit)
and keep serving a legitimate dashboard client: the one connected before the abuse keeps
receiving live updates during it, and a new one gets a snapshot and a live update after it.

The gateway runs with small limits (20 requests/s per user, bursts of 40, 120 sockets) so every
limit is reached with a few hundred requests on 2 cores.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from typing import Any

import gateway_abuse as abuse
import pytest
from reliability_harness import GATEWAY_SECRET, Pipeline, mint_token, wait_until
from reliability_support import (
    assert_exact,
    canaries_of,
    ch_event_ids,
    downstream_places,
    drive,
    expected_per_session,
    find_canaries,
)

from producers.simulator.run import generate

pytestmark = [pytest.mark.reliability, pytest.mark.integration, pytest.mark.timeout(420)]

MAX_CLIENTS = 120
FLOOD = 200
"""WebSocket handshakes at once, each by its own user (so the per-user limit does not stop
them): more than MAX_CLIENTS, so the cap is reached."""
IDLE = 300
"""TCP connections that never send a request."""
RUN_S = 90.0
JWT_ROUNDS = 10


@pytest.fixture
def component_env() -> dict[str, dict[str, str]]:
    return {"gateway": {"AGENTWATCH_GATEWAY__RATE_LIMIT_RPS": "20",
                        "AGENTWATCH_GATEWAY__RATE_LIMIT_BURST": "40",
                        "AGENTWATCH_GATEWAY__MAX_CLIENTS": str(MAX_CLIENTS)}}


async def _until(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(0.2)


async def _scenario(line: Pipeline, session_id: str, sender: threading.Thread) -> dict[str, Any]:
    gateway = line.components["gateway"]
    base = f"http://127.0.0.1:{gateway.port}"
    ws_base = base.replace("http://", "ws://")
    out: dict[str, Any] = {"health": []}

    def check_up(when: str) -> None:
        out["health"].append((when, gateway.alive(), gateway.health().get("healthy")))

    legit = abuse.LegitClient()
    stop_legit = asyncio.Event()
    watcher = asyncio.create_task(abuse.watch_session(ws_base, mint_token("legit-before"),
                                                      session_id, legit, stop_legit))
    await _until(lambda: legit.snapshots(session_id), 60, "the legit client's first snapshot")
    abuse_started = time.monotonic()

    # 1. Connection floods: sockets up to the cap (then 503) and idle TCP connections, held
    # while invalid tokens and request bursts hit the gateway.
    hold = asyncio.Event()
    flood = asyncio.create_task(abuse.handshake_flood(
        ws_base, [mint_token(f"flood-{i}", "viewer") for i in range(FLOOD)], hold))
    idle = asyncio.create_task(abuse.idle_connections("127.0.0.1", gateway.port, IDLE, hold))
    await asyncio.sleep(3)
    check_up("flood")
    # 2. Invalid JWTs on REST and handshakes.
    out["jwt"] = await abuse.invalid_jwt_storm(base, abuse.bad_tokens(GATEWAY_SECRET),
                                                 rounds=JWT_ROUNDS)
    check_up("invalid tokens")
    # 3. A REST burst by one valid user.
    out["rest_burst"] = await abuse.rest_burst(base, mint_token("burst-rest", "viewer"), 300)
    check_up("rest burst")
    # The legit client kept getting live updates through all of it.
    await _until(lambda: legit.updates_after(abuse_started, session_id) > 0, 60,
                 "a live update to the legit client during the abuse")
    hold.set()
    out["flood"], out["idle_accepted"] = await flood, await idle
    # 4. Socket abuse (needs free sockets, so after the flood): a message burst, oversized
    # frames, a forged frame header announcing 1 TiB.
    out["message_burst"] = await abuse.message_burst(ws_base, mint_token("burst-ws", "viewer"), 300)
    out["oversized"] = await abuse.oversized_frames(ws_base, mint_token("big-frames", "viewer"))
    out["forged"] = await asyncio.to_thread(abuse.forged_frame_header, "127.0.0.1", gateway.port,
                                            "/sessions", mint_token("forger", "viewer"))
    check_up("socket abuse")
    out["legit_updates_during"] = legit.updates_after(abuse_started, session_id)
    stop_legit.set()
    await watcher
    out["legit_closed_with"] = legit.closed_with

    # After the abuse: a new dashboard client gets a snapshot and a live update.
    assert sender.is_alive(), "the run ended before the abuse did: no live update left to see"
    after = abuse.LegitClient()
    stop_after = asyncio.Event()
    connected_at = time.monotonic()
    watcher = asyncio.create_task(abuse.watch_session(ws_base, mint_token("legit-after"),
                                                      session_id, after, stop_after))
    await _until(lambda: after.snapshots(session_id) and after.updates_after(connected_at, session_id),
                 60, "a snapshot and a live update to a new client after the abuse")
    stop_after.set()
    await watcher
    check_up("after")
    return out


def test_gateway_abuse_keeps_it_up_and_serving(pipeline: Pipeline, record_property: Any) -> None:
    scripts = generate(3, "everything", seed=f"gateway-abuse-{uuid.uuid4().hex}")
    session_id = scripts[0].session_id
    payloads = sum(len(s.steps) for s in scripts)
    outcome: dict[str, Any] = {}

    def send() -> None:
        try:
            outcome["stats"] = drive(pipeline.collector_url, scripts, rate=payloads / RUN_S)
        except BaseException as exc:
            outcome["error"] = exc

    sender = threading.Thread(target=send)
    sender.start()
    wait_until(lambda: len(ch_event_ids(pipeline).get(session_id, ())) >= 5, 90,
               "the watched session's first events in ClickHouse")
    result = asyncio.run(_scenario(pipeline, session_id, sender))
    for name in ("flood", "idle_accepted", "jwt", "rest_burst", "message_burst", "oversized",
                 "legit_updates_during"):
        record_property(f"figure:{name}", dict(result[name]) if isinstance(result[name], Counter)
                        else result[name])

    # Up throughout: alive and healthy at every checkpoint.
    assert all(alive and healthy for _when, alive, healthy in result["health"]), result["health"]
    # The flood reached the cap: accepted up to it, then 503 busy; nothing else.
    flood: Counter[int] = result["flood"]
    assert set(flood) <= {101, 503} and flood[503] > 0 and flood[101] > 0, flood
    # Every invalid token refused (401), the guessing address then limited (429); never 5xx.
    # The 8 KiB token does not fit aiohttp's header limit: 400 before any auth, on both paths.
    jwt: Counter[int] = result["jwt"]
    assert set(jwt) <= {400, 401, 429} and jwt[401] > 0 and jwt[429] > 0, jwt
    assert jwt[400] == 2 * JWT_ROUNDS, jwt
    # A burst gets its allowance, then 429.
    assert set(result["rest_burst"]) == {200, 429}, result["rest_burst"]
    # A message burst: answered until the bucket is empty, then rate_limited errors; the socket
    # stays open and answers again once the bucket refills.
    burst: Counter[str] = result["message_burst"]
    assert burst["pong"] > 0 and burst["error:rate_limited"] > 0, burst
    assert burst["pong_after_burst"] == 1 and not any(k.startswith("closed") for k in burst), burst
    # Oversized frames: over the protocol limit is an error reply; over the socket limit closes
    # that socket with 1009 (message too big), or the gateway cuts it while it is being sent.
    oversized = result["oversized"]
    assert oversized["text_20k"] == "too_large", oversized
    for name in ("text_1m", "text_16m", "binary_1m"):
        assert oversized[name] == 1009 or str(oversized[name]).startswith("send failed"), oversized
    # The forged header: the session list, then a close frame with 1009 (message too big).
    assert result["forged"].endswith(b"\x88\x02\x03\xf1"), result["forged"][-40:]
    assert result["legit_updates_during"] > 0 and result["legit_closed_with"] is None

    sender.join(180)
    assert not sender.is_alive() and "error" not in outcome, outcome.get("error")
    expected = expected_per_session(scripts)
    assert_exact(pipeline, expected)
    gateway = pipeline.components["gateway"]
    refused = gateway.metric_sum("agentwatch_gateway_auth_failures_total{")
    limited = gateway.metric_sum("agentwatch_gateway_rate_limited_total")
    assert refused > 0 and limited > 0, (refused, limited)
    codes = pipeline.stop()
    assert all(code == 0 for code in codes.values()), {
        n: (code, pipeline.components[n].tail()) for n, code in codes.items() if code != 0}
    leaks = find_canaries(downstream_places(pipeline), canaries_of(scripts))
    assert not leaks, f"canaries downstream of redaction: {leaks[:10]}"
