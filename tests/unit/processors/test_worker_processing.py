"""EventProcessor.process: every outcome of the worker's per-message work, without Kafka."""

from __future__ import annotations

import functools
import json
import uuid
from typing import Any

import pytest

from pipeline.errors import ErrorKind, TransientError
from pipeline.model import DEAD_LETTER, new_event
from pipeline.redaction import Redactor, redact_raw
from pipeline.serde import AvroSerde
from processors.deadletters import STAGE, SourceMeta
from processors.truncation import TRUNCATED_METADATA_KEY
from processors.validate import CleanEvent, DeadLetterOut, EventProcessor, Limits

GITHUB_TOKEN = "ghp_" + "Zq8Xw3Lk9Vb2Nm4Pr6Ts1Yu7Ei5Oa0Hc3Jd8"
AWS_KEY = "AKIAQ3EGVRZ7LMNOPQ2T"
SECRETS = (GITHUB_TOKEN, AWS_KEY, "hunter2-very-secret")
META = SourceMeta("agent.telemetry.ingest", 3, 1234, b"sess-1")
NOW_US = 1_800_000_000_000_000


@pytest.fixture(scope="module")
def serde() -> AvroSerde:
    return AvroSerde()


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor()


def make_processor(serde: AvroSerde, redactor: Any, raw_redactor: Redactor | None = None,
                   **limits: Any) -> EventProcessor:
    lim = Limits(**{"excerpt_chars": 2048, **limits})
    return EventProcessor(
        serde, redactor,
        functools.partial(redact_raw, redactor=raw_redactor or redactor, max_chars=lim.excerpt_chars),
        lim, clock=lambda: NOW_US,
    )


@pytest.fixture(scope="module")
def processor(serde: AvroSerde, redactor: Redactor) -> EventProcessor:
    return make_processor(serde, redactor)


def event(event_type: str = "command.executed", payload: Any = None, **kw: Any) -> dict[str, Any]:
    body = payload if payload is not None else {"binary": "pytest", "exit_code": 0}
    kw.setdefault("timestamp_us", NOW_US - 1_000_000)
    return new_event(event_type, "sess-1", body, **kw)


def dead(outcome: Any, serde: AvroSerde) -> dict[str, Any]:
    assert isinstance(outcome, DeadLetterOut), outcome
    name, record = serde.decode(outcome.value)
    assert name == DEAD_LETTER
    assert record == outcome.record
    assert record["stage"] == STAGE
    assert (record["source_topic"], record["source_partition"], record["source_offset"]) == (
        META.topic, META.partition, META.offset,
    )
    assert record["original_bytes"] is None
    assert record["first_seen"] == NOW_US
    return record


def clean(outcome: Any, serde: AvroSerde) -> dict[str, Any]:
    assert isinstance(outcome, CleanEvent), getattr(outcome, "record", outcome)
    decoded = serde.decode_event(outcome.value)
    assert outcome.key == decoded["session_id"].encode()
    assert outcome.event_id == decoded["event_id"]
    return decoded


def assert_no_secret(blob: bytes | str) -> None:
    data = blob.encode() if isinstance(blob, str) else blob
    for secret in SECRETS:
        assert secret.encode() not in data


# --- good events ------------------------------------------------------------------------------


def test_good_event_passes_redacted_and_keyed_by_session(processor: EventProcessor,
                                                        serde: AvroSerde) -> None:
    ev = event(payload={"binary": "git", "args": ["push", f"https://me:{GITHUB_TOKEN}@github.com/o/r"],
                        "exit_code": 0, "stdout_excerpt": f"AWS_ACCESS_KEY_ID={AWS_KEY}"},
               metadata={"git.branch": "main", "git.commit": "3f2c1a9",
                         "git.remote": "git@github.com:o/r.git"})
    out = processor.process(serde.encode_event(ev), META)
    got = clean(out, serde)
    assert_no_secret(out.value)
    assert got["event_id"] == ev["event_id"]
    assert got["metadata"] == ev["metadata"]  # git metadata kept as sent
    assert sorted(got["redacted_fields"]) == ["/payload/args/1", "/payload/stdout_excerpt"]
    assert isinstance(out, CleanEvent) and out.redacted == 2 and out.truncated == ()
    assert got["payload"][1]["args"][0] == "push"


