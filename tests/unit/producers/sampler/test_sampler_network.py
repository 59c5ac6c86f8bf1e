"""Connections: reported once, bytes as transfers; and the Linux socket table on real sockets."""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Iterator

import pytest

from producers.sampler.network import NetworkTracker, Owner
from producers.sampler.source import Connection

OWNER = Owner("s-1", "node", None)


def conn(key: str, ip: str = "160.79.104.10", sent: int | None = None,
         received: int | None = None, port: int = 443) -> Connection:
    return Connection(key, ip, port, 50000, "ESTABLISHED", sent, received)


def test_first_sight_then_periodic_and_final_transfers() -> None:
    net = NetworkTracker(bytes_every_s=10)
    [first] = net.observe({1: [conn("a", sent=100, received=1000)]}, {1: OWNER}, 0.0)
    assert (first.kind, first.protocol, first.bytes_sent) == ("request", "https", None)
    assert net.observe({1: [conn("a", sent=200, received=3000)]}, {1: OWNER}, 5.0) == []
    assert net.bytes_due(10.0) and not net.bytes_due(9.0)
    [periodic] = net.observe({1: [conn("a", sent=300, received=5000)]}, {1: OWNER}, 10.0)
    assert (periodic.kind, periodic.bytes_sent, periodic.bytes_received, periodic.closed) == (
        "transfer", 300, 5000, False)  # counted from the connection's start
    assert net.observe({1: [conn("a", sent=350, received=5000)]}, {1: OWNER}, 11.0) == []
    [final] = net.observe({}, {1: OWNER}, 12.0)
    assert (final.bytes_sent, final.bytes_received, final.closed) == (50, 0, True)
    assert final.duration_s == 12.0
    assert net.open == {}
    # Closed without new bytes since the last report: nothing more to say.
    net.observe({1: [conn("b", sent=10, received=10)]}, {1: OWNER}, 20.0)
    [moved] = net.observe({1: [conn("b", sent=10, received=10)]}, {1: OWNER}, 30.0)
    assert moved.bytes_sent == 10
    assert net.observe({}, {1: OWNER}, 31.0) == []


def test_connections_without_byte_counts_close_silently() -> None:
    net = NetworkTracker()
    assert len(net.observe({1: [conn("a")]}, {1: OWNER}, 0.0)) == 1
    assert net.observe({}, {1: OWNER}, 1.0) == []


def test_loopback_and_unowned_pids_are_skipped_unless_asked() -> None:
    local = {1: [conn("a", ip="127.0.0.1", port=4318)], 2: [conn("b")]}
    assert NetworkTracker().observe(local, {1: OWNER}, 0.0) == []
    [ev] = NetworkTracker(include_loopback=True).observe(local, {1: OWNER}, 0.0)
    assert (ev.remote_ip, ev.protocol) == ("127.0.0.1", "tcp")


linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc and sock_diag")


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    server.close()
    yield client, peer
    client.close()
    peer.close()


@linux
def test_socket_table_resolves_this_process_sockets_with_byte_counts(
        pair: tuple[socket.socket, socket.socket]) -> None:
    from producers.sampler.linux import SocketTable, peak_rss_bytes

    client, peer = pair
    client.sendall(b"x" * 50_000)
    got = 0
    while got < 50_000:
        got += len(peer.recv(65536))
    peer.sendall(b"y" * 7000)
    assert client.recv(65536)
    deadline = time.monotonic() + 5
    table = SocketTable(budget=1.0)
    while True:
        found = table.connections([os.getpid()], refresh=True) or {}
        mine = [c for c in found.get(os.getpid(), [])
                if c.local_port == client.getsockname()[1]]
        if (mine and (mine[0].bytes_sent or 0) >= 50_000) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    [c] = mine
    assert (c.remote_ip, c.remote_port, c.status) == ("127.0.0.1", peer.getsockname()[1],
                                                      "ESTABLISHED")
    assert c.bytes_sent is not None and c.bytes_sent >= 50_000
    assert c.bytes_received is not None and c.bytes_received >= 1
    assert table.dumps >= 1
    # Nothing new and no refresh asked: no second dump.
    dumps = table.dumps
    table.connections([os.getpid()])
    assert table.dumps == dumps
    peak = peak_rss_bytes(os.getpid())
    assert peak is not None and peak > 0
    assert peak_rss_bytes(2**22 + 12345) is None


@linux
def test_the_dump_budget_spaces_dumps(pair: tuple[socket.socket, socket.socket]) -> None:
    from producers.sampler.linux import SocketTable

    table = SocketTable(budget=1e-9)  # any dump costs more than this budget allows for ages
    table.connections([os.getpid()], refresh=True)
    table.connections([os.getpid()], refresh=True)
    assert table.dumps == 1
