"""Dashboard replays: the archive's replay engine driven from REST, with pause and resume.

A replay loads the session's recording (archive first, ClickHouse as fallback) in a thread, then
runs ``consumers.archive.replay.replay`` with a pausable clock. Each replayed event (marked
``metadata.replay=1``) goes to the session's WebSocket clients as ``replay_event`` and, unless
disabled, to ``topics.replay`` like `agentwatch replay` does; live widgets and ClickHouse never
read that topic, so a replay cannot disturb live state.

The worker rebuilds the replay's widgets from that topic (processors/replay_agent.py) and
publishes them under the replay view's session id (``pipeline.replays.view_session_id``); the
Kafka feed hands those records to ``on_widget_update``, which forwards them to the WebSocket
clients of the user who started the replay as ``widget_update`` messages carrying the view's
``session_id`` and the ``replay_id``, and keeps the latest of each widget with the replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from consumers.archive.jsonl import event_to_line
from consumers.archive.replay import replay, resolve_time
from consumers.gateway import protocol
from pipeline.errors import QueryError, TransientError
from pipeline.replays import view_replay_id, view_session_id

log = logging.getLogger(__name__)

MIN_SPEED = 0.1
MAX_SPEED = 100.0


class PausableClock:
    """The engine's clock with the paused stretches cut out, so pacing resumes where it stopped."""

    def __init__(self) -> None:
        self._paused_total = 0.0
        self._paused_at: float | None = None
        self._running = asyncio.Event()
        self._running.set()

    @property
    def paused(self) -> bool:
        return self._paused_at is not None

    def pause(self) -> None:
        if self._paused_at is None:
            self._paused_at = time.monotonic()
            self._running.clear()

    def resume(self) -> None:
        if self._paused_at is not None:
            self._paused_total += time.monotonic() - self._paused_at
            self._paused_at = None
            self._running.set()

    def monotonic(self) -> float:
        now = time.monotonic()
        paused = self._paused_total + ((now - self._paused_at) if self._paused_at is not None else 0.0)
        return now - paused

    async def wait_running(self) -> None:
        await self._running.wait()

    async def sleep(self, seconds: float) -> None:
        target = self.monotonic() + seconds
        while True:
            await self._running.wait()
            remaining = target - self.monotonic()
            if remaining <= 0:
                return
            # Short slices: a pause taken mid-sleep stops the clock within 50 ms.
            await asyncio.sleep(min(remaining, 0.05))


@dataclass
class Replay:
    replay_id: str
    session_id: str
    user: str
    speed: float
    from_us: int | None
    to_us: int | None
    clock: PausableClock = field(default_factory=PausableClock)
    state: str = "loading"
    events: int = 0
    total: int | None = None
    first_us: int | None = None
    last_us: int | None = None
    source: str | None = None
    error: str | None = None
    task: asyncio.Task[None] | None = None
    widgets: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The replay view's latest widgets as the worker rebuilt them: name -> data, seq, timestamp."""

    def describe(self) -> dict[str, Any]:
        return {"replay_id": self.replay_id, "session_id": self.session_id,
                "view_session_id": view_session_id(self.replay_id), "state": self.state,
                "speed": self.speed, "from_us": self.from_us, "to_us": self.to_us,
                "events": self.events, "total": self.total, "first_us": self.first_us,
                "position_us": self.last_us, "source": self.source, "error": self.error,
                "user": self.user}


Loader = Callable[[str], tuple[list[dict[str, Any]], str]]
"""Blocking: session id -> (events in recording order, where they came from)."""
Emit = Callable[[dict[str, Any]], Any]
SendToUser = Callable[[str, str, tuple[str, str], str], None]
"""(session id, user, coalescing key, message): the hub's ``send_to_user``."""


