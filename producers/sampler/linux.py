"""Linux-only reads the sampler needs cheaper or finer than psutil gives them.

- ``peak_rss_bytes``: ``VmHWM`` of ``/proc/<pid>/status``, the lifetime RSS peak, so a command's
  peak memory does not depend on a sample landing on the peak.
- ``SocketTable``: the TCP connections of a few processes. psutil re-reads ``/proc/net/tcp``
  (every socket of the host, ~8 ms with 700 sockets here) on every call. Instead the socket inodes
  of each process come from its fd links (microseconds), and only when an unknown inode shows up
  (or byte counts are due) one ``NETLINK_SOCK_DIAG`` dump resolves addresses and reads
  ``tcp_info`` byte counters (``tcpi_bytes_acked`` / ``tcpi_bytes_received``, Linux >= 4.2).
  Dumps are spaced so they use at most ``budget`` of one core, measured on the dump itself.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import time
from collections.abc import Collection
from dataclasses import dataclass

from producers.sampler.source import Connection

_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 0x1
_NLM_F_DUMP = 0x300
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_INET_DIAG_INFO = 2
_NLMSGHDR = struct.Struct("=IHHII")
_RTATTR = struct.Struct("=HH")
_PORTS = struct.Struct(">HH")
_U32 = struct.Struct("=I")
_BYTES = struct.Struct("=QQ")
_BYTES_OFFSET = 120  # tcpi_bytes_acked, tcpi_bytes_received in struct tcp_info
_TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
               8: "CLOSE_WAIT", 9: "LAST_ACK", 11: "CLOSING"}
_STATE_MASK = sum(1 << s for s in _TCP_STATES)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True, slots=True)
class Stat:
    """The fields of ``/proc/<pid>/stat`` the sampler reads (times in seconds)."""

    name: str
    ppid: int
    user: float
    system: float
    children_user: float
    children_system: float
    start_ticks: int
    """Start time in clock ticks after boot: with the pid, the process's identity."""
    rss_bytes: int


def read_stat(pid: int) -> Stat | None:
    """One read of ``/proc/<pid>/stat``: psutil's ppid() alone costs three (it re-checks the
    pid for reuse by building a new Process), and the sampler needs the whole line anyway."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    close = data.rfind(b")")
    fields = data[close + 2:].split()
    if close < 0 or len(fields) < 22:
        return None
    tick = CLOCK_TICKS
    return Stat(data[data.find(b"(") + 1:close].decode(errors="replace"), int(fields[1]),
                int(fields[11]) / tick, int(fields[12]) / tick, int(fields[13]) / tick,
                int(fields[14]) / tick, int(fields[19]), int(fields[21]) * PAGE_SIZE)


def peak_rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            data = f.read()
    except OSError:
        return None
    at = data.find(b"VmHWM:")
    if at < 0:
        return None  # kernel threads, zombies
    try:
        return int(data[at + 6:data.index(b"kB", at)]) * 1024
    except ValueError:
        return None


def socket_inodes(pid: int) -> set[int] | None:
    """Inodes of the sockets among the process's open fds (None: gone or not ours to read)."""
    found: set[int] = set()
    try:
        with os.scandir(f"/proc/{pid}/fd") as entries:
            for entry in entries:
                try:
                    target = os.readlink(entry.path)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    found.add(int(target[8:-1]))
    except OSError:
        return None
    return found


@dataclass(frozen=True, slots=True)
class SockInfo:
    remote_ip: str
    remote_port: int
    local_port: int
    status: str
    bytes_sent: int | None
    bytes_received: int | None


def _address(family: int, raw: bytes) -> str:
    if family == socket.AF_INET:
        return str(ipaddress.IPv4Address(raw[:4]))
    addr = ipaddress.IPv6Address(raw[:16])
    return str(addr.ipv4_mapped or addr)


