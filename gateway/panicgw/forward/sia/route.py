"""The DC-09 route: one ``[[sia]]`` receiver fed from the durable outbox, beside the JSON
forwarder.

Why it is shaped this way:
- Its own delivery state (``outbox_routes``, route ``sia:<name>``) and its own read lane:
  the JSON route's outage, backoff or refusals never delay this one, nor the reverse.
- Alarms first: items are read most urgent first, one exchange at a time (DC-09 is
  stop-and-wait); a wake (a new commit) between two exchanges makes the next step read the
  outbox again, so a fresh alarm waits behind at most the exchange in flight.
- A sequence number per item, stored before the first send (``take_seq``): every resend,
  after a restart too, goes under it, which is what the receiver deduplicates on.
- Failures pace like the JSON route (:class:`~panicgw.forward.pacing.Pacing`): one global
  pause, one probe (the most urgent item) per step, a short flat step while an alarm
  waits, and everything pending swept, alarms first, once the receiver answers again.
- Delivered only on a matching ACK (``client``). DUH (the receiver does not understand the
  message) dead-letters a non-alarm on this route; an ALARM is never dropped: it stays
  pending, is retried at the alarm backoff cap and raised loudly (a rate-bounded error
  line, ``alarms_refused`` in the stats).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any, Protocol

from panicgw.forward.pacing import Pacing
from panicgw.forward.sia.client import DELIVERED, REFUSED, Transmitter
from panicgw.forward.sia.message import Message, MessageError, from_payload
from panicgw.forward.sia.settings import ReceiverSettings
from panicgw.ratelimit import LogBudget
from panicgw.store import PRIO_ALARM, PRIO_OTHER

log = logging.getLogger("panicgw.sia")

LOUD_LOG_EVERY_S = 60.0
BUTTON_ZONE = 1  # until the registry holds a zone per button (docs/sia.md section 4)
EXPIRE_OTHER_S = 86400.0  # periodic check-ins are pointless after a day, as on dispatch


def route_name(settings: ReceiverSettings) -> str:
    """The route's name in the outbox: ``sia:<name>``."""
    return f"sia:{settings.name}"


class RouteStore(Protocol):
    """A route's outbox (store.service.RoutePort); every method is durable on return."""

    async def due(self, now: float, limit: int) -> list[Any]: ...

    async def take_seq(self, item_id: int | None) -> int: ...

    async def delivered(self, item_id: int, at: float, detail: str) -> None: ...

    async def reschedule(self, item_id: int, at: float, error: str) -> None: ...

    async def dead(self, item_id: int, reason: str) -> None: ...


