"""Server messages encoded once as whole WebSocket frames, and written straight to a socket's
transport when it has room.

A server's text frame is the same bytes for every client (RFC 6455 masks only client frames and
the gateway never compresses), so one update to 1,000 clients is one encoding and 1,000
``transport.write`` calls, instead of 1,000 UTF-8 encodings, frame headers and sender tasks.
aiohttp writes every frame of its own (pings, pongs, close, ``send_str``) in one synchronous step
too, so frames never interleave. A transport whose buffer is past ``high_water`` is refused: the
client's queue takes over, whose sender awaits aiohttp's drain (backpressure, coalescing, bound).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

from aiohttp import web

HIGH_WATER = 64 * 1024
"""Bytes buffered in a transport beyond which a client is written through its queue instead."""

DirectWrite = Callable[[bytes], bool]
"""Writes one whole frame now and returns True, or returns False (the caller queues instead)."""


def text_frame(text: str) -> bytes:
    """A final, unmasked, uncompressed text frame carrying ``text``."""
    payload = text.encode("utf-8")
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x81, n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x81, 126, n)
    else:
        header = struct.pack("!BBQ", 0x81, 127, n)
    return header + payload


class Outgoing:
    """One message for many clients: the text (for queued sends) and its frame, built on first
    use and shared."""

    __slots__ = ("_frame", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._frame: bytes | None = None

    @property
    def frame(self) -> bytes:
        if self._frame is None:
            self._frame = text_frame(self.text)
        return self._frame


def direct_writer(ws: web.WebSocketResponse, transport: asyncio.BaseTransport | None,
                  high_water: int = HIGH_WATER) -> DirectWrite | None:
    """The direct path for a prepared WebSocket, or None where it cannot apply (no plain
    transport, or permessage-deflate negotiated: frames would then differ per client)."""
    if not isinstance(transport, asyncio.WriteTransport) or ws.compress:
        return None

    def write(frame: bytes) -> bool:
        if ws.closed or transport.is_closing() or transport.get_write_buffer_size() > high_water:
            return False
        transport.write(frame)
        return True

    return write