class ReplayManager:
    def __init__(self, loader: Loader, broadcast: Callable[[str, str], None], *,
                 max_running: int = 4, kafka_emit: Emit | None = None,
                 on_count: Callable[[int], None] | None = None,
                 send_to_user: SendToUser | None = None) -> None:
        self.loader = loader
        self.broadcast = broadcast
        self.send_to_user = send_to_user
        self.max_running = max_running
        self.kafka_emit = kafka_emit
        self.on_count = on_count
        self.replays: dict[str, Replay] = {}

    def running(self) -> int:
        return sum(1 for r in self.replays.values() if r.state in ("loading", "running", "paused"))

    def start(self, session_id: str, user: str, options: Mapping[str, Any]) -> Replay:
        if self.running() >= self.max_running:
            raise TransientError(f"{self.max_running} replays are already running on this gateway")
        try:
            speed = float(options.get("speed", 1.0))
        except (TypeError, ValueError) as exc:
            raise QueryError("speed must be a number") from exc
        if not MIN_SPEED <= speed <= MAX_SPEED:
            raise QueryError(f"speed must be between {MIN_SPEED} and {MAX_SPEED}")
        rep = Replay(str(uuid.uuid4()), session_id, user, speed, None, None)
        rep.task = asyncio.get_running_loop().create_task(self._run(rep, options))
        self.replays[rep.replay_id] = rep
        self._forget_finished()
        self._count()
        return rep

    def get(self, replay_id: str) -> Replay | None:
        return self.replays.get(replay_id)

    def on_widget_update(self, record: Mapping[str, Any]) -> None:
        """A WidgetUpdate of a replay view; ignored unless this gateway runs that replay."""
        view = str(record.get("session_id"))
        rid = view_replay_id(view)
        rep = self.replays.get(rid) if rid is not None else None
        if rep is None:
            return  # another gateway's replay, `agentwatch replay`, or one forgotten
        widget = str(record.get("widget"))
        seq = int(record.get("version") or 0)
        held = rep.widgets.get(widget)
        if held is not None and seq <= held["seq"]:
            return  # re-read or re-sent: the client has it
        try:
            data = json.loads(str(record.get("data_json") or "{}"))
        except ValueError:
            data = {}
        timestamp = int(record.get("timestamp") or 0)
        rep.widgets[widget] = {"data": data, "seq": seq, "timestamp": timestamp}
        if self.send_to_user is not None:
            self.send_to_user(rep.session_id, rep.user, (view, widget), protocol.message(
                "widget_update", session_id=view, replay_id=rep.replay_id, widget=widget,
                data=data, timestamp=timestamp, seq=seq))

    def pause(self, rep: Replay) -> None:
        if rep.state == "running":
            rep.clock.pause()
            rep.state = "paused"
            self._status(rep)

    def resume(self, rep: Replay) -> None:
        if rep.state == "paused":
            rep.clock.resume()
            rep.state = "running"
            self._status(rep)

    async def stop(self, rep: Replay) -> None:
        if rep.task is not None and not rep.task.done():
            rep.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await rep.task
        if rep.state in ("loading", "running", "paused"):
            rep.state = "stopped"
            self._status(rep)
        self._count()

    async def close(self) -> None:
        for rep in list(self.replays.values()):
            await self.stop(rep)

    async def _run(self, rep: Replay, options: Mapping[str, Any]) -> None:
        try:
            events, rep.source = await asyncio.to_thread(self.loader, rep.session_id)
            if not events:
                raise QueryError(f"no recorded events for session {rep.session_id}")
            rep.first_us = int(events[0]["timestamp"])
            try:
                rep.from_us = _time(options.get("from"), rep.first_us)
                rep.to_us = _time(options.get("to"), rep.first_us)
            except ValueError as exc:
                raise QueryError(str(exc)) from exc
            rep.total = sum(1 for e in events if (rep.from_us is None or e["timestamp"] >= rep.from_us)
                            and (rep.to_us is None or e["timestamp"] <= rep.to_us))
            rep.state = "running"
            self._status(rep)

            async def emit(event: dict[str, Any]) -> None:
                await rep.clock.wait_running()
                if self.kafka_emit is not None:
                    await self.kafka_emit(event)
                rep.events += 1
                rep.last_us = int(event["timestamp"])
                line = event_to_line(event).decode().rstrip("\n")
                self.broadcast(rep.session_id, (
                    '{"message_type":"replay_event","replay_id":"' + rep.replay_id
                    + '","index":' + str(rep.events) + ',"event":' + line + "}"))

            await replay(events, emit, speed=rep.speed, from_us=rep.from_us, to_us=rep.to_us,
                         replay_id=rep.replay_id, clock=rep.clock)
            rep.state = "finished"
        except asyncio.CancelledError:
            rep.state = "stopped"
            raise
        except Exception as exc:
            rep.state, rep.error = "failed", str(exc)
            log.warning("replay failed", extra={"replay_id": rep.replay_id, "error": str(exc)})
        finally:
            self._status(rep)
            self._count()

    def _status(self, rep: Replay) -> None:
        self.broadcast(rep.session_id, protocol.message("replay_status", **rep.describe()))

    def _count(self) -> None:
        if self.on_count is not None:
            self.on_count(self.running())

    def _forget_finished(self, keep: int = 100) -> None:
        done = [r for r in self.replays.values() if r.state in ("finished", "stopped", "failed")]
        for rep in done[: max(0, len(done) - keep)]:
            self.replays.pop(rep.replay_id, None)


def _time(value: Any, first_us: int) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, int):
        return value
    return resolve_time(str(value), first_us)
