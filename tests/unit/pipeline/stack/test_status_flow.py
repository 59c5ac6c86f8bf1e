"""`agentwatch status` lag and throughput: the arithmetic and the group list, without Kafka."""

from __future__ import annotations

import pytest

from pipeline.settings import Settings
from pipeline.stack.lag import consumer_groups, partition_lag
from pipeline.stack.throughput import THROUGHPUT_COUNTERS, counter_total, measure_throughput

METRICS = """# HELP agentwatch_worker_messages_total Ingest messages
# TYPE agentwatch_worker_messages_total counter
agentwatch_worker_messages_total{outcome="published"} 120.0
agentwatch_worker_messages_total{outcome="dead_lettered"} 3.0
agentwatch_worker_messages_created{outcome="published"} 1.7e9
agentwatch_worker_messages_total_extra 99.0
"""


def test_lag_sums_end_minus_committed_and_counts_uncommitted_from_the_log_start() -> None:
    lag, seen = partition_lag(committed={0: 90, 1: -1001}, start={0: 0, 1: 40}, end={0: 100, 1: 50})
    assert (lag, seen) == (10 + 10, 1)


def test_lag_never_goes_negative_and_ignores_partitions_the_topic_does_not_have() -> None:
    # A committed offset past the read_committed end (records of an open transaction).
    lag, seen = partition_lag(committed={0: 105, 7: 3}, start={0: 0}, end={0: 100})
    assert (lag, seen) == (0, 1)


def test_consumer_groups_follow_the_settings() -> None:
    settings = Settings(worker={"app_id": "w"}, clickhouse_sink={"group_id": "ch"},
                        archive={"consumer_group": "ar"}, alerts={"consumer_group": "al"},
                        topics={"ingest": "i", "events": "e", "patterns": "p", "dlq": "d"})
    got = {(g.component, g.group, g.topic) for g in consumer_groups(settings)}
    assert got == {("worker", "w-ingest", "i"), ("worker", "w", "e"), ("clickhouse-sink", "ch", "e"),
                   ("clickhouse-sink", "ch-patterns", "p"), ("clickhouse-sink", "ch-dlq", "d"),
                   ("archive-sink", "ar", "e"), ("alerts", "al", "p")}
    lean = Settings(clickhouse_sink={"load_patterns": False, "load_dead_letters": False})
    assert [g.component for g in consumer_groups(lean)].count("clickhouse-sink") == 1


def test_counter_total_sums_every_labelled_sample_of_that_counter_only() -> None:
    assert counter_total(METRICS, "agentwatch_worker_messages_total") == 123.0
    assert counter_total(METRICS, "agentwatch_collector_events_received_total") is None


def test_every_long_running_component_has_a_throughput_counter() -> None:
    from pipeline.stack.components import COMPONENTS

    assert {c.name for c in COMPONENTS} <= set(THROUGHPUT_COUNTERS)


def test_throughput_is_the_difference_between_two_scrapes_over_the_measured_time() -> None:
    settings = Settings()
    worker_url = "http://127.0.0.1:6066/metrics"
    values = iter([10.0, 25.0])
    clock = iter([100.0, 102.5])

    def scrape(url: str) -> str | None:
        if url == worker_url:
            return f"agentwatch_worker_messages_total{{outcome=\"published\"}} {next(values)}\n"
        return None  # every other component is down

    slept: list[float] = []
    got = measure_throughput(settings, ["worker", "collector"], 2.5, scrape=scrape,
                             clock=lambda: next(clock), sleep=slept.append)
    assert slept == [2.5]
    by_name = {t.component: t for t in got}
    assert set(by_name) == {"worker", "collector"}
    assert by_name["worker"].total == 25.0
    assert by_name["worker"].per_s == pytest.approx(6.0)
    assert by_name["collector"].total is None and by_name["collector"].per_s is None


def test_a_counter_reset_between_scrapes_is_not_a_negative_rate() -> None:
    values = iter([50.0, 5.0])
    clock = iter([0.0, 1.0])
    got = measure_throughput(
        Settings(), ["worker"], 1.0,
        scrape=lambda _url: f"agentwatch_worker_messages_total {next(values)}\n",
        clock=lambda: next(clock), sleep=lambda _s: None)
    assert got[0].per_s == 0.0 and got[0].total == 5.0
