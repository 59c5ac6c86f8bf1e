"""`agentwatch replay SESSION` and `agentwatch export-session SESSION --out FILE`.

Both read the session through ``recordings.load_session``: the archive target from settings
first (recording plus pending segments), then ClickHouse unless ``--no-clickhouse``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from consumers.archive.recordings import EventSource, SessionStream
    from pipeline.settings import Settings


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("session", help="session id")
    parser.add_argument("--target", help="archive URL (default: settings' archive target)")
    parser.add_argument("--no-clickhouse", action="store_true",
                        help="do not fall back to ClickHouse when the archive has no recording")
    if name == "export-session":
        parser.add_argument("--out", required=True,
                            help="file to write (gzip JSONL), or - for plain JSONL on stdout")
        return
    parser.add_argument("--speed", type=float, default=1.0,
                        help="time compression: 2.0 = twice as fast, 0 = as fast as possible")
    parser.add_argument("--from", dest="from_", metavar="T",
                        help="start at T: +5m (after the first event), ISO 8601, or epoch us")
    parser.add_argument("--to", metavar="T", help="stop after T (same forms as --from)")
    parser.add_argument("--max-gap", type=float, metavar="SECONDS",
                        help="cap any single wait (skip long idle stretches)")
    parser.add_argument("--topic", help="replay topic (default: settings' topics.replay)")
    parser.add_argument("--print", dest="print_", action="store_true",
                        help="print the replayed events as JSON lines instead of producing them")


def _open(settings: Settings, args: argparse.Namespace) -> SessionStream:
    from consumers.archive.clickhouse_source import ClickHouseEventSource
    from consumers.archive.recordings import open_session
    from consumers.archive.targets import open_target

    target = open_target(args.target or settings.archive_target, settings.s3, settings.archive)
    fallbacks: list[EventSource] = (
        [] if args.no_clickhouse else [ClickHouseEventSource(settings.clickhouse)]
    )
    return open_session(target, args.session, fallbacks)


def run(args: argparse.Namespace) -> int:
    from pipeline.settings import load_settings

    settings = load_settings()
    if args.command == "export-session":
        return _export(settings, args)
    if args.speed < 0:
        print("agentwatch replay: --speed must be >= 0", file=sys.stderr)
        return 2
    return asyncio.run(_replay(settings, args))


def _export(settings: Settings, args: argparse.Namespace) -> int:
    from consumers.archive.jsonl import GzipLineWriter, event_to_line

    stream = _open(settings, args)
    count = 0
    if args.out == "-":
        for event in stream:
            sys.stdout.buffer.write(event_to_line(event))
            count += 1
        sys.stdout.flush()
    else:
        with open(args.out, "wb") as out, GzipLineWriter(out) as gz:
            for event in stream:
                gz.write(event_to_line(event))
            count = gz.lines
    print(f"exported {count} events of {args.session} from {stream.source}", file=sys.stderr)
    return 0


async def _replay(settings: Settings, args: argparse.Namespace) -> int:
    from consumers.archive.jsonl import event_to_line
    from consumers.archive.replay import replay, resolve_time

    # Opening reads the manifest and the first lines only; the rest is parsed while replaying.
    stream = await asyncio.to_thread(_open, settings, args)
    first = stream.first_timestamp
    try:
        from_us = resolve_time(args.from_, first) if args.from_ else None
        to_us = resolve_time(args.to, first) if args.to else None
    except ValueError as exc:
        print(f"agentwatch replay: {exc}", file=sys.stderr)
        return 2

    if args.print_:
        async def emit(event: dict[str, Any]) -> None:
            sys.stdout.buffer.write(event_to_line(event))
            sys.stdout.flush()

        result = await replay(stream, emit, speed=args.speed, from_us=from_us, to_us=to_us,
                              max_gap_s=args.max_gap)
    else:
        from consumers.archive.channel import KafkaReplayChannel
        from pipeline.serde import serde_from_settings

        channel = KafkaReplayChannel(settings.kafka, args.topic or settings.topics.replay,
                                     serde_from_settings(settings))
        try:
            result = await replay(stream, channel.emit, speed=args.speed,
                                  from_us=from_us, to_us=to_us, max_gap_s=args.max_gap)
        finally:
            await channel.close()
    print(json.dumps({"replay_id": result.replay_id, "session_id": args.session,
                      "events": result.events, "source": stream.source,
                      "duration_s": round(result.duration_s, 3)}), file=sys.stderr)
    return 0