def test_event_without_anything_to_change_round_trips_unchanged(processor: EventProcessor,
                                                               serde: AvroSerde) -> None:
    ev = event("file.write", {"path": "src/app.py", "lines_added": 3})
    raw = serde.encode_event(ev)
    out = processor.process(raw, META)
    assert clean(out, serde) == ev
    assert isinstance(out, CleanEvent) and out.value == raw


# --- enrichment -------------------------------------------------------------------------------


def test_missing_agent_is_taken_from_the_payload(processor: EventProcessor, serde: AvroSerde) -> None:
    ev = event("agent.task.started", {"agent_name": "code-reviewer"}, agent="")
    got = clean(processor.process(serde.encode_event(ev), META), serde)
    assert got["agent"] == "code-reviewer"


def test_missing_agent_without_a_name_anywhere_becomes_unknown(processor: EventProcessor,
                                                             serde: AvroSerde) -> None:
    ev = event(agent="")
    got = clean(processor.process(serde.encode_event(ev), META), serde)
    assert got["agent"] == "unknown"


def test_default_severity_is_inferred_from_a_failed_command(processor: EventProcessor,
                                                           serde: AvroSerde) -> None:
    ev = event(payload={"binary": "make", "exit_code": 2}, severity="info")
    got = clean(processor.process(serde.encode_event(ev), META), serde)
    assert got["severity"] == "warning"


def test_producer_severity_is_never_lowered(processor: EventProcessor, serde: AvroSerde) -> None:
    ev = event(payload={"binary": "make", "exit_code": 0}, severity="critical")
    got = clean(processor.process(serde.encode_event(ev), META), serde)
    assert got["severity"] == "critical"


# --- decode errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b"", ErrorKind.TRUNCATED),
        (b"\xc3\x01\x00", ErrorKind.TRUNCATED),
        (b"{\"event_id\": 1}", ErrorKind.BAD_MAGIC),
        (b"\xc3\x02" + bytes(8) + b"body", ErrorKind.BAD_MAGIC),
        (b"\xc3\x01" + bytes.fromhex("0102030405060708") + b"body", ErrorKind.UNKNOWN_SCHEMA),
    ],
    ids=["empty", "header-cut", "json", "bad-magic", "unknown-fingerprint"],
)
def test_undecodable_messages_are_dead_lettered_with_their_kind(
    processor: EventProcessor, serde: AvroSerde, raw: bytes, kind: ErrorKind
) -> None:
    record = dead(processor.process(raw, META), serde)
    assert record["error_kind"] == kind.value
    assert record["session_id"] is None and record["event_id"] is None
    assert f"size={len(raw)}" in record["error_message"]


