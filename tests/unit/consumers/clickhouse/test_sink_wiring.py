"""Wiring of `agentwatch sink clickhouse`: loaders chosen by settings, typed decoders, the DLQ
loader's own dead letters."""

from __future__ import annotations

import logging

import pytest

from consumers.clickhouse.sink import LoggedDeadLetters, _loaders, decoder
from pipeline.errors import UnknownSchemaError
from pipeline.model import PATTERN_ALERT, TELEMETRY_EVENT, new_event
from pipeline.serde import AvroSerde
from pipeline.settings import load_settings


def test_three_loaders_by_default_with_their_own_groups() -> None:
    settings = load_settings(clickhouse_sink={"group_id": "g"})
    loaders = {loader.name: loader for loader in _loaders(settings)}
    assert set(loaders) == {"telemetry_events", "pattern_alerts", "dead_letters"}
    assert loaders["telemetry_events"].topic == settings.topics.events
    assert [loader.group_id for loader in loaders.values()] == ["g", "g-patterns", "g-dlq"]
    assert loaders["telemetry_events"].with_sessions
    assert not loaders["dead_letters"].dlq_to_kafka  # never produces back to the topic it reads


def test_optional_loaders_can_be_switched_off() -> None:
    settings = load_settings(clickhouse_sink={"load_patterns": False, "load_dead_letters": False})
    assert [loader.name for loader in _loaders(settings)] == ["telemetry_events"]


def test_a_decoder_accepts_only_its_record_type() -> None:
    serde = AvroSerde()
    raw = serde.encode_event(new_event("file.read", "s", {"path": "x"}))
    assert decoder(serde, TELEMETRY_EVENT)(raw)["session_id"] == "s"
    with pytest.raises(UnknownSchemaError):
        decoder(serde, PATTERN_ALERT)(raw)


def test_the_dlq_loader_logs_what_it_cannot_load(caplog: pytest.LogCaptureFixture) -> None:
    sink = LoggedDeadLetters()
    with caplog.at_level(logging.ERROR):
        sink.publish({"error_kind": "sink_rejected", "error_message": "bad"}, None)
        sink.flush(1.0)
    assert "could not be loaded" in caplog.text
