"""Versioned, idempotent ClickHouse migrations from ``deploy/clickhouse/migrations/NNNN_name.sql``.

Applied versions are recorded in ``schema_migrations``; a file runs once per database. Files hold
statements separated by lines ending in ``;``. ``{database}`` in a file is replaced by the target
database name, so tests can migrate a throwaway database. Every statement must run on
ClickHouse 18.16 and on current servers (see LOCAL_STACK_NOTES.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import TransientError
from pipeline.settings import REPO_ROOT, ClickHouseSettings

MIGRATIONS_DIR = REPO_ROOT / "deploy" / "clickhouse" / "migrations"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# LowCardinality needs this on 18.16 at CREATE time; newer servers accept and ignore it.
CREATE_SETTINGS = {"allow_experimental_low_cardinality_type": 1}


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise ValueError(f"migration file name must look like 0001_name.sql: {path.name}")
        found.append(Migration(int(match.group(1)), path.stem, split_statements(path.read_text())))
    versions = [m.version for m in found]
    if len(versions) != len(set(versions)):
        raise ValueError(f"duplicate migration versions in {directory}")
    return found


def split_statements(sql: str) -> tuple[str, ...]:
    lines = [ln for ln in sql.splitlines() if not ln.strip().startswith("--")]
    parts = "\n".join(lines).split(";\n")
    return tuple(p.strip().rstrip(";").strip() for p in parts if p.strip().rstrip(";").strip())


def client(ch: ClickHouseSettings, database: str = "default", **kwargs: Any) -> Any:
    """A clickhouse-driver client; imported lazily so light commands stay light."""
    from clickhouse_driver import Client

    return Client(
        host=ch.host,
        port=ch.port,
        user=ch.user,
        password=ch.password.get_secret_value(),
        database=database,
        connect_timeout=5,
        send_receive_timeout=60,
        **kwargs,
    )


def apply_migrations(
    ch: ClickHouseSettings,
    database: str | None = None,
    directory: Path = MIGRATIONS_DIR,
) -> list[str]:
    """Create the database if needed and apply pending migrations; returns names applied."""
    from clickhouse_driver.errors import Error as ClickHouseError

    db = database or ch.database
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", db):
        raise ValueError(f"invalid ClickHouse database name: {db!r}")
    conn = client(ch)
    try:
        conn.execute(f"CREATE DATABASE IF NOT EXISTS {db}")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations "
            "(version UInt32, name String, applied_at DateTime DEFAULT now()) "
            "ENGINE = ReplacingMergeTree ORDER BY version"
        )
        done = {row[0] for row in conn.execute(f"SELECT version FROM {db}.schema_migrations")}
        applied: list[str] = []
        for mig in load_migrations(directory):
            if mig.version in done:
                continue
            for stmt in mig.statements:
                conn.execute(stmt.replace("{database}", db), settings=CREATE_SETTINGS)
            conn.execute(
                f"INSERT INTO {db}.schema_migrations (version, name) VALUES",
                [(mig.version, mig.name)],
            )
            applied.append(mig.name)
        return applied
    except (ClickHouseError, OSError, EOFError) as exc:
        raise TransientError(f"ClickHouse migration failed: {exc}") from exc
    finally:
        # Also on the error path: an unclosed socket outlives the call (and fails pytest's
        # unraisable-exception check).
        conn.disconnect()
