"""deploy/clickhouse/cluster/: the replicated variant matches the single-node migrations."""

from __future__ import annotations

import re

import pytest

from pipeline.cluster_ddl import CLUSTER_DIR, LOCAL_SUFFIX, convert_statement, render, table_names
from pipeline.migrations import MIGRATIONS_DIR, load_migrations, split_statements

_ENGINE = re.compile(r"^ENGINE = (\w+)\((.*)\)$", re.M)


def _single_node() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(MIGRATIONS_DIR.glob("*.sql"))}


def test_committed_files_are_what_the_generator_derives() -> None:
    committed = {p.name: p.read_text() for p in sorted(CLUSTER_DIR.glob("*.sql"))}
    assert committed == render(), "run: python -m pipeline.cluster_ddl render"


def test_loader_reads_the_cluster_directory_in_order() -> None:
    versions = [m.version for m in load_migrations(CLUSTER_DIR)]
    assert versions == [0] + [m.version for m in load_migrations(MIGRATIONS_DIR)]


@pytest.mark.parametrize("name", sorted(_single_node()))
def test_every_table_has_local_and_distributed_forms(name: str) -> None:
    single_sql = _single_node()[name]
    cluster_sql = (CLUSTER_DIR / name).read_text()
    expected: list[str] = []
    tables = views = 0
    for stmt in split_statements(single_sql):
        created = table_names(stmt)[0]
        if stmt.startswith("CREATE TABLE"):
            expected += [created + LOCAL_SUFFIX, created]
            tables += 1
        else:
            expected.append(created)
            views += 1
    assert table_names(cluster_sql) == expected
    assert len(split_statements(cluster_sql)) == 2 * tables + views
    assert tables > 0


@pytest.mark.parametrize("name", sorted(_single_node()))
def test_engines_are_replicated_or_distributed_over_locals(name: str) -> None:
    single = {table_names(s)[0]: s for s in split_statements(_single_node()[name])}
    for stmt in split_statements((CLUSTER_DIR / name).read_text()):
        assert " ON CLUSTER '{cluster}'" in stmt.splitlines()[0]
        created = table_names(stmt)[0]
        if stmt.startswith("CREATE MATERIALIZED VIEW"):
            refs = re.findall(r"\b(?:TO|FROM) \{database\}\.(\w+)", stmt)
            assert refs and all(r.endswith(LOCAL_SUFFIX) for r in refs), stmt
            continue
        engine, args = _ENGINE.search(stmt).groups()  # type: ignore[union-attr]
        if created.endswith(LOCAL_SUFFIX):
            original = single[created.removesuffix(LOCAL_SUFFIX)]
            original_engine = re.search(r"^ENGINE = (\w+)(?:\((.*)\))?$", original, re.M)
            assert original_engine is not None
            assert engine == "Replicated" + original_engine.group(1)
            zk, replica, *rest = [a.strip() for a in args.split(", ", 2)]
            assert "{shard}" in zk and zk.endswith("{table}'")
            assert replica == "'{replica}'"
            assert rest == ([original_engine.group(2)] if original_engine.group(2) else [])
            # Columns, keys and partitioning are those of the single-node table.
            assert stmt.split("(", 1)[1].split("ENGINE")[0] == original.split("(", 1)[1].split("ENGINE")[0]
        else:
            assert engine == "Distributed"
            assert f"'{created}{LOCAL_SUFFIX}'" in args
            assert f"AS {{database}}.{created}{LOCAL_SUFFIX}" in stmt


def test_loaded_tables_shard_by_kafka_partition() -> None:
    # One partition's rows and its sink_offsets watermark must land on the same shard.
    sql = "\n".join(p.read_text() for p in CLUSTER_DIR.glob("*.sql"))
    for table in ("telemetry_events", "sessions", "pattern_alerts", "dead_letters"):
        assert re.search(rf"'{table}_local', kafka_partition\)", sql), table
    assert re.search(r"'audit_log_local', cityHash64\(session_id\)\)", sql)


def test_unknown_statement_is_refused() -> None:
    with pytest.raises(ValueError):
        convert_statement("ALTER TABLE {database}.x ADD COLUMN y String")
