"""The command hook's inbox: hooks that reached no collector wait here as one file each.

``agentwatch hook`` writes (atomically: a temporary name, then rename) one file per hook it could
not hand to the collector; the collector drains the folder in name order, which is arrival
order, and deletes each file once its events are in the spool. A file is one JSON header line
(``received_us``, ``delivery_id``) followed by the raw hook body, untouched.

Imports only ``os`` (``json`` when reading): the command hook loads this on every tool call of an agent, so
paths are plain strings or path-likes and there is no dataclass or pathlib here.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from os import PathLike

    StrPath = str | PathLike[str]

SUFFIX = ".hook"
REJECTED_DIR = "rejected"


class InboxItem:
    __slots__ = ("body", "delivery_id", "path", "received_us")

    def __init__(self, path: str, received_us: int, delivery_id: str | None, body: bytes) -> None:
        self.path = path
        self.received_us = received_us
        self.delivery_id = delivery_id
        self.body = body

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


def write(inbox: StrPath, body: bytes, received_us: int, delivery_id: str) -> str:
    folder = os.fspath(inbox)
    os.makedirs(folder, exist_ok=True)
    name = f"{received_us:020d}-{os.getpid()}-{delivery_id[:8]}"
    if not delivery_id.isalnum():
        raise ValueError("delivery ids are alphanumeric")
    # Written by hand: importing json would cost the command hook more than the rest of it.
    header = f'{{"received_us": {int(received_us)}, "delivery_id": "{delivery_id}"}}'.encode()
    tmp = os.path.join(folder, f".{name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(header + b"\n" + body)
    final = os.path.join(folder, name + SUFFIX)
    os.replace(tmp, final)
    return final


def pending(inbox: StrPath, limit: int = 1000) -> list[str]:
    """The oldest ``limit`` files waiting, oldest first."""
    folder = os.fspath(inbox)
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(SUFFIX))
    except FileNotFoundError:
        return []
    return [os.path.join(folder, n) for n in names[:limit]]


def read(path: StrPath) -> InboxItem:
    import json

    file = os.fspath(path)
    with open(file, "rb") as fh:
        data = fh.read()
    header, _, body = data.partition(b"\n")
    try:
        meta = json.loads(header)
        received_us = int(meta["received_us"])
        delivery_id = meta.get("delivery_id")
    except (ValueError, KeyError, TypeError):
        # A header we cannot read still leaves a body worth keeping; time it by the file.
        return InboxItem(file, int(os.stat(file).st_mtime * 1_000_000), None, data)
    return InboxItem(file, received_us, delivery_id if isinstance(delivery_id, str) else None, body)


def reject(item: InboxItem) -> None:
    """Move a body that is no hook aside (kept for inspection, never retried)."""
    folder = os.path.join(os.path.dirname(item.path), REJECTED_DIR)
    os.makedirs(folder, exist_ok=True)
    os.replace(item.path, os.path.join(folder, item.name))


def remove(item: InboxItem) -> None:
    try:  # noqa: SIM105 - contextlib is one import too many for the command hook
        os.unlink(item.path)
    except FileNotFoundError:
        pass
