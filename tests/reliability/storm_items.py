"""The malformed items of the bad-input storm: HTTP bodies for the collector, raw records for ingest.

Each item has a kind (its name) and what it must come to. Collector items marked ``refuse`` must
get a 4xx with a reason; the others may be accepted, and then whatever they became on the ingest
topic must be dead-lettered or published like any event (the ingest-level accounting of the
test). Raw records marked ``dlq`` must be dead-lettered (with that error kind when given).
Secrets shaped like real ones (so the redactor recognises them) are planted in many of them.
"""

from __future__ import annotations

import json
import random
import string
import uuid
from dataclasses import dataclass
from typing import Any

from pipeline.model import new_event, now_us
from pipeline.serde import AvroSerde

_ALNUM = string.ascii_letters + string.digits


@dataclass(frozen=True)
class Secrets:
    github: str
    aws: str
    password: str

    @classmethod
    def fresh(cls, rng: random.Random) -> Secrets:
        return cls(github="ghp_" + "".join(rng.choice(_ALNUM) for _ in range(36)),
                   aws="AKIA" + "".join(rng.choice(string.ascii_uppercase + "234567")
                                        for _ in range(16)),
                   password="Pw-" + "".join(rng.choice(_ALNUM) for _ in range(14)) + "!9")

    def values(self) -> set[str]:
        return {self.github, self.aws, self.password}


@dataclass(frozen=True)
class HttpItem:
    kind: str
    path: str
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    refuse: bool = True
    """Must be answered 4xx; otherwise 2xx or 4xx are both fine (never 5xx)."""


@dataclass(frozen=True)
class RawItem:
    kind: str
    value: bytes | None
    key: bytes | None
    expect: str
    """``dlq`` (must be dead-lettered) or ``any`` (dead-lettered or published)."""
    error_kind: str | None = None


def _hook(session: str, event: str, **fields: Any) -> dict[str, Any]:
    return {"session_id": session, "transcript_path": "/tmp/t.jsonl", "cwd": "/work",
            "permission_mode": "default", "hook_event_name": event, **fields}


def http_items(secrets: Secrets) -> list[HttpItem]:
    sid = str(uuid.uuid4())
    pw = secrets.password
    deep = b"[" * 200_000 + b"]" * 200_000
    post_bash = _hook(sid, "PostToolUse", tool_name="Bash", tool_use_id="toolu_storm10mb",
                      tool_input={"command": f"echo password={pw}"},
                      tool_response={"stdout": "x" * (10 * 1024 * 1024), "stderr": "",
                                     "interrupted": False})
    huge_array = _hook(sid, "PostToolUse", tool_name="Bash", tool_use_id="toolu_stormarray",
                       tool_input={"command": "ls", "args": list(range(200_000))},
                       tool_response={"stdout": "", "stderr": "", "interrupted": False})
    year_9999 = {"resourceLogs": [{"resource": {"attributes": []}, "scopeLogs": [{"logRecords": [{
        "timeUnixNano": "253402300799000000000", "observedTimeUnixNano": "253402300799000000000",
        "body": {"stringValue": "claude_code.api_request"},
        "attributes": [{"key": "session.id", "value": {"stringValue": sid}},
                       {"key": "event.name", "value": {"stringValue": "api_request"}},
                       {"key": "event.timestamp", "value": {"stringValue": "9999-12-31T23:59:59Z"}},
                       {"key": "input_tokens", "value": {"intValue": "-5"}},
                       {"key": "cost_usd", "value": {"doubleValue": -1.0}}]}]}]}]}
    return [
        HttpItem("bad_gzip", "/hooks", b"not gzip at all " + pw.encode(),
                 headers=(("Content-Encoding", "gzip"),)),
        HttpItem("invalid_json", "/hooks", b'{"session_id": "' + pw.encode() + b'", '),
        HttpItem("empty_body", "/hooks", b""),
        HttpItem("json_array", "/hooks", b"[1, 2, 3]"),
        HttpItem("json_scalar", "/hooks", b"42"),
        HttpItem("missing_hook_name", "/hooks", json.dumps({"session_id": sid}).encode()),
        HttpItem("hook_name_wrong_type", "/hooks",
                 json.dumps({"session_id": sid, "hook_event_name": 7}).encode()),
        HttpItem("session_id_wrong_type", "/hooks",
                 json.dumps({"session_id": [sid], "hook_event_name": "SessionStart"}).encode()),
        HttpItem("invalid_utf8", "/hooks",
                 b'{"session_id": "\xff\xfe' + secrets.github.encode()
                 + b'", "hook_event_name": "SessionStart"}'),
        HttpItem("deep_nesting", "/hooks", deep),
        HttpItem("nul_bytes", "/hooks", json.dumps(_hook(sid + "\u0000nul", "UserPromptSubmit",
                                                         prompt="a\u0000b")).encode(), refuse=False),
        HttpItem("field_10mb", "/hooks", json.dumps(post_bash).encode(), refuse=False),
        HttpItem("huge_array", "/hooks", json.dumps(huge_array).encode(), refuse=False),
        HttpItem("unknown_hook", "/hooks", json.dumps(_hook(sid, "NoSuchHook")).encode(),
                 refuse=False),
        HttpItem("otlp_garbage_protobuf", "/v1/logs", b"\x0a\xff\xff\xff\xff\x0f garbage",
                 content_type="application/x-protobuf"),
        HttpItem("otlp_invalid_json", "/v1/logs", b'{"resourceLogs": [' + pw.encode()),
        HttpItem("otlp_wrong_types", "/v1/logs", b'{"resourceLogs": "everything"}'),
        HttpItem("otlp_wrong_media_type", "/v1/logs", b"hello", content_type="text/plain"),
        HttpItem("otlp_year_9999_negative_counts", "/v1/logs", json.dumps(year_9999).encode(),
                 refuse=False),
    ]


