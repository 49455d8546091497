"""Receiving centres for the SIA tests: pysiaalarm's own server, and a scripted one.

``PySiaReceiver`` runs pysiaalarm's asyncio ``SIAClient`` (the receiver Home Assistant's SIA
integration uses) on a free port. ``ScriptedReceiver`` is a small asyncio receiver that
answers as a test script says: pysiaalarm cannot be made to be slow, to close a connection
in the middle of a reply, to NAK every message or to send hostile replies, so those cases
use it. Its replies are written here by hand from the standard, with pysiaalarm's CRC, not
with the code under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pysiaalarm import SIAAccount, SIAEvent
from pysiaalarm.aio import CommunicationsProtocol, SIAClient
from pysiaalarm.event import BaseEvent

from panicgw.forward.payload import build_payload, make_incident_id
from panicgw.forward.sia.settings import Endpoint, ReceiverSettings

ACCOUNT = "1234"
SITE = {"name": "Toko Sinar Jaya", "kind": "shop", "address": "Jl. Merdeka 12, Bandung",
        "lat": -6.9147, "lon": 107.6098, "contact": "Bu Sari", "phone": "+62 812 0000 0000"}
GATEWAY_EVENTS = ("gateway_checkin", "gateway_trouble", "gateway_trouble_restore")
TEXT_KEYS = {128: "AAAAAAAAAAAAAAAA", 192: "0123456789abcdefGHIJKLMN",
             256: "The DC-09 key of a test centre!!"}


def payload(event: str = "panic", *, device_id: int = 0x1234ABCD, label: str = "till",
            site: dict[str, Any] | None = None, at: float = 1_714_560_000.0,
            **kw: Any) -> dict[str, Any]:
    """A stored dispatch body, as the pipeline builds it."""
    dev = event not in GATEWAY_EVENTS
    return build_payload(
        incident_id=(make_incident_id(device_id, 0x30001, event) if dev
                     else f"gw-1-{event}-{int(at)}"),
        event=event, gateway_id="gw-1", first_heard=at,
        site=(site or SITE) if dev else None,
        device={"id": device_id, "label": label} if dev else None,
        counter=0x30001 if dev else None, **kw)


def settings(endpoint: Endpoint, *, key: bytes | None = None, backup: Endpoint | None = None,
             **kw: Any) -> ReceiverSettings:
    kw.setdefault("ack_timeout_s", 1.0)
    kw.setdefault("receiver", 0x12)
    kw.setdefault("line", 3)
    return ReceiverSettings(name="centre", primary=endpoint, backup=backup, account=ACCOUNT,
                            key=key, **kw)


def run(coro: Awaitable[Any], timeout: float = 60) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))  # type: ignore[arg-type]


def pysia_crc(text: str) -> str:
    return BaseEvent._crc_calc(text) or ""


def frame(body: str) -> bytes:
    """A reply frame the standard's way, with pysiaalarm's CRC."""
    return f"\n{pysia_crc(body)}0{len(body):03X}{body}\r".encode()


def parse(raw: bytes, key: str | None = None, account: str = ACCOUNT) -> SIAEvent:
    """What pysiaalarm reads from one of our frames (its parser, not ours)."""
    accounts = {account: SIAAccount(account, key, allowed_timeband=None)}
    return SIAEvent.from_line(raw.decode("ascii").strip(), accounts)


def stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("_%H:%M:%S,%m-%d-%Y")


class PySiaReceiver:
    """pysiaalarm's receiver on 127.0.0.1 and a free port; ``events`` is what it accepted."""

    def __init__(self, protocol: str = "tcp", key: str | None = None,
                 account: str = ACCOUNT, port: int = 0) -> None:
        self.protocol = protocol
        self.events: list[SIAEvent] = []
        self._arrived = asyncio.Event()
        self.client = SIAClient("127.0.0.1", port, [SIAAccount(account, key)], self._on_event,
                                protocol=CommunicationsProtocol[protocol.upper()])
        self.port = port

    async def _on_event(self, event: SIAEvent) -> None:
        self.events.append(event)
        self._arrived.set()

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint("127.0.0.1", self.port, self.protocol)

    async def __aenter__(self) -> PySiaReceiver:
        await self.client.async_start()
        if self.protocol == "tcp":
            self.port = self.client.server.sockets[0].getsockname()[1]
        else:
            self.port = self.client.transport.get_extra_info("sockname")[1]
            # pysiaalarm asserts isinstance(transport, asyncio.DatagramTransport) when the
            # socket opens; on CPython 3.11 the selector transport does not derive from it
            # (fixed in 3.12), the assertion fails and the server would never answer. Hand
            # it the transport it was given.
            if self.client.sia_server.transport is None:
                self.client.sia_server.transport = self.client.transport
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await asyncio.sleep(0.05)  # let its handlers see our connection close
        await self.client.async_stop()

    async def wait_events(self, n: int, timeout: float = 5.0) -> list[SIAEvent]:
        deadline = time.monotonic() + timeout
        while len(self.events) < n and time.monotonic() < deadline:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), deadline - time.monotonic())
        return self.events


