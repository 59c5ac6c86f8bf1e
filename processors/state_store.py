"""A state table of the aggregates loop: per-session state in memory, owed changelog records beside it.

``processors.widgets.processor.StateStore`` for the librdkafka loop (processors/aggregates_loop.py).
The changelog is the table's only durable copy: a record per persisted state, on the session's
events partition (so whoever owns that partition recovers its sessions from the same changelog
partition), JSON-encoded key and orjson value: the format the Faust tables wrote before
(processors/tables.py), so state survives a switch between the two, and the privacy eraser's
tombstones (consumers/privacy/erase.py) keep working. Nothing here touches Kafka.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

State = dict[str, Any]


@dataclass(frozen=True)
class ChangelogRecord:
    topic: str
    partition: int
    key: bytes
    value: bytes | None


def state_key(session_id: str) -> bytes:
    return json.dumps(session_id).encode()


class MemoryStore:
    """Session id -> state, for the sessions of the events partitions this worker owns."""

    def __init__(self, changelog_topic: str) -> None:
        self.changelog_topic = changelog_topic
        self._data: dict[str, State] = {}
        self._owed: list[ChangelogRecord] = []

    def get(self, key: str) -> State | None:
        return self._data.get(key)

    def set(self, key: str, value: State) -> None:
        self._data[key] = value

    def persist(self, key: str, partition: int) -> None:
        # Serialised now: the checkpoint commits exactly the events folded into this snapshot.
        self._owed.append(ChangelogRecord(self.changelog_topic, partition, state_key(key),
                                          orjson.dumps(self._data[key])))

    def take(self) -> list[ChangelogRecord]:
        """The changelog records persisted since the last call."""
        owed, self._owed = self._owed, []
        return owed

    def items(self) -> list[tuple[str, State]]:
        return list(self._data.items())

    def __len__(self) -> int:
        return len(self._data)

    def load(self, records: Iterable[tuple[bytes | None, bytes | None]]) -> list[tuple[str, State]]:
        """Apply changelog records (key, value) in log order; a null value (the eraser's
        tombstone) deletes. Returns the states loaded, one per session still present."""
        loaded: dict[str, State] = {}
        for key, value in records:
            if key is None:
                continue
            sid = json.loads(key)
            if value is None:
                self._data.pop(sid, None)
                loaded.pop(sid, None)
            else:
                loaded[sid] = self._data[sid] = orjson.loads(value)
        return list(loaded.items())

    def drop(self, partitions: Collection[int]) -> list[str]:
        """Forget the sessions living on ``partitions`` (another worker owns them now) and any
        record still owed for them; returns their ids."""
        gone = [sid for sid, st in self._data.items() if st.get("part") in partitions]
        for sid in gone:
            del self._data[sid]
        self._owed = [r for r in self._owed if r.partition not in partitions]
        return gone
