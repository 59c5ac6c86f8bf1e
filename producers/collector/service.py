"""What the collector does with a request body, apart from HTTP: map, spool, count.

``Intake`` owns the hook state and the publisher. ``accept_hook`` runs on the event loop (one
hook is a few events: microseconds of work) so hooks keep their arrival order; OTLP batches can
hold thousands of records and are decoded, mapped and spooled in a worker thread.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from pipeline import model
from pipeline.errors import AgentwatchError, ItemError
from pipeline.privacy import Telemetry
from producers import inbox
from producers.collector import hooks, otlp, tools
from producers.collector.consent import ConsentGate
from producers.collector.hooks import HookContext, HookState
from producers.collector.workers import Mapped
from producers.publisher import EventPublisher, split_tag

log = logging.getLogger("producers.collector")

REQUEST_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
MAX_FUTURE_US = 3600 * 1_000_000


class RequestRejectedError(Exception):
    """A request refused with ``status``; ``reason`` is a short label, ``detail`` the message."""

    def __init__(self, status: int, reason: str, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after


class CollectorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.received = Counter("agentwatch_collector_events_received",
                                "Events mapped from accepted requests", ("source", "type"),
                                registry=registry)
        self.rejected = Counter("agentwatch_collector_requests_rejected",
                                "Requests refused (400/413/415/503)", ("endpoint", "reason"),
                                registry=registry)
        self.requests = Histogram("agentwatch_collector_request_seconds",
                                  "Time to answer a request", ("endpoint",),
                                  registry=registry, buckets=REQUEST_BUCKETS)
        self.metric_points = Counter("agentwatch_collector_otlp_metric_points",
                                     "OTLP metric data points received", ("metric",),
                                     registry=registry)
        self.inbox_drained = Counter("agentwatch_collector_inbox_drained",
                                     "Command-hook inbox files turned into events",
                                     registry=registry)


@dataclass(frozen=True)
class HookHeaders:
    received_us: int | None = None
    delivery_id: str | None = None

    @classmethod
    def parse(cls, headers: Mapping[str, str], now_us: int) -> HookHeaders:
        received: int | None = None
        raw = headers.get("X-Agentwatch-Received-Us", "")
        if raw.isdigit() and int(raw) <= now_us + MAX_FUTURE_US:
            received = int(raw)
        delivery = headers.get("X-Agentwatch-Delivery-Id", "")
        ok = 0 < len(delivery) <= 64 and all(c.isalnum() or c == "-" for c in delivery)
        return cls(received, delivery if ok else None)


class Intake:
    """Turns bodies into spooled events; one per collector."""

    def __init__(self, publisher: EventPublisher, metrics: CollectorMetrics, *,
                 excerpt_chars: int, state: HookState, gate: ConsentGate | None = None) -> None:
        self.publisher = publisher
        self.metrics = metrics
        self.excerpt_chars = excerpt_chars
        self.state = state
        self.gate = gate
        """Identity and consent; None: events pass unattributed (unit tests of the mapping)."""
        self.session_users: OrderedDict[str, str] = OrderedDict()
        """The user of each session's latest hook (bounded like the hook state's sessions):
        held tool calls published later (expired, evicted) belong to their session's user."""

    # -- hooks -----------------------------------------------------------------------------

    def hook_events(self, body: bytes, ctx: HookContext) -> list[dict[str, Any]]:
        return self._map_hook(self._hook_payload(body), ctx, self.state)

    @staticmethod
    def _hook_payload(body: bytes) -> Any:
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise RequestRejectedError(
                400, "invalid_json", f"body is not JSON: {type(exc).__name__}") from None

    def _map_hook(self, payload: Any, ctx: HookContext, state: HookState) -> list[dict[str, Any]]:
        try:
            return hooks.map_hook(payload, ctx, state)
        except hooks.HookPayloadError as exc:
            raise RequestRejectedError(400, "not_a_hook", str(exc)) from None
        except Exception as exc:  # a mapping bug must not lose the hook: carry it as `other`
            log.exception("hook mapping failed; publishing it unmapped",
                          extra={"error": type(exc).__name__})
            return [model.new_event(
                "other", str(payload["session_id"]),
                {"name": f"hook.{payload['hook_event_name']}", "json": tools.other_json(payload)},
                agent=hooks.AGENT, source=model.Source.HOOK.value, timestamp_us=ctx.received_us,
                metadata={"hook": str(payload["hook_event_name"]), "mapping_error": type(exc).__name__},
            )]

    def accept_hook(self, body: bytes, ctx: HookContext, user_header: str | None = None) -> int:
        """Map and spool one hook; ``RequestRejectedError`` says why not. Returns the number of
        events spooled (0 when the user opted out)."""
        payload = self._hook_payload(body)
        if self.gate is None:
            events = self._map_hook(payload, ctx, self.state)
        else:
            claimed = payload.get("user_id") if isinstance(payload, dict) else None
            user = self.gate.user_for(user_header, claimed)
            mode = self.gate.mode(user)
            if mode is Telemetry.DISABLED:
                # Not even mapped: no tool call of an opted-out user is held in memory (an
                # unfinished one would be published on expiry).
                self.gate.dropped_requests.labels("/hooks").inc()
                return 0
            # Minimal: a scratch state, for the same reason (held calls are never kept anyway).
            state = self.state if mode is Telemetry.ENABLED else HookState()
            sid = payload.get("session_id") if isinstance(payload, dict) else None
            if user and isinstance(sid, str):
                self._remember_user(sid, user)
            events = self._admit(self._map_hook(payload, ctx, state), sid, user)
        if events:
            self.publish(events)
        return len(events)

    # -- OTLP ------------------------------------------------------------------------------

    def accept_otlp(self, signal: str, body: bytes, content_type: str, received_us: int,
                    user_header: str | None = None) -> int:
        """Decode, map and spool one OTLP export request (runs in a worker thread)."""
        try:
            request = otlp.decode_request(signal, body, content_type)
        except otlp.OtlpDecodeError as exc:
            raise RequestRejectedError(400, "otlp_decode", str(exc)) from None
        events = otlp.MAPPERS[signal](request, received_us)
        if signal == "metrics":
            names: dict[str, int] = {}
            for event in events:
                name = event["metadata"].get("otel.metric", "")
                names[name] = names.get(name, 0) + 1
            for name, count in names.items():
                self.metrics.metric_points.labels(name).inc(count)
        if self.gate is not None:
            events = self.gate.admit(events, self.gate.user_for(user_header))
        if events:
            self.publish(events)
        return len(events)

    def accept_mapped(self, mapped: Mapped) -> int:
        """Spool what an OTLP worker process mapped and encoded."""
        if mapped.rejected is not None:
            raise RequestRejectedError(400, *mapped.rejected)
        for name, count in mapped.metric_points.items():
            self.metrics.metric_points.labels(name).inc(count)
        self._spool(lambda: self.publisher.append_records(mapped.records))
        tags: dict[bytes, int] = {}
        for _key, tag, _value in mapped.records:
            tags[tag] = tags.get(tag, 0) + 1
        for tag, count in tags.items():
            self.metrics.received.labels(*split_tag(tag)).inc(count)
        return len(mapped.records)

    # -- shared ----------------------------------------------------------------------------

    def publish(self, events: list[dict[str, Any]]) -> None:
        self._spool(lambda: self.publisher.publish_many(events))
        counts: dict[tuple[str, str], int] = {}
        for event in events:
            key = (event["source"], event["event_type"])
            counts[key] = counts.get(key, 0) + 1
        for (source, event_type), count in counts.items():
            self.metrics.received.labels(source, event_type).inc(count)

    @staticmethod
    def _spool(append: Callable[[], int]) -> None:
        from producers.spool import SpoolFullError

        try:
            append()
        except SpoolFullError as exc:
            raise RequestRejectedError(503, "spool_full", str(exc), retry_after=exc.retry_after) from None
        except ItemError as exc:
            # The encoder's message can quote field values: log the class only.
            log.error("an event did not fit the schema", extra={"error": type(exc).__name__})
            raise RequestRejectedError(
                500, "encode_error", "internal error: an event does not fit the schema") from None
        except AgentwatchError as exc:
            raise RequestRejectedError(503, "spool_error", str(exc), retry_after=1.0) from None

    def _remember_user(self, session_id: str, user: str) -> None:
        self.session_users[session_id] = user
        self.session_users.move_to_end(session_id)
        while len(self.session_users) > self.state.max_sessions:
            self.session_users.popitem(last=False)

    def _admit(self, events: list[dict[str, Any]], session_id: object,
               user: str | None) -> list[dict[str, Any]]:
        """Consent per session: the request's own events as its user, others (tool calls of
        other sessions pushed out of the hook state) as the user their session was seen with."""
        if self.gate is None:
            return events
        groups: dict[str, list[dict[str, Any]]] = {}
        for event in events:
            groups.setdefault(str(event["session_id"]), []).append(event)
        kept: list[dict[str, Any]] = []
        for sid, group in groups.items():
            owner = user if sid == session_id else self.session_users.get(sid)
            kept += self.gate.admit(group, owner)
        return kept

    def expire_pending(self) -> int:
        events = self._admit(hooks.expire_pending(self.state, time.time_ns() // 1000), None, None)
        if events:
            self.publish(events)
        return len(events)

    def drain_inbox(self, folder: Path, limit: int = 1000) -> int:
        """Turn waiting command-hook files into events; returns how many files were handled."""
        if self.gate is not None and self.gate.cache.stale and not self.gate.cache.fail_open:
            return 0  # consent unknown and failing closed: the files wait rather than vanish
        handled = 0
        for path in inbox.pending(folder, limit):
            try:
                item = inbox.read(path)
            except FileNotFoundError:
                continue
            ctx = HookContext(received_us=item.received_us, delivery_id=item.delivery_id,
                              excerpt_chars=self.excerpt_chars)
            try:
                self.accept_hook(item.body, ctx)
            except RequestRejectedError as exc:
                if exc.status >= 500:
                    break  # the spool is full or failing: leave the rest for the next round
                self.metrics.rejected.labels("inbox", exc.reason).inc()
                log.warning("inbox file is not a hook; moved to rejected/",
                            extra={"file": item.name, "reason": exc.reason})
                inbox.reject(item)
                continue
            inbox.remove(item)
            self.metrics.inbox_drained.inc()
            handled += 1
        return handled