class SiaRoute:
    """Drains one route of the outbox to one receiver. ``await route.run()`` as a task."""

    def __init__(self, settings: ReceiverSettings, store: RouteStore, *,
                 alarm_probe_s: float = 2.5, backoff_base_s: float = 1.0,
                 backoff_max_s: float = 300.0, alarm_backoff_max_s: float = 30.0,
                 poll_s: float = 5.0, batch: int = 16,
                 clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None) -> None:
        self.settings = settings
        self.route = route_name(settings)
        self.store = store
        self.tx = Transmitter(settings, take_sequence=lambda: store.take_seq(None),
                              on_link=self._on_link, clock=clock)
        self.pacing = Pacing(backoff_base_s=backoff_base_s, backoff_max_s=backoff_max_s,
                             alarm_backoff_max_s=alarm_backoff_max_s,
                             alarm_probe_s=alarm_probe_s, rng=rng or random.Random())
        self.poll_s = poll_s
        self.batch = batch
        self._clock = clock
        self._kick = asyncio.Event()
        self._stopping = False
        self._sweep = True  # at start: everything pending goes, backoff or not
        self._next_retry = float("inf")
        self._task: asyncio.Task[None] | None = None
        self._loud_budgets: dict[str, LogBudget] = {}
        # diagnostics
        self.sent = 0
        self.failed: dict[str, int] = {}
        self.dead_lettered = 0
        self.expired = 0
        self.alarms_refused = 0
        self.last_alarm_refused: str | None = None
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.last_success_at: float | None = None
        self.link_changes = 0

    # -- public API ------------------------------------------------------------------------

    def wake(self) -> None:
        """Something new was committed to the outbox: look now (from the loop thread)."""
        self._kick.set()

    async def run(self) -> None:
        """Deliver (and test the link) until :meth:`stop`; never raises for the receiver's
        or the store's trouble."""
        self._task = asyncio.current_task()
        link = asyncio.create_task(self.tx.run(), name=f"{self.route}-link")
        try:
            while not self._stopping:
                self._kick.clear()
                try:
                    wait = await self._step()
                except Exception as e:  # a store failure: the rows stay pending
                    self._note_error("store", f"{type(e).__name__}: {e}")
                    log.exception("%s: outbox step failed", self.route)
                    wait = min(self.poll_s, 1.0)
                if self._stopping:
                    break
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._kick.wait(), wait)
        finally:
            self.tx.stop()
            link.cancel()
            await asyncio.gather(link, return_exceptions=True)
            self.tx.close()

    async def stop(self, timeout: float | None = None) -> None:
        """Start nothing new; let the exchange in flight finish (cancelled after timeout)."""
        self._stopping = True
        self._kick.set()
        self.tx.stop()
        if self._task is not None and self._task is not asyncio.current_task():
            done, _ = await asyncio.wait({self._task}, timeout=timeout)
            if not done:
                self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def stats(self) -> dict[str, Any]:
        """For the status API and diag (no key)."""
        return {
            **self.tx.stats(),
            "route": self.route,
            "sent": self.sent,
            "failed": dict(self.failed),
            "dead_lettered": self.dead_lettered,
            "expired": self.expired,
            "alarms_refused": self.alarms_refused,
            "last_alarm_refused": self.last_alarm_refused,
            "failures_in_row": self.pacing.failures_in_row,
            "paused_until": self.pacing.pause_until or None,
            "alarm_waiting": self.pacing.alarm_waiting,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "last_success_at": self.last_success_at,
        }

    # -- internals -------------------------------------------------------------------------

    async def _step(self) -> float:
        """Deliver what is due now, one at a time; return how long to sleep unless kicked."""
        now = self._clock()
        paused = now < self.pacing.pause_until
        failing = self.pacing.failures_in_row > 0
        horizon = now if paused or not (self._sweep or failing) else float("inf")
        items = await self.store.due(horizon, self.batch)
        if paused:  # the receiver looked down: only a fresh alarm probes before the pause ends
            items = [i for i in items if i.priority == PRIO_ALARM and i.attempts == 0]
        elif failing:
            items = items[:1]
        if not items:
            self._sweep = False
            if paused:
                return max(0.001, min(self.poll_s, self.pacing.pause_until - now))
            if self._next_retry <= now:
                self._next_retry = float("inf")
            return max(0.001, min(self.poll_s, self._next_retry - now))
        self._kick.clear()
        for item in items:
            if self._stopping:
                break
            if self._kick.is_set() and item.priority != PRIO_ALARM:
                break  # something new was committed: read again, an alarm may be among it
            if not await self._deliver(item):
                break  # not delivered: the pause decides what goes next
        return 0.0

    async def _deliver(self, item: Any) -> bool:
        """One item; True when the receiver answered (ACK or DUH)."""
        now = self._clock()
        if (item.priority == PRIO_OTHER and now - item.created_at >= EXPIRE_OTHER_S):
            await self.store.dead(item.id, f"expired: not delivered within "
                                           f"{EXPIRE_OTHER_S:.0f} s")
            self.expired += 1
            return True
        try:
            message = self._message(item.payload)
        except MessageError as e:
            return await self._refused(item, f"cannot be sent over DC-09: {e}", now)
        seq = item.seq if item.seq is not None else await self.store.take_seq(item.id)
        result = await self.tx.deliver(message, seq, item.priority)
        now = self._clock()
        if result.outcome == DELIVERED:
            await self.store.delivered(item.id, now, result.detail)
            self.sent += 1
            self.last_success_at = now
            self._recovered()
            return True
        if result.outcome == REFUSED:
            self._recovered()  # it answered: the link is fine, the message is not
            return await self._refused(item, f"DUH from {result.endpoint} (seq {seq:04d})",
                                       now)
        self._note_error(result.reason, result.detail)
        until = self.pacing.failed(item.priority, None, now, False)
        await self.store.reschedule(item.id, until, f"{result.reason}: {result.detail}")
        self._sweep = False
        log.warning("%s: %s (item %s, seq %04d) not delivered (%s): next attempt in %.1f s",
                    self.route, item.payload.get("event"), item.id, seq, result.reason,
                    until - now)
        return False

    async def _refused(self, item: Any, why: str, now: float) -> bool:
        self._note_error("refused", why)
        if item.priority != PRIO_ALARM:
            await self.store.dead(item.id, why)
            self.dead_lettered += 1
            log.error("%s: %s (item %s) refused for good on this route: %s", self.route,
                      item.payload.get("event"), item.id, why)
            return True
        # Never drop an alarm: keep it, retry at the alarm cap, say so loudly.
        self.alarms_refused += 1
        self.last_alarm_refused = f"{item.incident_id}: {why}"[:300]
        delay = self.pacing.backoff(item.attempts, PRIO_ALARM)
        await self.store.reschedule(item.id, now + delay, f"refused: {why}")
        self._next_retry = min(self._next_retry, now + delay)
        self._loud("alarm_refused", "SIA receiver %s REFUSED ALARM %s (item %s): %s; kept and "
                   "retried every <= %g s: check the account and format with the centre and "
                   "phone the alarm in", self.settings.name, item.incident_id, item.id, why,
                   self.pacing.alarm_backoff_max_s)
        return True

    def _message(self, payload: dict[str, Any]) -> Message:
        s = self.settings
        zone = BUTTON_ZONE if isinstance(payload.get("device"), dict) else 0
        return from_payload(payload, account=s.account, zone=zone, fmt=s.format, xdata=s.xdata)

    def _recovered(self) -> None:
        failures = self.pacing.recovered()
        if failures:
            log.info("%s: receiver answers again after %d failures", self.route, failures)
            self._sweep = True  # everything held back goes now, alarms first

    def _on_link(self, ok: bool, detail: str) -> None:
        self.link_changes += 1
        if ok:
            self._recovered()
            self._kick.set()

    def _loud(self, kind: str, msg: str, *args: Any) -> None:
        budget = self._loud_budgets.get(kind)
        if budget is None:
            budget = self._loud_budgets[kind] = LogBudget.every(LOUD_LOG_EVERY_S)
        suppressed = budget.take()
        if suppressed is None:
            return
        log.error(msg + (" (%d similar lines suppressed)" if suppressed else ""),
                  *args, *((suppressed,) if suppressed else ()))

    def _note_error(self, reason: str, detail: str) -> None:
        self.failed[reason] = self.failed.get(reason, 0) + 1
        self.last_error = f"{reason}: {detail}"[:300]
        self.last_error_at = self._clock()
