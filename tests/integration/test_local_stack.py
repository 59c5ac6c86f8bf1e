"""The real services answer: a message through Kafka, a row through ClickHouse, an object through S3."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import boto3
import pytest
from confluent_kafka import Consumer, Producer

from pipeline.migrations import apply_migrations, client
from pipeline.settings import ClickHouseSettings

pytestmark = pytest.mark.integration


def test_kafka_produce_and_consume(kafka_bootstrap: str, kafka_topic: Callable[..., str]) -> None:
    topic = kafka_topic("stack")
    payload = uuid.uuid4().bytes
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    producer.produce(topic, key=b"sess-1", value=payload)
    assert producer.flush(30) == 0

    consumer = Consumer({
        "bootstrap.servers": kafka_bootstrap,
        "group.id": f"g-{uuid.uuid4().hex}",
        "auto.offset.reset": "earliest",
    })
    consumer.subscribe([topic])
    try:
        msg = None
        for _ in range(60):
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                break
        assert msg is not None and msg.error() is None
        assert msg.key() == b"sess-1"
        assert msg.value() == payload
    finally:
        consumer.close()


def test_clickhouse_write_and_read(clickhouse: ClickHouseSettings, clickhouse_db: str) -> None:
    conn = client(clickhouse, database=clickhouse_db)
    conn.execute("CREATE TABLE t (id UInt64, name String) ENGINE = MergeTree ORDER BY id")
    conn.execute("INSERT INTO t (id, name) VALUES", [(1, "alpha"), (2, "beta")])
    assert conn.execute("SELECT id, name FROM t ORDER BY id") == [(1, "alpha"), (2, "beta")]
    conn.disconnect()


def test_migrations_are_recorded_and_idempotent(
    clickhouse: ClickHouseSettings, clickhouse_db: str, tmp_path: object
) -> None:
    from pathlib import Path

    mig_dir = Path(str(tmp_path))
    (mig_dir / "0001_first.sql").write_text(
        "CREATE TABLE {database}.a (x UInt8) ENGINE = MergeTree ORDER BY x;\n"
        "-- a comment line\n"
        "CREATE TABLE {database}.b (s LowCardinality(String)) ENGINE = MergeTree ORDER BY s;\n"
    )
    assert apply_migrations(clickhouse, clickhouse_db, mig_dir) == ["0001_first"]
    assert apply_migrations(clickhouse, clickhouse_db, mig_dir) == []
    conn = client(clickhouse, database=clickhouse_db)
    tables = {row[0] for row in conn.execute("SHOW TABLES")}
    assert {"a", "b", "schema_migrations"} <= tables
    conn.disconnect()


def test_s3_put_and_get(s3_endpoint: str, unique_name: Callable[[str], str]) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    bucket = unique_name("bucket").replace("_", "-")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="sessions/x.jsonl.gz", Body=b"hello")
    body = s3.get_object(Bucket=bucket, Key="sessions/x.jsonl.gz")["Body"].read()
    assert body == b"hello"
