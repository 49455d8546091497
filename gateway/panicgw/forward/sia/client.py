"""The DC-09 transmitter for one centre's receiver (a primary and an optional backup address).

What the outbox needs from it, and why it behaves so:

- :meth:`Transmitter.deliver` sends one message under the sequence number the caller took
  for it (:meth:`Transmitter.next_sequence`, stored with the message before it is first
  sent): every resend, on either address, after a restart, carries that same number, which
  is what the receiver deduplicates on. No answer within ``ack_timeout_s``: the same frame
  again (new timestamp), ``tries`` times per address, then the other address.
- A NAK carries the receiver's clock: our offset to it is corrected and the message goes
  again at once (at most ``max_nak_resends`` times: a receiver that NAKs whatever we send
  is a failure to retry later, not a loop).
- The result says what the outbox must do: ``delivered`` (a matching ACK), ``refused``
  (DUH: the receiver does not understand the message; keep it and say so loudly, never
  drop it silently) or ``retry`` (no valid answer; try again later under the same number).
- Failover: the address that last answered is tried first. While the backup is in use, the
  link test also probes the primary and goes back to it once it answers.
- Link test: a NULL message whenever ``link_test_s`` passed without an answer from the
  receiver, under a new number from ``take_sequence`` (the store: written before it is
  sent, so a restart cannot hand the same number to the next message) or the counter.
  ``link_ok`` turns False when a whole exchange found no answer on any address, True again
  at the next answer; ``on_link`` hears each change (trouble on the other routes, diag
  FAIL).
- One exchange at a time, alarms first (:mod:`turns`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from panicgw.forward.sia.frame import build
from panicgw.forward.sia.message import Message, null_message
from panicgw.forward.sia.reply import DEFAULT_WINDOW_S, Ack, Duh, Expected, Nak, Rejected, judge
from panicgw.forward.sia.sequence import SequenceCounter, check_sequence
from panicgw.forward.sia.settings import Endpoint, ReceiverSettings
from panicgw.forward.sia.transport import Connection, connect
from panicgw.forward.sia.turns import PriorityTurns

log = logging.getLogger("panicgw.sia")

DELIVERED = "delivered"
RETRY = "retry"
REFUSED = "refused"
LINK_TEST_PRIORITY = 1000  # after every message
MAX_EXCHANGES = 32  # kept per result: logs, and the planned sia test command prints them


@dataclass(frozen=True)
class Exchange:
    """One frame sent and what came back, byte for byte."""

    endpoint: str
    sent: bytes
    replies: tuple[bytes, ...]
    outcome: str  # "ack" | "nak" | "duh" | "timeout" | "closed" | "connect"


@dataclass(frozen=True)
class Result:
    outcome: str  # DELIVERED | RETRY | REFUSED
    seq: int
    reason: str  # counter key: "ack", "duh", "timeout", "connect", "closed", "nak"
    detail: str
    endpoint: str | None  # the address that answered (None when none did)
    exchanges: tuple[Exchange, ...] = ()

    @property
    def delivered(self) -> bool:
        return self.outcome == DELIVERED


@dataclass
class _Path:
    """One address and what we know about it."""

    endpoint: Endpoint
    offset_s: float = 0.0  # receiver clock - our clock, from its last NAK
    conn: Connection | None = None
    last_answer_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    naks: int = 0

    def drop(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@dataclass
class _Attempt:
    kind: str
    detail: str = ""
    exchanges: list[Exchange] = field(default_factory=list)


class Transmitter:
    def __init__(
        self,
        settings: ReceiverSettings,
        *,
        counter: SequenceCounter | None = None,
        take_sequence: Callable[[], Awaitable[int]] | None = None,
        on_link: Callable[[bool, str], None] | None = None,
        clock: Callable[[], float] = time.time,
        max_nak_resends: int = 2,
        ack_window_s: float = DEFAULT_WINDOW_S,
    ) -> None:
        self.settings = settings
        self.counter = counter or SequenceCounter()
        self._take_sequence = take_sequence
        self._on_link = on_link
        self._clock = clock
        self.max_nak_resends = max_nak_resends
        self.ack_window_s = ack_window_s
        self._paths = [_Path(ep) for ep in settings.endpoints]
        self._active = 0
        self._turns = PriorityTurns()
        self._stopping = asyncio.Event()
        self.link_ok: bool | None = None  # None until the first exchange
        self.link_down_since: float | None = None
        self.last_answer_at: float | None = None
        self.delivered = 0
        self.refused = 0
        self.retries = 0
        self.link_tests = 0
        self.rejected: dict[str, int] = {}
        self.last_refused: str | None = None

    # -- public API ------------------------------------------------------------------------

    def next_sequence(self) -> int:
        """The number for a new message (store it with the message before sending)."""
        return self.counter.next()

    async def _new_sequence(self) -> int:
        """A number for a link test: from ``take_sequence`` (the store, which has written it
        when it returns) when given, else from the counter."""
        if self._take_sequence is not None:
            return check_sequence(await self._take_sequence())
        return self.next_sequence()

    async def deliver(self, message: Message, seq: int, priority: int = 0) -> Result:
        """Send ``message`` under ``seq`` until the receiver answers; never raises for the
        network or the receiver's replies."""
        check_sequence(seq)
        async with self._turns.turn(priority):
            result = await self._send(message, seq)
        if result.outcome == REFUSED:
            self.refused += 1
            self.last_refused = f"{message.event or message.kind} seq {seq:04d}: DUH"
            # The outbox keeps the message and raises it loudly (rate-bounded); this line
            # is the exchange's own record.
            log.warning("SIA receiver %s refused %s (seq %04d) with DUH: it does not "
                        "understand the message; check the account and format with the centre",
                        self.settings.name, message.event or message.kind, seq)
        elif result.delivered:
            self.delivered += 1
        else:
            self.retries += 1
        return result

    async def link_test(self) -> Result:
        """One NULL message under a new sequence number (the link test)."""
        self.link_tests += 1
        async with self._turns.turn(LINK_TEST_PRIORITY):
            result = await self._send(null_message(self.settings.account),
                                      await self._new_sequence())
            if self._active != 0 and result.delivered:
                await self._probe_primary()
        return result

    async def run(self) -> None:
        """Link tests every ``link_test_s`` without an answer, until :meth:`stop`."""
        period = self.settings.link_test_s
        try:
            while period > 0 and not self._stopping.is_set():
                quiet = self._clock() - (self.last_answer_at or float("-inf"))
                if quiet >= period or self._active != 0:
                    await self.link_test()
                    wait = period
                else:
                    wait = period - quiet
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), wait)
        finally:
            self.close()

    def stop(self) -> None:
        self._stopping.set()

    def close(self) -> None:
        for p in self._paths:
            p.drop()

    def stats(self) -> dict[str, Any]:
        """For diag and the status API (no key)."""
        return {
            "name": self.settings.name,
            "encrypted": self.settings.encrypted,
            "link_ok": self.link_ok,
            "link_down_since": self.link_down_since,
            "last_answer_at": self.last_answer_at,
            "active": str(self._paths[self._active].endpoint),
            "sequence": self.counter.last,
            "delivered": self.delivered,
            "refused": self.refused,
            "retries": self.retries,
            "link_tests": self.link_tests,
            "rejected_replies": dict(self.rejected),
            "last_refused": self.last_refused,
            "waiting": self._turns.waiting,
            "endpoints": [
                {"endpoint": str(p.endpoint), "clock_offset_s": p.offset_s, "naks": p.naks,
                 "last_answer_at": p.last_answer_at, "last_error": p.last_error,
                 "last_error_at": p.last_error_at}
                for p in self._paths
            ],
        }

    # -- internals -------------------------------------------------------------------------

    def _order(self) -> list[int]:
        return [self._active] + [i for i in range(len(self._paths)) if i != self._active]

    async def _send(self, message: Message, seq: int) -> Result:
        exchanges: list[Exchange] = []
        last = _Attempt("connect", "no address tried")
        for index in self._order():
            path = self._paths[index]
            for _ in range(self.settings.tries):
                attempt = await self._try(path, message, seq)
                exchanges.extend(attempt.exchanges)
                shown = tuple(exchanges[-MAX_EXCHANGES:])
                if attempt.kind in ("ack", "duh"):
                    self._answered(path)
                    if attempt.kind == "ack" and index != self._active:
                        log.warning("SIA %s: now sending to %s", self.settings.name,
                                    path.endpoint)
                        self._active = index
                    outcome = DELIVERED if attempt.kind == "ack" else REFUSED
                    return Result(outcome, seq, attempt.kind, attempt.detail,
                                  str(path.endpoint), shown)
                if attempt.kind == "nak":
                    self._answered(path)
                path.last_error = f"{attempt.kind}: {attempt.detail}"
                path.last_error_at = self._clock()
                last = attempt
                if attempt.kind == "connect":
                    break  # nothing listens there now: the other address
        if last.kind != "nak":
            self._link(False, f"{last.kind}: {last.detail}")
        log.warning("SIA %s: %s seq %04d not delivered (%s: %s), retried later",
                    self.settings.name, message.event or message.kind, seq, last.kind,
                    last.detail)
        return Result(RETRY, seq, last.kind, last.detail, None, tuple(exchanges[-MAX_EXCHANGES:]))

    async def _probe_primary(self) -> None:
        primary = self._paths[0]
        attempt = await self._try(primary, null_message(self.settings.account),
                                  await self._new_sequence())
        if attempt.kind == "ack":
            self._answered(primary)
            self._active = 0
            log.warning("SIA %s: primary %s answers again, back to it", self.settings.name,
                        primary.endpoint)

    def _answered(self, path: _Path) -> None:
        path.last_answer_at = self.last_answer_at = self._clock()
        self._link(True, "")

    def _link(self, ok: bool, detail: str) -> None:
        if ok == self.link_ok:
            return
        self.link_ok = ok
        self.link_down_since = None if ok else self._clock()
        (log.info if ok else log.error)("SIA %s: link to the receiver %s%s", self.settings.name,
                                        "up" if ok else "DOWN", f" ({detail})" if detail else "")
        if self._on_link is not None:
            try:
                self._on_link(ok, detail)
            except Exception:  # the caller's hook must not stop the transmitter
                log.exception("SIA %s: on_link hook failed", self.settings.name)

    async def _try(self, path: _Path, message: Message, seq: int) -> _Attempt:
        """One send to one address, and the NAK-corrected resends it may need."""
        s = self.settings
        out = _Attempt("timeout")
        for _ in range(self.max_nak_resends + 1):
            if path.conn is None or path.conn.closed:
                path.drop()
                try:
                    path.conn = await connect(path.endpoint, s.ack_timeout_s)
                except (OSError, TimeoutError, ValueError) as e:  # ValueError: a bad name
                    out.kind, out.detail = "connect", f"{path.endpoint}: {_why(e)}"
                    return out
            now = self._clock() + path.offset_s
            frame = build(message, seq, receiver=s.receiver, line=s.line, now=now, key=s.key)
            expected = Expected(seq, s.receiver, s.line, message.account, s.key, now,
                                self.ack_window_s)
            replies: list[bytes] = []
            try:
                await path.conn.send(frame)
                verdict = await asyncio.wait_for(self._verdict(path.conn, expected, replies),
                                                 s.ack_timeout_s)
            except TimeoutError:
                path.drop()  # a late reply on this connection would only confuse the next
                out.kind, out.detail = "timeout", f"no valid reply within {s.ack_timeout_s:g} s"
            except ConnectionRefusedError as e:  # UDP: ICMP port unreachable
                path.drop()
                out.kind, out.detail = "connect", f"{path.endpoint}: {_why(e)}"
            except (ConnectionError, OSError) as e:
                path.drop()
                out.kind, out.detail = "closed", _why(e)
            else:
                if isinstance(verdict, Nak):
                    path.naks += 1
                    out.kind, out.detail = "nak", self._nak(path, verdict)
                else:
                    out.kind = "ack" if isinstance(verdict, Ack) else "duh"
                    out.detail = verdict.raw.decode("ascii", "replace").strip()
            out.exchanges.append(Exchange(str(path.endpoint), frame, tuple(replies), out.kind))
            if out.kind != "nak":
                return out
        return out

    async def _verdict(self, conn: Connection, expected: Expected,
                       replies: list[bytes]) -> Ack | Nak | Duh:
        """Read replies until one answers this message (others are counted and skipped)."""
        while True:
            raw = await conn.receive()
            replies.append(raw)
            verdict = judge(raw, expected)
            if not isinstance(verdict, Rejected):
                return verdict
            self.rejected[verdict.reason] = self.rejected.get(verdict.reason, 0) + 1
            log.warning("SIA %s: reply ignored (%s: %s): %r", self.settings.name,
                        verdict.reason, verdict.detail, raw[:120])

    def _nak(self, path: _Path, nak: Nak) -> str:
        if nak.receiver_time is None:
            return "NAK without the receiver's time"
        before = path.offset_s
        path.offset_s = nak.receiver_time - self._clock()
        log.warning("SIA %s: %s NAKed our timestamp; its clock is %+.0f s from ours (was "
                    "%+.0f s), resending", self.settings.name, path.endpoint, path.offset_s,
                    before)
        return f"receiver clock {path.offset_s:+.0f} s from ours"


def _why(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return "timed out"
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
