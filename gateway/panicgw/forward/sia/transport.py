"""Bytes to and from one receiver address over TCP or UDP (asyncio).

A connection sends one frame and hands back the frames that come back, one at a time; it
knows nothing of sequence numbers or retries (``client`` does). TCP stays open between
messages (receivers accept several messages per connection) and is dropped after any
trouble; a reply is read up to its ``<CR>``. UDP is one datagram per frame; an ICMP "port
unreachable" surfaces as ``ConnectionRefusedError``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol, cast

from panicgw.forward.sia.frame import CR
from panicgw.forward.sia.settings import Endpoint

MAX_REPLY = 2048  # a DC-09 reply is < 100 bytes; anything longer without <CR> is not one


class Connection(Protocol):
    @property
    def closed(self) -> bool: ...

    async def send(self, frame: bytes) -> None: ...

    async def receive(self) -> bytes:
        """The next frame from the receiver; ConnectionError when the link is gone."""
        ...

    def close(self) -> None: ...


class TcpConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @property
    def closed(self) -> bool:
        return self._writer.is_closing() or self._reader.at_eof()

    async def send(self, frame: bytes) -> None:
        self._writer.write(frame)
        await self._writer.drain()

    async def receive(self) -> bytes:
        try:
            return await self._reader.readuntil(CR)
        except asyncio.IncompleteReadError as e:
            raise ConnectionError(f"closed by the receiver after {len(e.partial)} bytes of a "
                                  "reply" if e.partial else "closed by the receiver") from None
        except asyncio.LimitOverrunError:
            raise ConnectionError(f"reply longer than {MAX_REPLY} bytes without <CR>") from None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | Exception] = asyncio.Queue(maxsize=64)
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # No isinstance check: CPython 3.11's selector datagram transport does not derive
        # from asyncio.DatagramTransport (3.12 fixed that).
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        with contextlib.suppress(asyncio.QueueFull):  # a flood is dropped, not buffered
            self.queue.put_nowait(data[:MAX_REPLY])

    def error_received(self, exc: Exception) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(exc or ConnectionError("socket closed"))


class UdpConnection:
    def __init__(self, transport: asyncio.DatagramTransport, protocol: _Datagrams) -> None:
        self._transport = transport
        self._protocol = protocol

    @property
    def closed(self) -> bool:
        return self._transport.is_closing()

    async def send(self, frame: bytes) -> None:
        self._transport.sendto(frame)

    async def receive(self) -> bytes:
        item = await self._protocol.queue.get()
        if isinstance(item, ConnectionError):
            raise item
        if isinstance(item, Exception):
            raise ConnectionError(f"{type(item).__name__}: {item}") from item
        return item

    def close(self) -> None:
        self._transport.close()


async def connect(endpoint: Endpoint, timeout_s: float) -> Connection:
    """Open a connection to ``endpoint``; OSError or TimeoutError when it cannot be had."""
    if endpoint.protocol == "udp":
        loop = asyncio.get_running_loop()
        transport, protocol = await asyncio.wait_for(loop.create_datagram_endpoint(
            _Datagrams, remote_addr=(endpoint.host, endpoint.port)), timeout_s)
        return UdpConnection(cast(asyncio.DatagramTransport, transport), protocol)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(endpoint.host, endpoint.port, limit=MAX_REPLY), timeout_s)
    return TcpConnection(reader, writer)
