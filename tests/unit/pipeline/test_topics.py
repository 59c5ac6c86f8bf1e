from __future__ import annotations

from pipeline.settings import TopicSettings
from pipeline.topics import topic_specs


def test_every_pipeline_topic_is_specified_once() -> None:
    specs = topic_specs(TopicSettings())
    names = [s.name for s in specs]
    assert names == [
        "agent.telemetry.ingest", "agent.telemetry.events", "agent.telemetry.widgets",
        "agent.telemetry.patterns", "agent.telemetry.dlq", "agent.telemetry.replay",
    ]


def test_partitions_replication_and_configs_follow_settings() -> None:
    specs = topic_specs(TopicSettings(partitions=12, replication_factor=3, min_insync_replicas=2,
                                      ingest="custom.ingest"))
    assert all(s.partitions == 12 and s.replication_factor == 3 for s in specs)
    assert all(s.config["min.insync.replicas"] == "2" for s in specs)
    by_name = {s.name: s for s in specs}
    assert "custom.ingest" in by_name
    assert by_name["agent.telemetry.widgets"].config["cleanup.policy"] == "compact,delete"
