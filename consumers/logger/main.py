"""`agentwatch logs [--follow] [--session S]`: print the events topic as log lines.

Reads with its own throw-away consumer group (never commits), from the beginning of the topic's
retention, or only new events with ``--follow --new``. Without ``--follow`` it exits once it has
caught up with the end of every partition.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    parser.add_argument("--new", action="store_true", help="start at the end (with --follow)")
    parser.add_argument("--session", "-s", default=None, help="only this session id")


def run(args: argparse.Namespace) -> int:
    from confluent_kafka import Consumer, KafkaError

    from consumers.logger.format import format_event
    from pipeline.serde import serde_from_settings
    from pipeline.settings import load_settings

    settings = load_settings()
    serde = serde_from_settings(settings)
    consumer = Consumer({
        **settings.kafka.client_config(), "group.id": f"agentwatch-logs-{uuid.uuid4().hex}",
        "enable.auto.commit": False, "isolation.level": "read_committed",
        "auto.offset.reset": "latest" if args.new else "earliest",
        "enable.partition.eof": True})
    caught_up: set[int] = set()
    assigned: list[Any] = []

    def on_assign(c: Any, partitions: list[Any]) -> None:
        assigned[:] = partitions

    consumer.subscribe([settings.topics.events], on_assign=on_assign)
    try:
        while True:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    caught_up.add(msg.partition() or 0)
                    if not args.follow and assigned and caught_up >= {p.partition for p in assigned}:
                        return 0
                continue
            caught_up.discard(msg.partition() or 0)
            try:
                event = serde.decode_event(msg.value() or b"")
            except Exception:  # a stray record must not stop the tail
                continue
            if args.session and event["session_id"] != args.session:
                continue
            sys.stdout.write(format_event(event) + "\n")
            sys.stdout.flush()
    except KeyboardInterrupt:
        return 0
    finally:
        consumer.close()
