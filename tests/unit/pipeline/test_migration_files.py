from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.migrations import MIGRATIONS_DIR, load_migrations, split_statements


def test_split_statements_drops_comments_and_blank_parts() -> None:
    sql = "-- header\nCREATE TABLE a (x UInt8) ENGINE = Memory;\n\n-- note\nSELECT 1;\n"
    assert split_statements(sql) == ("CREATE TABLE a (x UInt8) ENGINE = Memory", "SELECT 1")


def test_misnamed_or_duplicate_versions_are_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;\n")
    (tmp_path / "0001_b.sql").write_text("SELECT 2;\n")
    with pytest.raises(ValueError, match="duplicate"):
        load_migrations(tmp_path)
    (tmp_path / "0001_b.sql").rename(tmp_path / "bad-name.sql")
    with pytest.raises(ValueError, match=r"0001_name\.sql"):
        load_migrations(tmp_path)


def test_shipped_migrations_avoid_features_clickhouse_18_16_lacks() -> None:
    forbidden = ("DateTime64", "TTL ", "CODEC(", "INDEX ", "JSONExtract", "toStartOfInterval",
                 "Map(", "async_insert", "now64")
    for mig in load_migrations(MIGRATIONS_DIR):
        for stmt in mig.statements:
            for word in forbidden:
                assert word not in stmt, f"{mig.name} uses {word!r}, which ClickHouse 18.16 lacks"
