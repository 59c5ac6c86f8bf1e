"""`agentwatch emit`: publish one custom event from a shell script (the SDK's command-line face).

    agentwatch emit --type deploy.finished --session $SID --json '{"env": "prod"}'
    echo '{"progress_pct": 40}' | agentwatch emit --type agent.task.progress --json -

Prints the event as JSON on stdout (its event_id is the handle to find it later) and exits
non-zero when the event is invalid (2) or was not delivered within ``--timeout`` (1).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pipeline.errors import ValidationError


def configure(parser: argparse.ArgumentParser, _name: str) -> None:
    parser.add_argument("--type", required=True, dest="event_type",
                        help="dotted event type, e.g. agent.task.progress or deploy.finished")
    parser.add_argument("--json", default="{}", dest="fields_json",
                        help="payload (and envelope) fields as a JSON object; '-' reads stdin")
    parser.add_argument("--session", default=None,
                        help="session id (default: the JSON's session_id, then $AGENTWATCH_SESSION_ID)")
    parser.add_argument("--agent", default="claude-code", help="agent name on the envelope")
    parser.add_argument("--severity", default=None,
                        help="debug|info|warning|error|critical (default: inferred from the type)")
    parser.add_argument("--topic", default=None, help="topic to produce to (default: the ingest topic)")
    parser.add_argument("--timeout", type=float, default=15.0,
                        help="seconds to wait for Kafka to acknowledge the event")


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    text = sys.stdin.read() if args.fields_json == "-" else args.fields_json
    try:
        fields = json.loads(text)
    except ValueError as exc:
        raise ValidationError(f"--json is not JSON: {exc}") from exc
    if not isinstance(fields, dict):
        raise ValidationError("--json must be a JSON object")
    if args.session:
        fields["session_id"] = args.session
    if args.severity:
        fields["severity"] = args.severity
    return fields


def run(args: argparse.Namespace) -> int:
    from pipeline.sdk import KafkaEventPublisher, build_event
    from pipeline.settings import load_settings

    settings = load_settings()
    # Build first: a bad event is reported without ever connecting to Kafka.
    event = build_event(args.event_type, _fields(args), agent=args.agent)
    publisher = KafkaEventPublisher.from_settings(settings, topic=args.topic)
    publisher.publish(event)
    undelivered = publisher.flush(args.timeout)
    printable = {**event, "payload": {"record": event["payload"][0], **event["payload"][1]}}
    print(json.dumps(printable, sort_keys=True, default=str))
    if undelivered:
        detail = publisher.last_error or f"not acknowledged within {args.timeout:g}s"
        print(f"agentwatch emit: event {event['event_id']} not delivered: {detail}", file=sys.stderr)
        return 1
    return 0
