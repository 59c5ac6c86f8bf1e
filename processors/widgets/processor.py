"""Widget state per session over a changelogged key-value store, and the coalesced updates it owes.

The aggregates loop (or the Faust agent) feeds events in with their (partition, offset) and
asks ``flush()`` for the WidgetUpdate records due and ``persist()`` for the state writes;
nothing here touches Kafka, so a unit test drives it with a dict and a fake clock.

Table value (JSON) per session: ``w`` the reducer state, ``seq`` the last sequence number sent,
``boot`` the process that sent it, ``pending`` widgets changed but not yet sent (so a restart
still sends them), ``agent`` the main agent, ``part`` the events partition the session lives on,
and the replay guard's ``pos``/``recent`` (processors.idempotence).
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from processors.idempotence import already_folded, remember
from processors.widgets.coalesce import Coalescer
from processors.widgets.reducers import apply, new_state, render

State = dict[str, Any]

SEQ_RESTART_GAP = 1000
"""A process that takes over a session skips this many sequence numbers: its predecessor may have
sent updates whose new ``seq`` never reached the changelog. The jump shows as a gap, so clients
re-sync, and a number is never reused for different content."""


class StateStore(Protocol):
    """A table: ``set`` changes the local copy, ``persist`` writes the current value to the
    changelog partition (the events partition of the session, so recovery finds it)."""

    def get(self, key: str) -> State | None: ...

    def set(self, key: str, value: State) -> None: ...

    def persist(self, key: str, partition: int) -> None: ...


SENT_BEFORE_MAX = 100_000
"""Dropped sessions whose last sequence number a process remembers (a few MiB at most)."""


def widget_partition(session_id: str, partitions: int) -> int:
    """All widgets of a session in one partition, whatever their keys (crc32 is stable across runs)."""
    return zlib.crc32(session_id.encode()) % partitions


def widget_key(session_id: str, widget: str) -> bytes:
    """Per widget, so the compacted topic keeps the latest state of every widget of a session."""
    return f"{session_id}/{widget}".encode()


@dataclass(frozen=True)
class Outgoing:
    key: bytes
    partition: int
    value: dict[str, Any]


class WidgetProcessor:
    def __init__(self, store: StateStore, coalescer: Coalescer, widget_partitions: int,
                 boot_id: str | None = None) -> None:
        self.store = store
        self.coalescer = coalescer
        self.widget_partitions = widget_partitions
        self.boot_id = boot_id or uuid.uuid4().hex
        self._touched: dict[str, int] = {}
        self._sent_before: dict[str, int] = {}
        """Sessions this process dropped (rebalance, reset) -> the last sequence number it had
        taken for them: if a session comes back, its numbers continue past that, whatever the
        state it comes back with says."""
        self.skipped = 0
        """Events already folded in (replays after a restart, producer duplicates)."""

    def fold(self, partition: int, offset: int, event: dict[str, Any]) -> bool:
        sid = event["session_id"]
        st = self.store.get(sid)
        if st is None:
            # A session this process dropped before its state was committed gets no boot: its
            # first update then skips past the numbers already taken (see flush).
            boot = None if sid in self._sent_before else self.boot_id
            st = {"w": new_state(sid), "seq": 0, "boot": boot, "pending": [],
                  "agent": None, "part": partition}
            self.store.set(sid, st)
        elif already_folded(st, partition, offset, event["event_id"]):
            self.skipped += 1
            return False
        changed = apply(st["w"], event)
        if st["agent"] is None and not (event.get("metadata") or {}).get("parent_agent"):
            st["agent"] = event.get("agent")
        remember(st, partition, offset, event["event_id"])
        st["part"] = partition
        if not changed.issubset(st["pending"]):
            st["pending"] = sorted(set(st["pending"]) | changed)
        self._touched[sid] = partition
        self.coalescer.mark(sid, changed)
        return True

    def resume(self, states: Iterable[tuple[str, State]]) -> int:
        """After a recovery: widgets a previous owner changed but never sent go out again."""
        n = 0
        for sid, st in states:
            if st.get("pending"):
                self.coalescer.mark(sid, st["pending"])
                n += 1
        return n

    def flush(self, owned: set[int] | None = None) -> list[Outgoing]:
        """The updates due now, in order (sequence numbers taken); ``persist`` writes the states.

        ``owned``: events partitions this worker still owns; keys of other sessions are dropped.
        """
        out: list[Outgoing] = []
        for sid, widget in self.coalescer.due():
            st = self.store.get(sid)
            if st is None or (owned is not None and st["part"] not in owned):
                continue
            if widget not in st["pending"]:
                continue
            if st.get("boot") != self.boot_id:
                st["seq"] = max(st["seq"], self._sent_before.pop(sid, 0)) + SEQ_RESTART_GAP
                st["boot"] = self.boot_id
            st["seq"] += 1
            st["pending"].remove(widget)
            last = st["w"]["last_event"]
            out.append(Outgoing(
                key=widget_key(sid, widget),
                partition=widget_partition(sid, self.widget_partitions),
                value={
                    "session_id": sid, "widget": widget,
                    "data_json": orjson.dumps(render(st["w"], widget)).decode(),
                    "version": st["seq"],
                    "timestamp": last["timestamp"] if last else 0,
                    "agent": st["agent"],
                }))
            self._touched[sid] = st["part"]
        return out

    def dropping(self, session_ids: Iterable[str]) -> None:
        """These sessions' states are about to be dropped (their partition moved, or the state
        is reset to a checkpoint): remember the sequence numbers taken for them, so that a
        number is never handed out twice by this process (SEQ_RESTART_GAP covers the others)."""
        sent = self._sent_before
        for sid in session_ids:
            st = self.store.get(sid)
            if st is not None and st["seq"] > sent.get(sid, 0):
                sent[sid] = st["seq"]
        while len(sent) > SENT_BEFORE_MAX:
            del sent[next(iter(sent))]  # the oldest: insertion order

    def persist(self, owned: set[int] | None = None) -> int:
        """Write every state changed since the last call (folded events, taken sequence numbers)."""
        touched, self._touched = self._touched, {}
        for sid, partition in touched.items():
            if owned is None or partition in owned:
                self.store.persist(sid, partition)
        return len(touched)
