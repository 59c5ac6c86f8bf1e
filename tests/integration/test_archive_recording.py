"""The archive sink as a real process on real Kafka, writing to a folder or to moto's S3 over HTTP:
restarts (clean and kill -9) and an S3 outage end in exactly one recording per session."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from consumers.archive.compaction import pending_segments
from consumers.archive.jsonl import iter_events
from consumers.archive.layout import RECORDINGS
from consumers.archive.manifest import read_manifest
from consumers.archive.s3_target import S3Target, s3_client
from consumers.archive.targets import ArchiveTarget, FileTarget
from consumers.archive.testing import (
    EventsTopic,
    SinkProcess,
    free_port,
    sample_session,
    wait_for,
)
from pipeline.settings import S3Settings

pytestmark = pytest.mark.integration



def interleave(*sessions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """All events in timestamp order, as concurrent sessions would arrive."""
    return sorted((e for s in sessions for e in s), key=lambda e: e["timestamp"])


def recording_of(target: ArchiveTarget, session_id: str) -> list[dict[str, Any]]:
    manifest = read_manifest(target, session_id)
    assert manifest is not None, f"no manifest for {session_id}"
    keys = [k for k in target.list_keys(RECORDINGS) if k.endswith(f"/{session_id}.jsonl.gz")]
    assert keys == [manifest.key], "exactly one recording object per session"
    data = target.get(manifest.key)
    assert data is not None
    return list(iter_events(data))


@pytest.fixture
def kafka_env(kafka_bootstrap: str, kafka_topic: Callable[..., str],
              unique_name: Callable[[str], str]) -> Iterator[tuple[dict[str, str], EventsTopic]]:
    events = kafka_topic("archive.events", partitions=3)
    dlq = kafka_topic("archive.dlq")
    group = unique_name("archive")
    env = {
        "AGENTWATCH_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "AGENTWATCH_TOPICS__EVENTS": events,
        "AGENTWATCH_TOPICS__DLQ": dlq,
        "AGENTWATCH_ARCHIVE__CONSUMER_GROUP": group,
        "AGENTWATCH_ARCHIVE__SEGMENT_MAX_AGE_S": "0.3",
        "AGENTWATCH_ARCHIVE__SEGMENT_MAX_EVENTS": "200",
        # The broker's minimum: a killed sink's partitions move on after 6 s instead of 30 s.
        "AGENTWATCH_ARCHIVE__SESSION_TIMEOUT_MS": "6000",
        "AGENTWATCH_ARCHIVE_SINK_HTTP__PORT": str(free_port()),
        "AGENTWATCH_LOG_LEVEL": "INFO",
    }
    topic = EventsTopic(kafka_bootstrap, events, group, partitions=3)
    yield env, topic
    topic.close()


def _s3_target(endpoint: str, bucket: str, prefix: str) -> S3Target:
    return S3Target(s3_client(S3Settings(endpoint_url=endpoint)), bucket, prefix)


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_two_hour_session_with_three_restarts_is_one_exact_recording(
    kind: str, kafka_env: tuple[dict[str, str], EventsTopic], s3_endpoint: str, tmp_path: Path,
    unique_name: Callable[[str], str],
) -> None:
    env, topic = kafka_env
    if kind == "file":
        target: ArchiveTarget = FileTarget(tmp_path / "archive")
        env["AGENTWATCH_ARCHIVE__TARGET"] = target.describe()
    else:
        bucket = unique_name("rec").replace("_", "-")[:60]
        target = _s3_target(s3_endpoint, bucket, "recordings")
        env |= {"AGENTWATCH_ARCHIVE__TARGET": f"s3://{bucket}/recordings",
                "AGENTWATCH_S3__ENDPOINT_URL": s3_endpoint,
                "AGENTWATCH_ARCHIVE__CREATE_BUCKET": "true"}
    run = uuid.uuid4().hex[:8]
    # Two hours of event time (one event every 10 s), produced in a few seconds.
    session = sample_session(f"long-{run}", 721, span_s=7200.0)
    others = [sample_session(f"bg{i}-{run}", 90, span_s=7200.0, ended=i % 2 == 0) for i in range(4)]
    stream = interleave(session, *others)
    quarter = len(stream) // 4
    chunks = [stream[:quarter], stream[quarter:2 * quarter], stream[2 * quarter:3 * quarter],
              stream[3 * quarter:]]
    log = tmp_path / "sink.log"

    # Run 1: a quarter of the session, then a clean stop (SIGTERM: flush, commit, close).
    sink = SinkProcess(env, log)
    topic.produce(chunks[0])
    wait_for("run 1 to commit", lambda: topic.committed() == topic.produced)
    sink.terminate()

    # Run 2: killed with SIGKILL while events are still arriving and being written.
    sink = SinkProcess(env, log)
    before = topic.committed()
    feeder = threading.Thread(target=topic.produce, args=(chunks[1], 0.004))
    feeder.start()
    wait_for("run 2 to commit something", lambda: topic.committed() > before)
    sink.kill()
    feeder.join()
    assert topic.committed() < topic.produced, "the kill should land mid-stream"

    # Run 3: resumes from the last commit, catches up, stops cleanly.
    sink = SinkProcess(env, log)
    topic.produce(chunks[2])
    wait_for("run 3 to commit", lambda: topic.committed() == topic.produced)
    sink.terminate()

    # Run 4: the rest, with session.ended.
    sink = SinkProcess(env, log)
    topic.produce(chunks[3])
    wait_for("run 4 to commit", lambda: topic.committed() == topic.produced)
    sink.terminate()

    assert recording_of(target, session[0]["session_id"]) == session
    assert pending_segments(target, session[0]["session_id"]) == []
    for i, other in enumerate(others):
        sid = other[0]["session_id"]
        if i % 2 == 0:
            assert recording_of(target, sid) == other
        else:  # never ended, idle timeout not reached: all there, still as segments
            assert read_manifest(target, sid) is None
            assert pending_segments(target, sid)


class PrivateS3:
    """moto in this test's process on its own port: stoppable without touching the shared one.
    Its objects live in this process, so they survive a stop/start of the HTTP server."""

    def __init__(self) -> None:
        self.port = free_port()
        self.server: Any = None

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self) -> None:
        self.server.stop()
        # moto's stop() leaves the socket listening (connections would hang, not fail).
        self.server._server.server_close()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def test_s3_outage_loses_nothing_and_the_sink_resumes(
    kafka_env: tuple[dict[str, str], EventsTopic], tmp_path: Path, unique_name: Callable[[str], str],
) -> None:
    # The outage lasts ~12 s here (not minutes) to keep the suite fast; the sink's retry backoff
    # is capped at 30 s, so a longer outage only adds waiting, not a different code path.
    s3 = PrivateS3()
    s3.start()
    env, topic = kafka_env
    bucket = unique_name("outage").replace("_", "-")[:60]
    env |= {"AGENTWATCH_ARCHIVE__TARGET": f"s3://{bucket}/a",
            "AGENTWATCH_S3__ENDPOINT_URL": s3.endpoint,
            "AGENTWATCH_ARCHIVE__CREATE_BUCKET": "true"}
    target = _s3_target(s3.endpoint, bucket, "a")
    run = uuid.uuid4().hex[:8]
    session = sample_session(f"outage-{run}", 300, span_s=3600.0)
    other = sample_session(f"other-{run}", 100, span_s=3600.0)
    stream = interleave(session, other)
    half = len(stream) // 2
    sink = SinkProcess(env, tmp_path / "sink.log")
    try:
        topic.produce(stream[:half])
        wait_for("the first half to be archived", lambda: topic.committed() == half)
        s3.stop()
        outage_started = time.monotonic()
        topic.produce(stream[half:])
        wait_for("a failed flush while S3 is down",
                 lambda: sink.metric("agentwatch_sink_flush_failures_total") > 0, timeout_s=30)
        time.sleep(max(0.0, 12.0 - (time.monotonic() - outage_started)))
        # Nothing may be committed while its segments cannot be written.
        assert topic.committed() == half
        assert sink.healthy(), "an S3 outage is not a reason to restart the sink"
        s3.start()
        wait_for("the sink to catch up after S3 is back",
                 lambda: topic.committed() == topic.produced, timeout_s=90)
        sink.terminate()
        assert recording_of(target, session[0]["session_id"]) == session
        assert recording_of(target, other[0]["session_id"]) == other
    finally:
        if sink.proc.poll() is None:
            sink.kill()
        s3.stop()