def raw_items(secrets: Secrets, rng: random.Random) -> list[RawItem]:
    serde = AvroSerde()
    sid = str(uuid.uuid4())
    key = sid.encode()

    def event(event_type: str, payload: dict[str, Any], **kw: Any) -> dict[str, Any]:
        kw.setdefault("timestamp_us", now_us() - 1_000_000)
        return new_event(event_type, sid, payload, **kw)

    good = serde.encode_event(event("file.read", {"path": f"/home/me/.aws/credentials {secrets.aws}"}))
    not_uuid = event("command.executed", {"binary": "git", "args": ["push"], "exit_code": 0})
    not_uuid["event_id"] = f"not-a-uuid {secrets.github}"
    marker = "UTF8MARKER"
    utf8 = serde.encode_event(event("file.write", {"path": f"/src/{marker}.py"}))
    bad_utf8 = utf8.replace(marker.encode(), b"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7\xf6")
    depth = 5_000
    return [
        RawItem("not_avro_text", b"hello password=" + secrets.password.encode(), key, "dlq",
                "bad_magic"),
        RawItem("empty_value", b"", key, "dlq"),
        RawItem("null_value", None, key, "dlq"),
        RawItem("unknown_fingerprint", b"\xc3\x01" + bytes(rng.randrange(256) for _ in range(8))
                + b"body", key, "dlq", "unknown_schema"),
        RawItem("truncated_avro", good[: len(good) // 2], key, "dlq"),
        RawItem("garbage_after_header", good[:10] + bytes(rng.randrange(256) for _ in range(64)),
                key, "dlq"),
        RawItem("json_instead_of_avro", json.dumps({"event_id": str(uuid.uuid4()),
                                                    "secret": secrets.github}).encode(), key, "dlq",
                "bad_magic"),
        RawItem("event_id_not_uuid", serde.encode_event(not_uuid), key, "dlq", "rule_violation"),
        RawItem("timestamp_year_9999", serde.encode_event(event(
            "file.write", {"path": "/a"}, timestamp_us=253_402_300_799_000_000)), key, "dlq",
            "rule_violation"),
        RawItem("negative_count", serde.encode_event(event(
            "file.write", {"path": "/a", "lines_added": -5})), key, "dlq", "rule_violation"),
        RawItem("invalid_utf8_in_avro", bad_utf8, key, "dlq"),
        RawItem("huge_array", serde.encode_event(event(
            "command.executed", {"binary": "ls", "args": [f"a{i}" for i in range(300_000)],
                                 "exit_code": 0})), key, "any"),
        RawItem("field_10mb", serde.encode_event(event(
            "command.executed", {"binary": "cat", "args": [], "exit_code": 0,
                                 "stdout_excerpt": "log line\n" * 1_100_000
                                 + f"token {secrets.github}\n"})), key, "any"),
        RawItem("nul_bytes", serde.encode_event(event(
            "file.write", {"path": "/a\u0000b/" + secrets.github})), key, "any"),
        RawItem("deep_nesting_json", serde.encode_event(event(
            "other", {"name": "deep", "json": "[" * depth + "]" * depth})), key, "dlq",
            "rule_violation"),
        RawItem("no_key", good, None, "any"),
        RawItem("wrong_key", good, b"someone-else", "any"),
    ]