def test_truncated_body_is_dead_lettered_as_truncated(processor: EventProcessor,
                                                     serde: AvroSerde) -> None:
    raw = serde.encode_event(event())
    record = dead(processor.process(raw[: len(raw) // 2], META), serde)
    assert record["error_kind"] == ErrorKind.TRUNCATED.value


def test_random_garbage_is_dead_lettered_not_raised(processor: EventProcessor,
                                                   serde: AvroSerde) -> None:
    rng = __import__("random").Random(7)
    header = serde.encode_event(event())[:10]
    for n in range(300):
        raw = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        if n % 3 == 0:
            raw = header + raw  # a real header: the body decoder has to cope too
        out = processor.process(raw, META)
        assert isinstance(out, DeadLetterOut)
        assert out.kind in {ErrorKind.DECODE_ERROR, ErrorKind.TRUNCATED, ErrorKind.BAD_MAGIC,
                            ErrorKind.UNKNOWN_SCHEMA}


def test_another_record_type_on_ingest_is_an_unknown_schema(processor: EventProcessor,
                                                           serde: AvroSerde) -> None:
    letter = dead(processor.process(b"x", META), serde)
    record = dead(processor.process(serde.encode(DEAD_LETTER, letter), META), serde)
    assert record["error_kind"] == ErrorKind.UNKNOWN_SCHEMA.value


def test_dead_letter_key_is_the_clean_original_key(processor: EventProcessor) -> None:
    out = processor.process(b"garbage", META)
    assert isinstance(out, DeadLetterOut) and out.key == b"sess-1"
    secret_key = SourceMeta("t", 0, 0, f"token={GITHUB_TOKEN}".encode())
    out = processor.process(b"garbage", secret_key)
    assert isinstance(out, DeadLetterOut) and out.key is None


# --- rule violations --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "kind", "fragment"),
    [
        (lambda e: e.update(event_id="not-a-uuid"), ErrorKind.RULE_VIOLATION, "bad_event_id"),
        (lambda e: e.update(event_type="Bad Type"), ErrorKind.RULE_VIOLATION, "bad_event_type"),
        (lambda e: e.update(timestamp=1_000), ErrorKind.RULE_VIOLATION, "timestamp_too_old"),
        (lambda e: e.update(timestamp=NOW_US + 7200 * 10**6), ErrorKind.RULE_VIOLATION,
         "timestamp_in_future"),
        (lambda e: e.update(session_id=""), ErrorKind.RULE_VIOLATION, "empty_field"),
        (lambda e: e["payload"][1].update(duration_ms=-5), ErrorKind.RULE_VIOLATION,
         "negative_value"),
        (lambda e: e.update(event_type="file.write"), ErrorKind.RULE_VIOLATION, "payload_mismatch"),
    ],
    ids=["event-id", "event-type", "old", "future", "empty-session", "negative", "mismatch"],
)
def test_rule_violations_are_dead_lettered_with_kind_and_ids(
    processor: EventProcessor, serde: AvroSerde, mutate: Any, kind: ErrorKind, fragment: str
) -> None:
    ev = event(payload={"binary": "git", "args": [f"--token={GITHUB_TOKEN}"], "exit_code": 0})
    mutate(ev)
    record = dead(processor.process(serde.encode_event(ev), META), serde)
    assert record["error_kind"] == kind.value
    assert fragment in record["error_message"]
    assert record["event_id"] == (ev["event_id"] or None)
    assert record["session_id"] == (ev["session_id"] or None)
    assert record["original_text"] and '"binary": "git"' in record["original_text"]
    assert_no_secret(serde.encode(DEAD_LETTER, record))


def test_rule_dead_letter_text_is_valid_json_when_short(processor: EventProcessor,
                                                       serde: AvroSerde) -> None:
    ev = event()
    ev["event_id"] = "nope"
    record = dead(processor.process(serde.encode_event(ev), META), serde)
    assert record["original_truncated"] is False
    assert json.loads(record["original_text"])["event_id"] == "nope"


# --- sizes ------------------------------------------------------------------------------------


def test_ten_megabyte_tool_output_is_truncated_with_a_marker(serde: AvroSerde,
                                                            redactor: Redactor) -> None:
    proc = make_processor(serde, redactor, max_field_bytes=4096)
    big = "line of build output\n" * (10 * 1024 * 1024 // 21)
    ev = event(payload={"binary": "make", "exit_code": 0, "stdout_excerpt": big})
    out = proc.process(serde.encode_event(ev), META)
    got = clean(out, serde)
    text = got["payload"][1]["stdout_excerpt"]
    assert text.startswith("line of build output\n")
    assert len(text.encode()) < 4096 + 100
    assert text.endswith(f"…[truncated by agentwatch: {len(big.encode())} bytes in total]")
    assert got["metadata"][TRUNCATED_METADATA_KEY] == "/payload/stdout_excerpt"
    assert isinstance(out, CleanEvent) and out.truncated == ("/payload/stdout_excerpt",)


def test_truncated_json_payload_stays_a_json_document(serde: AvroSerde, redactor: Redactor) -> None:
    proc = make_processor(serde, redactor, max_field_bytes=1024)
    doc = json.dumps({"rows": ["é" * 50] * 200})
    ev = event("custom.thing", {"name": "custom.thing", "json": doc})
    got = clean(proc.process(serde.encode_event(ev), META), serde)
    body = json.loads(got["payload"][1]["json"])
    assert body["agentwatch_truncated"] is True
    assert body["original_bytes"] == len(doc.encode())
    assert doc.startswith(body["excerpt"].rsplit("…", 1)[0])


def test_secret_across_the_cut_is_redacted_not_half_kept(serde: AvroSerde, redactor: Redactor) -> None:
    proc = make_processor(serde, redactor, max_field_bytes=1024)
    text = "x" * 1010 + " " + GITHUB_TOKEN + " " + "y" * 5000
    ev = event(payload={"binary": "env", "exit_code": 0, "stdout_excerpt": text})
    out = proc.process(serde.encode_event(ev), META)
    got = clean(out, serde)
    kept = got["payload"][1]["stdout_excerpt"]
    assert "ghp_" not in kept and GITHUB_TOKEN[:10] not in kept
    assert "/payload/stdout_excerpt" in got["redacted_fields"]


def test_event_too_large_after_truncation_is_dead_lettered(serde: AvroSerde,
                                                          redactor: Redactor) -> None:
    proc = make_processor(serde, redactor, max_field_bytes=1024, max_event_bytes=64 * 1024)
    ev = event(payload={"binary": "find", "exit_code": 0,
                        "args": [f"arg-{i}-" + "z" * 100 for i in range(2000)]})
    record = dead(proc.process(serde.encode_event(ev), META), serde)
    assert record["error_kind"] == ErrorKind.OVERSIZED.value
    assert "65536" in record["error_message"]
    assert record["original_truncated"] is True
    assert len(record["original_text"]) <= 2048
    assert record["event_id"] == ev["event_id"]


# --- secrets never reach a dead letter --------------------------------------------------------


def test_garbage_with_secrets_leaves_only_hash_and_redacted_excerpt(processor: EventProcessor,
                                                                   serde: AvroSerde) -> None:
    raw = (b"\x00\x01garbage AWS_ACCESS_KEY_ID=" + AWS_KEY.encode() + b"\xff\xfe password="
           + b"hunter2-very-secret\x00 " + GITHUB_TOKEN.encode() + b"\x00\xff" * 16)
    out = processor.process(raw, META)
    record = dead(out, serde)
    assert_no_secret(out.value)
    import hashlib
    assert hashlib.sha256(raw).hexdigest() in record["error_message"]
    assert record["original_text"] and "garbage" in record["original_text"]
    assert record["original_text"].isprintable()


def test_half_decodable_event_with_secrets_is_redacted_in_its_dead_letter(
    processor: EventProcessor, serde: AvroSerde
) -> None:
    ev = event(payload={"binary": "curl", "exit_code": 0,
                        "args": ["-H", f"Authorization: Bearer {GITHUB_TOKEN}"],
                        "stderr_excerpt": f"password=hunter2-very-secret key {AWS_KEY}"})
    raw = serde.encode_event(ev)
    out = processor.process(raw[:-3], META)  # cut inside the body: undecodable
    record = dead(out, serde)
    assert record["error_kind"] == ErrorKind.TRUNCATED.value
    assert_no_secret(out.value)
    assert "curl" in (record["original_text"] or "")


def test_long_dead_letter_excerpt_is_bounded_and_marked(serde: AvroSerde, redactor: Redactor) -> None:
    proc = make_processor(serde, redactor, excerpt_chars=100)
    record = dead(proc.process(b"\x07" + b"A" * 5000, META), serde)
    assert record["original_truncated"] is True
    assert len(record["original_text"]) < 200


# --- failures that are not the message's fault -------------------------------------------------


class _BrokenRedactor:
    def __init__(self, inner: Redactor) -> None:
        self._inner = inner

    def redact_event(self, event: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("bug in a rule")

    def redact_text(self, text: str) -> tuple[str, list[str]]:
        return self._inner.redact_text(text)


def test_a_bug_on_one_message_dead_letters_it_as_internal(serde: AvroSerde,
                                                          redactor: Redactor) -> None:
    proc = make_processor(serde, _BrokenRedactor(redactor), redactor)
    ev = event(payload={"binary": "x", "exit_code": 0, "stdout_excerpt": GITHUB_TOKEN})
    out = proc.process(serde.encode_event(ev), META)
    record = dead(out, serde)
    assert record["error_kind"] == ErrorKind.INTERNAL.value
    assert "RuntimeError: bug in a rule" in record["error_message"]
    assert_no_secret(out.value)


class _RegistryDown(AvroSerde):
    def decode_event(self, data: bytes) -> dict[str, Any]:
        raise TransientError("schema registry unreachable")


def test_transient_errors_propagate_so_the_batch_is_retried(redactor: Redactor) -> None:
    proc = make_processor(_RegistryDown(), redactor)
    with pytest.raises(TransientError):
        proc.process(b"\x00\x00\x00\x00\x01body", META)


def test_processing_is_deterministic_and_never_mutates_input(processor: EventProcessor,
                                                             serde: AvroSerde) -> None:
    ev = event(payload={"binary": "git", "args": [GITHUB_TOKEN], "exit_code": 1},
               event_id=str(uuid.uuid4()))
    raw = serde.encode_event(ev)
    first = processor.process(raw, META)
    second = processor.process(raw, META)
    assert first == second
