"""Wiring shared by the CLI and the gateway: build an ``Eraser`` from settings, audit directly.

The gateway records through its buffered ``AuditLog``; the CLI has no gateway, so it inserts
its one audit row itself, in the same table and shape.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from consumers.archive.targets import ArchiveTarget
from consumers.privacy.erase import Eraser, KafkaTombstoner, changelog_topics
from pipeline.settings import Settings

AUDIT_COLUMNS = ("at", "at_us", "action", "access_type", "user_id", "role", "session_id",
                 "resource", "client_addr", "user_agent", "status", "gateway")


def archive_target(settings: Settings) -> ArchiveTarget:
    from consumers.archive.targets import open_target

    return open_target(settings.archive_target, settings.s3, settings.archive)


def eraser(settings: Settings, conn: Any, target: ArchiveTarget | None, *,
           kafka: bool = True) -> Eraser:
    return Eraser(
        conn=conn, database=settings.clickhouse.database, target=target,
        tombstoner=KafkaTombstoner(settings.kafka.client_config()) if kafka else None,
        widgets_topic=settings.topics.widgets,
        changelogs=changelog_topics(settings.worker.app_id),
        mutation_timeout_s=settings.privacy.mutation_timeout_s)


def insert_audit(conn: Any, database: str, *, action: str, access_type: str, actor: str,
                 role: str, resource: str, session_id: str = "", status: int = 200) -> None:
    now_us = time.time_ns() // 1000
    conn.execute(f"INSERT INTO {database}.audit_log ({', '.join(AUDIT_COLUMNS)}) VALUES",
                 [(now_us // 1_000_000, now_us, action, access_type, actor, role, session_id,
                   resource[:2000], "", "agentwatch-cli", status, socket.gethostname())])