def _parse(data: bytes, out: dict[int, SockInfo]) -> bool:
    """Adds the sockets of one netlink datagram; True once the dump is done."""
    off = 0
    while off + _NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, off)
        if kind == _NLMSG_DONE:
            return True
        if kind == _NLMSG_ERROR:
            raise OSError("sock_diag dump refused")
        if length < _NLMSGHDR.size:
            return True
        body = off + _NLMSGHDR.size
        family, state = data[body], data[body + 1]
        sport, dport = _PORTS.unpack_from(data, body + 4)
        inode = _U32.unpack_from(data, body + 68)[0]
        sent = received = None
        attr = body + 72
        end = off + length
        while attr + _RTATTR.size <= end:
            alen, atype = _RTATTR.unpack_from(data, attr)
            if alen < _RTATTR.size:
                break
            if atype == _INET_DIAG_INFO and alen - _RTATTR.size >= _BYTES_OFFSET + _BYTES.size:
                sent, received = _BYTES.unpack_from(data, attr + _RTATTR.size + _BYTES_OFFSET)
            attr += (alen + 3) & ~3
        if inode:
            out[inode] = SockInfo(_address(family, data[body + 24:body + 40]), dport, sport,
                                  _TCP_STATES.get(state, str(state)), sent, received)
        off += (length + 3) & ~3
    return False


def dump_tcp() -> dict[int, SockInfo]:
    """Every connected TCP socket of this network namespace, by inode, with byte counters."""
    out: dict[int, SockInfo] = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as sock:
        for seq, family in enumerate((socket.AF_INET, socket.AF_INET6), start=1):
            request = struct.pack("=BBBBI", family, socket.IPPROTO_TCP,
                                  1 << (_INET_DIAG_INFO - 1), 0, _STATE_MASK) + bytes(48)
            sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(request), _SOCK_DIAG_BY_FAMILY,
                                     _NLM_F_REQUEST | _NLM_F_DUMP, seq, 0) + request)
            while not _parse(sock.recv(1 << 16), out):
                pass
    return out


class SocketTable:
    """Connections of chosen pids, resolving new socket inodes with as few dumps as possible."""

    def __init__(self, *, budget: float = 0.005) -> None:
        self.budget = budget
        self.known: dict[int, SockInfo] = {}
        self.dumps = 0
        self.dump_seconds = 0.0
        self.unavailable = False
        self._next_dump = 0.0
        # Inodes a dump did not list: most are unix sockets, some TCP sockets not yet connected.
        # After two such dumps an inode is taken for "not a TCP connection" and not asked again.
        self._misses: dict[int, int] = {}

    def connections(self, pids: Collection[int], *, refresh: bool = False
                    ) -> dict[int, list[Connection]] | None:
        if self.unavailable:
            return None
        inodes: dict[int, set[int]] = {}
        for pid in pids:
            found = socket_inodes(pid)
            if found:
                inodes[pid] = found
        wanted: set[int] = set().union(*inodes.values()) if inodes else set()
        self.known = {i: s for i, s in self.known.items() if i in wanted}
        self._misses = {i: n for i, n in self._misses.items() if i in wanted}
        unknown = {i for i in wanted - self.known.keys() if self._misses.get(i, 0) < 2}
        now = time.monotonic()
        if (unknown or (refresh and self.known)) and now >= self._next_dump:
            started = time.process_time()
            try:
                table = dump_tcp()
            except OSError:
                self.unavailable = True
                return None
            cost = time.process_time() - started
            self.dumps += 1
            self.dump_seconds += cost
            self._next_dump = now + cost / self.budget
            for inode in wanted:
                info = table.get(inode)
                if info is not None:
                    self.known[inode] = info
                    self._misses.pop(inode, None)
                else:
                    self.known.pop(inode, None)
                    self._misses[inode] = self._misses.get(inode, 0) + 1
        out: dict[int, list[Connection]] = {}
        for pid, found in inodes.items():
            conns = [Connection(str(i), s.remote_ip, s.remote_port, s.local_port, s.status,
                                s.bytes_sent, s.bytes_received)
                     for i in sorted(found) if (s := self.known.get(i)) is not None]
            if conns:
                out[pid] = conns
        return out

    def forget(self, pid: int) -> None:
        """Nothing is kept per pid: inodes of a gone process drop out on the next call."""
