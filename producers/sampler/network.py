"""The TCP connections of the agents' process trees, as network access events.

A connection is reported once when first seen (``network.request``: remote address, port, the
process, and the Bash call whose tree holds it). Where the platform counts bytes (Linux
``tcp_info``), the bytes moved since the last report follow as ``network.transfer`` when the
connection closes, and every ``bytes_every_s`` while it stays open; the widget adds those to the
host's total without counting another request. Bytes moved after the last look at an open socket
are not seen if it closes before the next one: the counts are lower bounds.

The remote address is the domain: no reverse DNS (slow, and it would leak the trace to a
resolver). Private addresses are redacted by the pipeline like every other field.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from producers.sampler.source import Connection

_PORT_PROTOCOLS = {443: "https", 80: "http", 22: "ssh", 9418: "git", 53: "dns", 8080: "http",
                   8443: "https"}


@dataclass(frozen=True, slots=True)
class Owner:
    session_id: str
    process: str
    tool_use_id: str | None


@dataclass(frozen=True, slots=True)
class NetEvent:
    kind: str
    """``request`` (first seen) or ``transfer`` (bytes since the last report)."""
    owner: Owner
    remote_ip: str
    remote_port: int
    protocol: str
    bytes_sent: int | None = None
    bytes_received: int | None = None
    duration_s: float | None = None
    closed: bool = False


@dataclass(slots=True)
class _Tracked:
    owner: Owner
    conn: Connection
    first_seen: float
    reported_at: float
    reported_sent: int = 0
    reported_received: int = 0


def protocol_for(port: int) -> str:
    return _PORT_PROTOCOLS.get(port, "tcp")


def _skipped(ip: str, include_loopback: bool) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return True
    return addr.is_unspecified or (addr.is_loopback and not include_loopback)


class NetworkTracker:
    def __init__(self, *, include_loopback: bool = False, bytes_every_s: float = 30.0) -> None:
        self.include_loopback = include_loopback
        self.bytes_every_s = bytes_every_s
        self.open: dict[str, _Tracked] = {}

    def bytes_due(self, now: float) -> bool:
        return any(now - t.reported_at >= self.bytes_every_s for t in self.open.values())

    def observe(self, conns: Mapping[int, list[Connection]], owners: Mapping[int, Owner],
                now: float) -> list[NetEvent]:
        """One complete look at the watched pids' connections; what is new, moved or closed."""
        out: list[NetEvent] = []
        seen: set[str] = set()
        for pid, found in conns.items():
            owner = owners.get(pid)
            if owner is None:
                continue
            for conn in found:
                if _skipped(conn.remote_ip, self.include_loopback):
                    continue
                seen.add(conn.key)
                tracked = self.open.get(conn.key)
                if tracked is None:
                    # Counters start at the connection's birth: its first transfer reports
                    # what moved before the sampler first saw it too.
                    tracked = self.open[conn.key] = _Tracked(owner, conn, now, now)
                    out.append(NetEvent("request", owner, conn.remote_ip, conn.remote_port,
                                        protocol_for(conn.remote_port)))
                    continue
                tracked.conn = conn
                if now - tracked.reported_at >= self.bytes_every_s:
                    out += self._transfer(tracked, now, closed=False)
        for key in [k for k in self.open if k not in seen]:
            out += self._transfer(self.open.pop(key), now, closed=True)
        return out

    def _transfer(self, tracked: _Tracked, now: float, *, closed: bool) -> list[NetEvent]:
        conn = tracked.conn
        if conn.bytes_sent is None and conn.bytes_received is None:
            return []
        sent = max(0, (conn.bytes_sent or 0) - tracked.reported_sent)
        received = max(0, (conn.bytes_received or 0) - tracked.reported_received)
        tracked.reported_at = now
        if not sent and not received:
            return []
        tracked.reported_sent += sent
        tracked.reported_received += received
        return [NetEvent("transfer", tracked.owner, conn.remote_ip, conn.remote_port,
                         protocol_for(conn.remote_port), sent, received,
                         now - tracked.first_seen, closed)]
