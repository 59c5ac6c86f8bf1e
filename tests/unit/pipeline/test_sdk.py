from __future__ import annotations

import json
from typing import Any

import pytest

from pipeline import sdk
from pipeline.errors import BackpressureError, ConfigError, ErrorKind, ValidationError
from pipeline.serde import AvroSerde
from pipeline.settings import KafkaSettings


class ListPublisher:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.flushed = 0

    def publish(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def flush(self, timeout: float = 10.0) -> int:
        self.flushed += 1
        return 0


@pytest.fixture
def emitter() -> tuple[sdk.Emitter, ListPublisher]:
    pub = ListPublisher()
    return sdk.Emitter(pub, session_id="sess-1", agent="planner"), pub


def test_known_family_fields_go_to_the_payload(emitter: tuple[sdk.Emitter, ListPublisher]) -> None:
    em, pub = emitter
    event = em.emit_event("file.write", path="/src/a.py", lines_added=3, task_id="t-1",
                          metadata={"attempt": 2})
    assert pub.events == [event]
    assert event["payload"][0] == "dev.agentwatch.FileEvent"
    assert event["payload"][1]["path"] == "/src/a.py" and event["payload"][1]["lines_added"] == 3
    assert (event["session_id"], event["agent"], event["source"]) == ("sess-1", "planner", "sdk")
    assert event["task_id"] == "t-1" and event["metadata"] == {"attempt": "2"}
    serde = AvroSerde()
    assert serde.decode_event(serde.encode_event(event)) == event


def test_custom_types_carry_their_fields_as_json(emitter: tuple[sdk.Emitter, ListPublisher]) -> None:
    em, _ = emitter
    event = em.emit_event("deploy.finished", env="prod", replicas=3, session_id="other")
    name, body = event["payload"]
    assert name == "dev.agentwatch.OtherEvent" and body["name"] == "deploy.finished"
    assert json.loads(body["json"]) == {"env": "prod", "replicas": 3}
    assert event["session_id"] == "other"


def test_unknown_field_of_a_known_family_is_an_error(
    emitter: tuple[sdk.Emitter, ListPublisher],
) -> None:
    em, pub = emitter
    with pytest.raises(ValidationError) as info:
        em.emit_event("file.write", path="/a", colour="red")
    assert "colour" in str(info.value) and info.value.kind is ErrorKind.SCHEMA_VIOLATION
    assert pub.events == []


def test_contract_rules_apply_before_publishing(emitter: tuple[sdk.Emitter, ListPublisher]) -> None:
    em, pub = emitter
    with pytest.raises(ValidationError):
        em.emit_progress(150.0)
    with pytest.raises(ValidationError):
        em.emit_event("file.write")  # path is required
    with pytest.raises(ValidationError):
        em.emit_event("Not A Type")
    assert pub.events == []


def test_progress(emitter: tuple[sdk.Emitter, ListPublisher]) -> None:
    em, _ = emitter
    event = em.emit_progress(40.0, "running tests", phase="testing", task_id="t-9")
    assert event["event_type"] == "agent.task.progress" and event["severity"] == "debug"
    body = event["payload"][1]
    assert (body["progress_pct"], body["current_step"], body["phase"]) == (40.0, "running tests",
                                                                          "testing")


def _raise() -> None:
    raise KeyError("missing-config")


def test_error_from_an_exception_names_the_raise_site(
    emitter: tuple[sdk.Emitter, ListPublisher],
) -> None:
    em, _ = emitter
    try:
        _raise()
    except KeyError as exc:
        event = em.emit_error(exc, task_id="t-2")
    assert event["event_type"] == "agent.task.failed" and event["severity"] == "error"
    body = event["payload"][1]
    assert body["error_type"] == "KeyError" and "missing-config" in body["error_message"]
    assert body["error_file"] == __file__
    assert body["error_line"] == _raise.__code__.co_firstlineno + 1
    assert "_raise" in body["error_stacktrace"]


def test_error_from_text(emitter: tuple[sdk.Emitter, ListPublisher]) -> None:
    em, _ = emitter
    event = em.emit_error("disk full", error_type="OSError")
    assert event["payload"][1]["error_message"] == "disk full"
    assert event["payload"][1]["error_type"] == "OSError"


def test_session_id_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    em = sdk.Emitter(ListPublisher())
    monkeypatch.delenv(sdk.SESSION_ENV, raising=False)
    with pytest.raises(ConfigError):
        em.emit_event("deploy.finished")
    monkeypatch.setenv(sdk.SESSION_ENV, "from-env")
    assert em.emit_event("deploy.finished")["session_id"] == "from-env"


def test_explicit_ids_and_times_are_kept(emitter: tuple[sdk.Emitter, ListPublisher]) -> None:
    em, _ = emitter
    eid = "0b7c4d52-43c0-4d0f-9d43-0b1f3b9e2a11"
    event = em.emit_event("user.prompt", event_id=eid, timestamp_us=1_770_000_000_000_000,
                          severity="warning", prompt_length=5)
    assert (event["event_id"], event["timestamp"], event["severity"]) == (
        eid, 1_770_000_000_000_000, "warning")


def test_context_manager_flushes() -> None:
    pub = ListPublisher()
    with sdk.Emitter(pub, session_id="s") as em:
        em.emit_event("deploy.finished")
    assert pub.flushed == 1


class FullQueueProducer:
    """A producer whose local queue never drains."""

    def __init__(self) -> None:
        self.polls = 0

    def produce(self, *args: Any, **kwargs: Any) -> None:
        raise BufferError("queue full")

    def poll(self, timeout: float) -> int:
        self.polls += 1
        return 0

    def flush(self, timeout: float) -> int:
        return 0


def test_full_producer_queue_is_backpressure_not_a_hang() -> None:
    producer = FullQueueProducer()
    pub = sdk.KafkaEventPublisher(KafkaSettings(), "t", AvroSerde(), queue_full_timeout_s=0.3,
                                  producer=producer)
    event = sdk.build_event("deploy.finished", {}, session_id="s")
    with pytest.raises(BackpressureError) as info:
        pub.publish(event)
    assert info.value.retriable and info.value.retry_after > 0
    assert producer.polls >= 3


class RecordingProducer:
    def __init__(self) -> None:
        self.produced: list[dict[str, Any]] = []
        self.callbacks: list[Any] = []

    def produce(self, topic: str, value: bytes, key: bytes, on_delivery: Any) -> None:
        self.produced.append({"topic": topic, "value": value, "key": key})
        self.callbacks.append(on_delivery)

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        for i, callback in enumerate(self.callbacks):
            callback("broker down" if i == 0 else None, None)
        self.callbacks = []
        return 0


def test_publisher_keys_by_session_and_counts_failures() -> None:
    producer = RecordingProducer()
    serde = AvroSerde()
    pub = sdk.KafkaEventPublisher(KafkaSettings(), "ingest-x", serde, producer=producer)
    events = [sdk.build_event("deploy.finished", {}, session_id=f"s{i}") for i in range(3)]
    for event in events:
        pub.publish(event)
    assert [p["key"] for p in producer.produced] == [b"s0", b"s1", b"s2"]
    assert {p["topic"] for p in producer.produced} == {"ingest-x"}
    assert serde.decode_event(producer.produced[1]["value"]) == events[1]
    assert pub.flush(1.0) == 1
    assert (pub.delivered, pub.failed, pub.last_error) == (2, 1, "broker down")
