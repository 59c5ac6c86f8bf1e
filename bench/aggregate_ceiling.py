"""What the aggregates could do without Faust: librdkafka in, the same folds, librdkafka out.

Run: .venv/bin/python bench/aggregate_ceiling.py [--events 60000] [--sessions 200]
Needs the local stack's Kafka (`agentwatch up --services-only`).

Not the product: a measurement for the decision in docs/benchmarks.md ("Widgets and patterns"):
is a librdkafka loop around the existing ``WidgetProcessor`` and ``PatternProcessor`` worth
building to reach 10,000 events/s, given that Faust's per-message path alone caps an agent near
5,500? The same events as bench/aggregate.py are written to a fresh 6-partition topic, then one
thread drains it: consume (read_committed) -> Avro decode -> both folds -> every 25 ms the due
widget updates encoded and produced -> every second the touched states serialised (orjson) and
produced to a changelog topic, and the offsets committed. No transactions (they would add one
round trip per checkpoint, not per event). Prints events per CPU-second of the whole process
(librdkafka's threads included) and per wall second.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent))
from aggregate import BOOTSTRAP, make_events

from pipeline.model import PATTERN_ALERT, TELEMETRY_EVENT, WIDGET_UPDATE
from pipeline.serde import AvroSerde
from pipeline.settings import PatternSettings
from processors.patterns.agent import pattern_config
from processors.patterns.processor import PatternProcessor
from processors.widgets.coalesce import Coalescer
from processors.widgets.processor import WidgetProcessor
from processors.widgets.reducers import render

PARTITIONS = 6
FLUSH_EVERY_S = 0.025
CHECKPOINT_EVERY_S = 1.0


class DictStore:
    """The processors' StateStore over a dict; ``persist`` queues a changelog record."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}
        self.pending: list[tuple[int, bytes, bytes]] = []

    def get(self, key: str) -> dict[str, Any] | None:
        return self.data.get(key)

    def set(self, key: str, value: dict[str, Any]) -> None:
        self.data[key] = value

    def persist(self, key: str, partition: int) -> None:
        self.pending.append((partition, key.encode(), orjson.dumps(self.data[key])))


def create_topics(names: list[str]) -> None:
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    for fut in admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names]).values():
        fut.result()


def delete_topics(names: list[str]) -> None:
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    for fut in admin.delete_topics(names, operation_timeout=30).values():
        try:
            fut.result()
        except Exception as exc:  # cleanup of a bench: report, go on
            print(f"could not delete a topic: {exc}", file=sys.stderr)


def drain(events_topic: str, out_topic: str, changelog: str, expected: int) -> dict[str, Any]:
    serde = AvroSerde()
    widgets_store, patterns_store = DictStore(), DictStore()
    widgets = WidgetProcessor(widgets_store, Coalescer(0.25), PARTITIONS)
    patterns = PatternProcessor(patterns_store, pattern_config(PatternSettings()))
    consumer = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"ceiling-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "isolation.level": "read_committed"})
    producer = Producer({"bootstrap.servers": BOOTSTRAP, "enable.idempotence": True,
                         "linger.ms": 5, "compression.type": "lz4"})
    consumer.subscribe([events_topic])
    folded = updates = alerts = states = 0
    started_wall = started_cpu = 0.0
    last_flush = last_checkpoint = 0.0
    while folded < expected:
        batch = consumer.consume(num_messages=1000, timeout=1.0)
        if not batch:
            continue
        if not started_wall:
            started_wall, started_cpu = time.perf_counter(), time.process_time()
            last_flush = last_checkpoint = started_wall
        for msg in batch:
            if msg.error() is not None:
                continue
            name, event = serde.decode(msg.value())
            assert name == TELEMETRY_EVENT
            widgets.fold(msg.partition(), msg.offset(), event)
            for alert in patterns.fold(msg.partition(), msg.offset(), event):
                producer.produce(out_topic, serde.encode(PATTERN_ALERT, alert))
                alerts += 1
            folded += 1
        now = time.perf_counter()
        if now - last_flush >= FLUSH_EVERY_S:
            last_flush = now
            for update in widgets.flush():
                producer.produce(out_topic, serde.encode(WIDGET_UPDATE, update.value),
                                 update.key, partition=update.partition)
                updates += 1
        if now - last_checkpoint >= CHECKPOINT_EVERY_S:
            last_checkpoint = now
            widgets.persist()
            patterns.persist()
            for store in (widgets_store, patterns_store):
                for partition, key, value in store.pending:
                    producer.produce(changelog, value, key, partition=partition)
                states += len(store.pending)
                store.pending.clear()
            consumer.commit(asynchronous=True)
        producer.poll(0)
    producer.flush(30)
    wall, cpu = time.perf_counter() - started_wall, time.process_time() - started_cpu
    consumer.close()
    counted = sum(render(st["w"], "session_summary")["events"]
                  for st in widgets_store.data.values())
    return {"events": folded, "counted_in_summaries": counted,
            "skipped_as_replays": widgets.skipped + patterns.skipped,
            "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "events_per_s": round(folded / wall), "events_per_cpu_s": round(folded / cpu),
            "widget_updates": updates, "alerts": alerts, "states_written": states}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=60_000)
    ap.add_argument("--sessions", type=int, default=200)
    args = ap.parse_args()
    prefix = f"ceiling{uuid.uuid4().hex[:8]}"
    names = [f"{prefix}.events", f"{prefix}.out", f"{prefix}.changelog"]
    create_topics(names)
    try:
        producer = Producer({"bootstrap.servers": BOOTSTRAP, "linger.ms": 20,
                             "compression.type": "lz4", "partitioner": "murmur2_random"})
        events = make_events(args.sessions, args.events // args.sessions, "ceiling")
        for sid, value in events:
            producer.produce(names[0], value, sid.encode())
            producer.poll(0)
        assert producer.flush(60) == 0
        print(json.dumps({"ceiling": drain(*names, expected=len(events)),
                          "sessions": args.sessions}), flush=True)
    finally:
        delete_topics(names)


if __name__ == "__main__":
    main()
