"""S3 outage mid-run: the archive sink writes to a private bucket of the shared S3 endpoint through
a proxy the test cuts while simulated sessions flow, then restores. The sink must keep its batch,
retry, and end with complete recordings (no duplicate lines), as ClickHouse does."""

from __future__ import annotations

import shutil
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from reliability_harness import Pipeline, wait_until
from reliability_support import (
    assert_exact,
    canaries_of,
    ch_event_ids,
    downstream_places,
    drive,
    expected_per_session,
    find_canaries,
)
from tcp_proxy import TcpProxy

from producers.simulator.run import generate

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

PREFIX = "recordings"


def _s3(endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="agentwatch", aws_secret_access_key="agentwatch")


@pytest.fixture
def bucket(s3_endpoint: str) -> Iterator[str]:
    name = f"rel-{uuid.uuid4().hex[:12]}"
    yield name
    s3 = _s3(s3_endpoint)
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
            for obj in page.get("Contents", []):
                s3.delete_object(Bucket=name, Key=obj["Key"])
        s3.delete_bucket(Bucket=name)
    except Exception:  # the sink may never have created it
        pass


@pytest.fixture
def s3_proxy(s3_endpoint: str) -> Iterator[TcpProxy]:
    url = urllib.parse.urlsplit(s3_endpoint)
    proxy = TcpProxy(url.hostname or "127.0.0.1", url.port or 80)
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def component_env(s3_proxy: TcpProxy, bucket: str) -> dict[str, dict[str, str]]:
    return {"archive_sink": {"AGENTWATCH_ARCHIVE__TARGET": f"s3://{bucket}/{PREFIX}",
                             "AGENTWATCH_ARCHIVE__CREATE_BUCKET": "true",
                             "AGENTWATCH_S3__ENDPOINT_URL": f"http://127.0.0.1:{s3_proxy.port}"}}


def _mirror(endpoint: str, bucket: str, dest: Path) -> None:
    """The bucket's objects under PREFIX as files in ``dest`` (the readers work on folders)."""
    s3 = _s3(endpoint)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    try:
        pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                   Prefix=f"{PREFIX}/"))
    except s3.exceptions.NoSuchBucket:
        return
    for page in pages:
        for obj in page.get("Contents", []):
            path = dest / obj["Key"][len(PREFIX) + 1:]
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                path.write_bytes(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
            except s3.exceptions.NoSuchKey:
                continue  # compaction deleted the segment between the listing and the read


def test_s3_outage_mid_run_loses_and_duplicates_nothing(
    pipeline: Pipeline, s3_proxy: TcpProxy, s3_endpoint: str, bucket: str,
) -> None:
    pipeline.sync_archive = lambda: _mirror(s3_endpoint, bucket, pipeline.archive_dir)
    scripts = generate(4, "everything", seed=f"s3-outage-{uuid.uuid4().hex}")
    sink = pipeline.components["archive_sink"]
    outcome: dict[str, Any] = {}

    def send() -> None:
        try:
            outcome["stats"] = drive(pipeline.collector_url, scripts, rate=80.0)
        except BaseException as exc:
            outcome["error"] = exc

    sender = threading.Thread(target=send)
    sender.start()
    wait_until(lambda: sum(map(len, ch_event_ids(pipeline).values())) >= 30, 60,
               "the run to be under way")
    s3_proxy.cut()
    try:
        failures = "agentwatch_sink_flush_failures_total{"
        wait_until(lambda: sink.metric_sum(failures) >= 1, 90, "the archive sink to notice the outage")
        assert sender.is_alive(), "the outage came after the end of the run"
        assert sink.alive() and sink.health().get("healthy"), sink.tail()
        sender.join(180)
        assert not sender.is_alive() and "error" not in outcome, outcome.get("error")
    finally:
        s3_proxy.restore()
    assert_exact(pipeline, expected_per_session(scripts))
    codes = pipeline.stop()
    assert all(code == 0 for code in codes.values()), codes
    leaks = find_canaries(downstream_places(pipeline), canaries_of(scripts))
    assert not leaks, f"canaries downstream of redaction: {leaks[:10]}"