Reply = bytes | float | None  # bytes: send; float: sleep that long first; None: close


@dataclass
class ScriptedReceiver:
    """Answers each received frame with ``script(n, frame)``: a list of actions (bytes to
    send, a float to sleep, None to close the connection). ``frames`` records every frame
    that arrived, in order."""

    script: Callable[[int, bytes], list[Reply]]
    protocol: str = "tcp"
    frames: list[bytes] = field(default_factory=list)
    port: int = 0
    _server: Any = None
    _transport: Any = None
    _handlers: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint("127.0.0.1", self.port, self.protocol)

    async def __aenter__(self) -> ScriptedReceiver:
        if self.protocol == "tcp":
            self._server = await asyncio.start_server(self._tcp, "127.0.0.1", self.port)
            self.port = self._server.sockets[0].getsockname()[1]
        else:
            loop = asyncio.get_running_loop()
            self._transport, _ = await loop.create_datagram_endpoint(
                lambda: _Udp(self), local_addr=("127.0.0.1", self.port))
            self.port = self._transport.get_extra_info("sockname")[1]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._server is not None:
            self._server.close()
            for task in self._handlers:  # connections still open: end them, quietly
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._transport is not None:
            self._transport.close()

    async def _tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:
                try:
                    raw = await reader.readuntil(b"\r")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.frames.append(raw)
                for action in self.script(len(self.frames), raw):
                    if action is None:
                        return
                    if isinstance(action, float):
                        await asyncio.sleep(action)
                    else:
                        writer.write(action)
                        await writer.drain()
        except ConnectionError:
            return
        except asyncio.CancelledError:
            return  # our own __aexit__: nothing to report
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _udp(self, raw: bytes, addr: Any) -> None:
        self.frames.append(raw)
        for action in self.script(len(self.frames), raw):
            if action is None:
                return
            if isinstance(action, float):
                await asyncio.sleep(action)
            else:
                self._transport.sendto(action, addr)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, owner: ScriptedReceiver) -> None:
        self.owner = owner
        self.tasks: set[asyncio.Task[None]] = set()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        task = asyncio.get_running_loop().create_task(self.owner._udp(data, addr))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


def header_fields(raw: bytes) -> tuple[str, str, str, str, str]:
    """(id, seq, receiver, line, account) of one of our frames, read with pysiaalarm's
    header regex."""
    from pysiaalarm.utils import MAIN_MATCHER

    m = MAIN_MATCHER.match(raw.decode("ascii").strip())
    assert m, raw
    g = m.groupdict()
    return (("*" if g["encrypted_flag"] else "") + g["message_type"], g["sequence"],
            g["receiver"], g["line"], g["account"])


def ack(raw: bytes, kind: str = "ACK") -> bytes:
    """The plain reply to one of our frames: ``"ACK"<seq>R<r>L<l>#<acct>[]``."""
    _, seq, r, line, acct = header_fields(raw)
    return frame(f'"{kind}"{seq}{r}{line}#{acct}[]')


def nak(receiver_time: float) -> bytes:
    return frame(f'"NAK"0000R0L0A0[]{stamp(receiver_time)}')


def message_time(raw: bytes, key: str | None = None) -> float:
    ev = parse(raw, key)
    assert isinstance(ev.timestamp, datetime), raw
    return ev.timestamp.timestamp()


def dead_endpoint(protocol: str = "tcp") -> Endpoint:
    """An address where nothing listens (a port just freed)."""
    import socket

    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return Endpoint("127.0.0.1", port, protocol)


def sequences_per_message(frames: list[bytes], key: str | None = None) -> dict[tuple, set[str]]:
    """Every distinct message (its content without the timestamp, as pysiaalarm reads it)
    -> the sequence numbers it was sent under. One number each, or the receiver could take
    a resend for a new event."""
    out: dict[tuple, set[str]] = {}
    for raw in frames:
        ev = parse(raw, key)
        what = (ev.message_type, ev.account, ev.code, ev.event_qualifier, ev.event_type, ev.ri,
                ev.message, ev.x_data)
        out.setdefault(what, set()).add(ev.sequence or "")
    return out
