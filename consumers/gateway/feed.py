"""The background Kafka reader: every partition of the widgets topic from the beginning (and the
patterns topic from a look-back), folded into the ``WidgetStore``.

Manual assignment, no consumer group and no commits: every gateway instance reads everything,
so any instance can serve any session behind a load balancer, and a restart rebuilds the state
from the compacted topic. Manual assignment does not follow partitions added later, so the
cluster metadata is re-read every ``partition_refresh_s`` and new partitions are assigned from
their beginning (they are new: everything in them is unseen). Read committed, because the worker
writes widget updates inside its Kafka transactions. Kafka being away never stops the HTTP side:
the loop retries.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from consumers.gateway.metrics import GatewayMetrics
from consumers.gateway.state import WidgetStore
from pipeline.errors import DecodeError
from pipeline.model import PATTERN_ALERT, WIDGET_UPDATE
from pipeline.replays import view_replay_id
from pipeline.serde import AvroSerde
from pipeline.settings import KafkaSettings

log = logging.getLogger(__name__)

_YIELD_EVERY = 500


@dataclass
class FeedStatus:
    started_at: float = field(default_factory=time.monotonic)
    caught_up: bool = False
    records: int = 0
    decode_errors: int = 0
    last_error: str | None = None
    partitions: int = 0
    caught_up_event: asyncio.Event = field(default_factory=asyncio.Event)


def aiokafka_config(kafka: KafkaSettings) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "client_id": f"{kafka.client_id}-gateway",
        "security_protocol": kafka.security_protocol,
    }
    if kafka.sasl_mechanism:
        conf["sasl_mechanism"] = kafka.sasl_mechanism
        conf["sasl_plain_username"] = kafka.sasl_username
        if kafka.sasl_password is not None:
            conf["sasl_plain_password"] = kafka.sasl_password.get_secret_value()
    return conf


class WidgetFeed:
    on_replay_update: Callable[[dict[str, Any]], None] | None = None
    """Receives the WidgetUpdates of replay views (consumers/gateway/replays.py)."""

    def __init__(self, kafka: KafkaSettings, widgets_topic: str, patterns_topic: str | None, *,
                 store: WidgetStore, serde: AvroSerde, metrics: GatewayMetrics,
                 patterns_lookback_s: float = 86400.0, partition_refresh_s: float = 30.0) -> None:
        self.kafka = kafka
        self.widgets_topic = widgets_topic
        self.patterns_topic = patterns_topic
        self.store = store
        self.serde = serde
        self.metrics = metrics
        self.lookback_s = patterns_lookback_s
        self.refresh_s = partition_refresh_s
        self.status = FeedStatus()

    async def run(self) -> None:
        """Read forever (until cancelled); reconnects after Kafka errors."""
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.status.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("widget feed failed; retrying", extra={"error": self.status.last_error})
                await asyncio.sleep(2.0)

    async def _assign(self, consumer: Any) -> list[Any]:
        from aiokafka import TopicPartition  # type: ignore[import-untyped]

        while True:
            counts = await asyncio.to_thread(self._partition_counts)
            parts = counts.get(self.widgets_topic, 0)
            if parts:
                break
            self.status.last_error = f"topic {self.widgets_topic} not found; waiting"
            await asyncio.sleep(2.0)
        widget_tps = [TopicPartition(self.widgets_topic, p) for p in range(parts)]
        pattern_tps: list[Any] = []
        if self.patterns_topic:
            pattern_tps = [TopicPartition(self.patterns_topic, p)
                           for p in range(counts.get(self.patterns_topic, 0))]
        consumer.assign(widget_tps + pattern_tps)
        await consumer.seek_to_beginning(*widget_tps)
        if pattern_tps:
            since_ms = int((time.time() - self.lookback_s) * 1000)
            found = await consumer.offsets_for_times({tp: since_ms for tp in pattern_tps})
            ends = await consumer.end_offsets(pattern_tps)
            for tp in pattern_tps:
                hit = found.get(tp)
                consumer.seek(tp, hit.offset if hit is not None else ends[tp])
        self.status.partitions = len(widget_tps)
        return widget_tps

    async def _add_new_partitions(self, consumer: Any) -> list[Any]:
        """Assign partitions the topics gained since the last look; returns the new widget ones.

        ``assign`` replaces the whole assignment and forgets positions, so the partitions already
        read are put back where the application had consumed them (prefetched records are
        dropped and fetched again)."""
        from aiokafka import TopicPartition

        try:
            counts = await asyncio.to_thread(self._partition_counts)
        except Exception as exc:
            # Not worth restarting the reader (and re-reading every partition) over: next time.
            log.warning("partition refresh failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            return []
        held: list[Any] = sorted(consumer.assignment())
        known = {(tp.topic, tp.partition) for tp in held}
        added = [TopicPartition(topic, p) for topic in (self.widgets_topic, self.patterns_topic)
                 if topic for p in range(counts.get(topic, 0)) if (topic, p) not in known]
        if not added:
            return []
        positions = {tp: await consumer.position(tp) for tp in held}
        consumer.assign(held + added)
        for tp, offset in positions.items():
            consumer.seek(tp, offset)
        await consumer.seek_to_beginning(*added)
        new_widget_tps = [tp for tp in added if tp.topic == self.widgets_topic]
        self.status.partitions += len(new_widget_tps)
        log.info("new partitions assigned", extra={
            "partitions": [f"{tp.topic}/{tp.partition}" for tp in added]})
        return new_widget_tps

    def _partition_counts(self) -> dict[str, int]:
        """Partitions per topic from the cluster metadata (aiokafka only reports topics it is
        subscribed to, and manual assignment needs the count first)."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(self.kafka.client_config())
        meta = admin.list_topics(timeout=10)
        wanted = {self.widgets_topic, self.patterns_topic}
        return {name: len(t.partitions) for name, t in meta.topics.items()
                if name in wanted and t.error is None}

    async def _consume(self) -> None:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            **aiokafka_config(self.kafka), group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", isolation_level="read_committed",
            max_partition_fetch_bytes=4 * 1024 * 1024)
        try:
            await _start_uncancelled(consumer)
            widget_tps = await self._assign(consumer)
            ends = await consumer.end_offsets(widget_tps)
            pending = {tp: end for tp, end in ends.items() if end > 0}
            for tp in widget_tps:
                if tp not in pending:
                    self.store.live_partitions.add(tp.partition)
            self._check_caught_up(pending)
            next_refresh = time.monotonic() + self.refresh_s
            while True:
                if time.monotonic() >= next_refresh:
                    added = await self._add_new_partitions(consumer)
                    if added:
                        # Live (gap-checked) once read up to their end as of now, like at start.
                        ends = await consumer.end_offsets(added)
                        for tp in added:
                            if ends[tp] > 0:
                                pending[tp] = ends[tp]
                            else:
                                self.store.live_partitions.add(tp.partition)
                    next_refresh = time.monotonic() + self.refresh_s
                batches = await consumer.getmany(timeout_ms=200, max_records=2000)
                self.status.last_error = None
                n = 0
                for messages in batches.values():
                    for msg in messages:
                        self._apply(msg)
                        n += 1
                        if n % _YIELD_EVERY == 0:
                            await asyncio.sleep(0)
                if pending:
                    for tp in list(pending):
                        if await consumer.position(tp) >= pending[tp]:
                            del pending[tp]
                            self.store.live_partitions.add(tp.partition)
                    self._check_caught_up(pending)
        finally:
            await consumer.stop()

    def _check_caught_up(self, pending: dict[Any, int]) -> None:
        if not pending and not self.status.caught_up:
            self.status.caught_up = True
            self.status.caught_up_event.set()
            self.metrics.caught_up.set(1)
            log.info("widget state loaded", extra={
                "sessions": len(self.store.sessions), "records": self.status.records,
                "seconds": round(time.monotonic() - self.status.started_at, 3)})

    def _apply(self, msg: Any) -> None:
        if msg.value is None:
            # A tombstone: the session's telemetry was erased (consumers/privacy/erase.py).
            if msg.topic == self.widgets_topic and msg.key:
                session_id, _, widget = bytes(msg.key).decode("utf-8", "replace").rpartition("/")
                if session_id and self.store.remove_widget(session_id, widget):
                    self.metrics.sessions.set(len(self.store.sessions))
            return
        try:
            name, record = self.serde.decode(msg.value)
        except DecodeError as exc:
            self.status.decode_errors += 1
            log.warning("undecodable record skipped", extra={
                "topic": msg.topic, "partition": msg.partition, "offset": msg.offset,
                "error": str(exc)})
            return
        self.status.records += 1
        if name == WIDGET_UPDATE and view_replay_id(str(record.get("session_id"))) is not None:
            # A replay view's widgets (processors/replay_agent.py): for the replay that asked,
            # never the live state. Their tombstones find nothing in the store either.
            self.metrics.updates.labels("replay_widget").inc()
            if self.on_replay_update is not None:
                self.on_replay_update(record)
            return
        if name == WIDGET_UPDATE:
            self.metrics.updates.labels("widget").inc()
            if msg.timestamp:
                self.metrics.kafka_to_gateway.observe(max(0.0, time.time() - msg.timestamp / 1000))
            if self.store.apply_update(record, msg.partition) is None:
                self.metrics.duplicates.inc()
        elif name == PATTERN_ALERT:
            self.metrics.updates.labels("pattern_alert").inc()
            self.store.apply_alert(record)
        self.metrics.sessions.set(len(self.store.sessions))


_START_GRACE_S = 5.0
"""Longest a stop waits for a consumer start that is under way."""


async def _start_uncancelled(consumer: Any) -> None:
    """``consumer.start()``, finished even when the gateway stops meanwhile.

    Cancelled mid-bootstrap, aiokafka's start leaves a connection that ``stop()`` does not know
    of and never closes (seen as "Unclosed AIOKafkaConnection" warnings when a gateway stopped
    right after it started). A stop therefore lets the start finish, a few seconds at most,
    so the ``stop()`` that follows closes everything it opened.
    """
    start = asyncio.ensure_future(consumer.start())
    try:
        await asyncio.shield(start)
    except asyncio.CancelledError:
        try:
            await asyncio.wait_for(start, _START_GRACE_S)
        except Exception:  # broker away or timed out: stop() below closes what it can
            log.debug("consumer start did not finish before the stop", exc_info=True)
        raise
