"""The command hook's inbox: hooks that reached no collector wait here as one file each.

``agentwatch hook`` writes (atomically: a temporary name, then rename) one file per hook it could
not hand to the collector; the collector drains the folder in name order, which is arrival
order, and deletes each file once its events are in the spool. A file is one JSON header line
(``received_us``, ``delivery_id``) followed by the raw hook body, untouched.

Standard library only: the command hook imports this on every tool call of an agent.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

SUFFIX = ".hook"
REJECTED_DIR = "rejected"


@dataclass(frozen=True)
class InboxItem:
    path: Path
    received_us: int
    delivery_id: str | None
    body: bytes


def write(inbox: Path, body: bytes, received_us: int, delivery_id: str) -> Path:
    inbox.mkdir(parents=True, exist_ok=True)
    name = f"{received_us:020d}-{os.getpid()}-{delivery_id[:8]}"
    header = json.dumps({"received_us": received_us, "delivery_id": delivery_id}).encode()
    tmp = inbox / f".{name}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(header + b"\n" + body)
    final = inbox / f"{name}{SUFFIX}"
    os.replace(tmp, final)
    return final


def pending(inbox: Path, limit: int = 1000) -> list[Path]:
    """The oldest ``limit`` files waiting, oldest first."""
    try:
        names = sorted(n for n in os.listdir(inbox) if n.endswith(SUFFIX))
    except FileNotFoundError:
        return []
    return [inbox / n for n in names[:limit]]


def read(path: Path) -> InboxItem:
    data = path.read_bytes()
    header, _, body = data.partition(b"\n")
    try:
        meta = json.loads(header)
        received_us = int(meta["received_us"])
        delivery_id = meta.get("delivery_id")
    except (ValueError, KeyError, TypeError):
        # A header we cannot read still leaves a body worth keeping; time it by the file.
        return InboxItem(path, int(path.stat().st_mtime * 1_000_000), None, data)
    return InboxItem(path, received_us, delivery_id if isinstance(delivery_id, str) else None, body)


def reject(item: InboxItem) -> None:
    """Move a body that is no hook aside (kept for inspection, never retried)."""
    folder = item.path.parent / REJECTED_DIR
    folder.mkdir(exist_ok=True)
    os.replace(item.path, folder / item.path.name)


def size(inbox: Path) -> tuple[int, int]:
    """(files, bytes) waiting."""
    files = pending(inbox, limit=1_000_000)
    total = 0
    for p in files:
        try:
            total += p.stat().st_size
        except FileNotFoundError:
            continue
    return len(files), total


def now_us() -> int:
    return time.time_ns() // 1000
