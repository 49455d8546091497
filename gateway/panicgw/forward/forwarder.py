"""Dispatch forwarder: drain the durable outbox to the dispatch HTTPS endpoint (contract 2).

Why it is shaped this way:
- The outbox (SQLite, written in the same transaction as the event) is the only queue: a
  crash or restart loses nothing, it just resumes from ``due()``.
- Strict priority tiers: nothing less urgent is started while something more urgent is in
  flight, and one slot is always kept free for an alarm. When dispatch comes back after an
  outage the forwarder sweeps everything pending (ignoring per-item backoff) in priority
  order, so alarms reach dispatch first.
- One global pause after a transport failure (connection refused, timeout, 5xx, 429): a down
  dispatch gets one probe per backoff step, the most urgent waiting message (pacing.py).
- Every failed delivery is rescheduled for when it will really be tried: the end of the
  global pause (the next probe). Its log line says so, and ``stats()`` exposes
  ``paused_until`` so `panicgw outbox list` shows the real next try of every waiting item.
- Auth failures (401/403) are the gateway's configuration (token, signing secret, clock,
  client certificate), which a technician fixes: nothing is dead-lettered, everything stays
  pending and is retried like during an outage (one probe per capped backoff step, alarms
  first), ``auth_failed`` is set in the stats (status API, ``panicgw diag``) and the error is
  logged at a bounded rate.
- Any other permanent 4xx (not 408/425/429) dead-letters a non-alarm (shown by diagnostics,
  logged at error level; `panicgw outbox requeue` sends it again once fixed) because
  repeating the same request cannot succeed. An ALARM is never dead-lettered: a lost alarm
  is the worst outcome, so it stays pending, is retried at the alarm backoff cap and is
  raised loudly (error log, ``alarms_refused`` in the stats, the outbox check of diag).
- Each delivery is one signed POST whose answer is classified in delivery.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import aiohttp

from panicgw.forward.delivery import Answer, DispatchClient
from panicgw.forward.pacing import Pacing
from panicgw.forward.payload import rfc3339
from panicgw.ratelimit import LogBudget
from panicgw.store import PRIO_ALARM, PRIO_OTHER

log = logging.getLogger("panicgw.forwarder")

LOUD_LOG_EVERY_S = 60.0  # auth failures / refused alarms: one error line a minute at most


class OutboxStore(Protocol):
    """What the forwarder needs from the durable store (A implements it on SQLite).

    ``due`` returns pending items whose retry time is <= ``now``, most urgent priority first
    (store.PRIO_ALARM = 0), then oldest. ``delivered``/``reschedule``/``dead_letter`` each
    count one attempt and are durable when they return.
    """

    def due(self, now: float, limit: int) -> list[Any]: ...

    def delivered(self, item_id: int, at: float, status: int, body: str) -> None: ...

    def reschedule(self, item_id: int, at: float, error: str) -> None: ...

    def dead_letter(self, item_id: int, at: float, reason: str) -> None: ...


StoreCall = Callable[..., Awaitable[Any]]


class Forwarder:
    """Drains an :class:`OutboxStore` to dispatch. Run ``await fwd.run()`` as a task.

    ``call_store`` runs a store method (``await call_store(store.due, now, limit)``); pass one
    that hops to the store's thread when the store is not safe to call from the event loop.
    By default the methods are called directly on the loop.
    """

    def __init__(
        self,
        store: OutboxStore,
        url: str,
        *,
        gateway_id: str,
        token: str = "",
        secret: str | bytes = b"",
        ca_file: str | None = None,
        client_cert: str | None = None,
        client_key: str | None = None,
        timeout_s: float = 10.0,
        concurrency: int = 4,
        batch: int = 64,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 300.0,
        alarm_backoff_max_s: float = 30.0,
        alarm_probe_s: float = 2.5,
        poll_s: float = 5.0,
        expire_after_s: Mapping[int, float] | None = None,
        call_store: StoreCall | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.client = DispatchClient(url, gateway_id=gateway_id, token=token, secret=secret,
                                     ca_file=ca_file, client_cert=client_cert,
                                     client_key=client_key, timeout_s=timeout_s, clock=clock)
        self.concurrency = max(2, concurrency)  # one slot is reserved for alarms
        self.batch = batch
        self.pacing = Pacing(backoff_base_s=backoff_base_s, backoff_max_s=backoff_max_s,
                             alarm_backoff_max_s=alarm_backoff_max_s,
                             alarm_probe_s=alarm_probe_s, rng=rng or random.Random())
        self.poll_s = poll_s
        # Periodic check-ins are pointless after a day; everything else waits for dispatch.
        self.expire_after_s = dict(expire_after_s if expire_after_s is not None
                                   else {PRIO_OTHER: 86400.0})
        self._call_store = call_store
        self._clock = clock
        self._kick = asyncio.Event()
        self._stopping = False
        self._inflight: dict[int, tuple[int, asyncio.Task[None]]] = {}
        self._session: aiohttp.ClientSession | None = None
        self.probes = 0  # deliveries started while dispatch was failing (one request each)
        self._sweep = True  # at start: everything pending is sent, backoff or not
        self._run_task: asyncio.Task[None] | None = None
        self._next_retry = float("inf")  # earliest reschedule we wrote: wake for it
        # Deliveries that ended while a due() read was in flight: its snapshot may predate
        # their delivered/reschedule write (reads and writes may run on different threads
        # and connections), so they must not be started again from it.
        self._settled: set[int] | None = None
        # diagnostics
        self.sent = 0
        self.failed: dict[str, int] = {}
        self.dead_lettered = 0
        self.expired = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.last_success_at: float | None = None
        self.last_status: int | None = None
        self.auth_failed = False  # dispatch refuses our credentials right now
        self.auth_failures = 0
        self.auth_failed_since: float | None = None
        self.alarms_refused = 0  # permanent 4xx answers to alarms (kept, retried)
        self.last_alarm_refused: str | None = None
        self._loud_budgets: dict[str, LogBudget] = {}  # per kind of error line

    # -- public API ------------------------------------------------------------------------

    def wake(self) -> None:
        """Something new was committed to the outbox: look now (call from the loop thread)."""
        self._kick.set()

    def offer(self, items: list[Any]) -> None:
        """Items just committed to the outbox (the pipeline's fast lane): start them now
        instead of reading them back from the store. Only when dispatch is healthy and the
        slots allow; anything not started is found by the next step as usual. Call from the
        loop thread."""
        if self._stopping or self._session is None:
            return
        fresh = sorted((i for i in items if i.id not in self._inflight),
                       key=lambda i: (i.priority, i.created_at))
        healthy = self.pacing.healthy(self._clock())
        if not (healthy and fresh and self._admit(fresh) == len(fresh)):
            self._kick.set()

    async def stop(self, timeout: float | None = None) -> None:
        """Start nothing new; let in-flight POSTs finish (or cancel them after ``timeout``)."""
        self._stopping = True
        self._kick.set()
        tasks = [t for _, t in self._inflight.values()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._run_task is not None and self._run_task is not asyncio.current_task():
            await asyncio.gather(self._run_task, return_exceptions=True)

    def stats(self) -> dict[str, Any]:
        """Counters for diagnostics / the status API (no secrets)."""
        return {
            "url": self.client.shown_url,
            "sent": self.sent,
            "failed": dict(self.failed),
            "dead_lettered": self.dead_lettered,
            "expired": self.expired,
            "in_flight": len(self._inflight),
            "failures_in_row": self.pacing.failures_in_row,
            "paused_until": self.pacing.pause_until or None,
            "alarm_waiting": self.pacing.alarm_waiting,
            "probes": self.probes,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "last_success_at": self.last_success_at,
            "last_status": self.last_status,
            "auth_failed": self.auth_failed,
            "auth_failures": self.auth_failures,
            "auth_failed_since": self.auth_failed_since,
            "alarms_refused": self.alarms_refused,
            "last_alarm_refused": self.last_alarm_refused,
        }

    async def run(self) -> None:
        """Forward until :meth:`stop`. Never raises for dispatch or store trouble."""
        self._run_task = asyncio.current_task()
        log_filter = self.client.log_filter
        if log_filter is not None:
            log.addFilter(log_filter)
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.client.timeout_s),
            connector=aiohttp.TCPConnector(limit=self.concurrency),
        )
        try:
            while not self._stopping:
                self._kick.clear()
                wait = await self._step()
                if self._stopping:
                    break
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._kick.wait(), wait)
        finally:
            self._stopping = True
            tasks = [t for _, t in self._inflight.values()]
            if tasks:  # also when cancelled: a POST in flight is finished, not torn
                await asyncio.gather(*tasks, return_exceptions=True)
            await self._session.close()
            self._session = None
            if log_filter is not None:
                log.removeFilter(log_filter)

    # -- internals -------------------------------------------------------------------------

    async def _store(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._call_store is not None:
            return await self._call_store(fn, *args)
        return fn(*args)

    async def _step(self) -> float:
        """Start what may start now; return how long to sleep unless kicked."""
        now = self._clock()
        paused = now < self.pacing.pause_until
        failing = self.pacing.failures_in_row > 0
        # During an outage per-item retry times do not matter: the global pause paces the
        # probes and the probe is always the most urgent item, so recovery starts with it.
        horizon = now if paused or not (self._sweep or failing) else float("inf")
        self._settled = settled = set()
        try:
            try:
                items = await self._store(self.store.due, horizon, self.batch)
            except Exception as e:  # the store is A's; a bad moment there must not kill us
                self._note_error("store", f"outbox read failed: {e}")
                return min(self.poll_s, 1.0)
            items = [i for i in items if i.id not in self._inflight and i.id not in settled
                     and not await self._expired(i, now)]
        finally:
            self._settled = None
        if paused:
            # Dispatch looked down: only a fresh alarm may probe before the pause ends.
            items = [i for i in items if i.priority == PRIO_ALARM and i.attempts == 0]
        elif failing:
            items = items[:1] if not self._inflight else []
        if not items and not self._inflight:
            self._sweep = False
        started = self._admit(items)
        if failing or paused:
            self.probes += started
        if paused:
            return max(0.001, min(self.poll_s, self.pacing.pause_until - now))
        if self._next_retry <= now:
            self._next_retry = float("inf")
        return max(0.001, min(self.poll_s, self._next_retry - now))

    def _admit(self, items: list[Any]) -> int:
        """Start deliveries for ``items`` (most urgent first) as far as the slots and tiers
        allow; return how many started."""
        if self._stopping:
            return 0  # stop() began while this step awaited the store: start nothing new
        started = 0
        for item in items:
            if item.id in self._inflight:
                continue  # started meanwhile (offer() while this step awaited the store)
            if len(self._inflight) >= self.concurrency:
                break
            busy_prio = min((p for p, _ in self._inflight.values()), default=None)
            if busy_prio is not None and busy_prio < item.priority:
                break  # strict tiers: nothing less urgent while something more urgent flies
            if item.priority != PRIO_ALARM and len(self._inflight) >= self.concurrency - 1:
                break  # keep one slot for an alarm
            task = asyncio.create_task(self._deliver(item))
            self._inflight[item.id] = (item.priority, task)
            started += 1
        return started

    async def _expired(self, item: Any, now: float) -> bool:
        limit = self.expire_after_s.get(item.priority)
        if limit is None or item.priority == PRIO_ALARM or now - item.created_at < limit:
            return False
        reason = f"expired: not delivered within {limit:.0f} s"
        try:
            await self._store(self.store.dead_letter, item.id, now, reason)
        except Exception as e:
            self._note_error("store", f"dead-letter write failed: {e}")
            return True
        self.expired += 1
        log.warning("dispatch item %s (%s) dead-lettered: %s", item.id, item.incident_id, reason)
        return True

    def _inflight_alarm(self) -> bool:
        return any(p == PRIO_ALARM for p, _ in self._inflight.values())

    def _loud(self, kind: str, msg: str, *args: Any) -> None:
        """An error line at most every LOUD_LOG_EVERY_S per ``kind``, with how many were
        suppressed: a misconfigured gateway retrying for a weekend must not fill the disk."""
        budget = self._loud_budgets.get(kind)
        if budget is None:
            budget = self._loud_budgets[kind] = LogBudget.every(LOUD_LOG_EVERY_S, self._clock)
        suppressed = budget.take()
        if suppressed is None:
            return
        log.error(msg + (" (%d similar lines suppressed)" if suppressed else ""),
                  *args, *((suppressed,) if suppressed else ()))

    def _note_error(self, reason: str, detail: str) -> None:
        self.failed[reason] = self.failed.get(reason, 0) + 1
        self.last_error = self.client.scrub(f"{reason}: {detail}")[:300]
        self.last_error_at = self._clock()

    async def _deliver(self, item: Any) -> None:
        try:
            assert self._session is not None
            out: Answer = await self.client.post(self._session, item)
            now = self._clock()
            if out.kind == "delivered":
                await self._store(self.store.delivered, item.id, now, out.status or 0, out.detail)
                self.sent += 1
                self.last_success_at = now
                self.last_status = out.status
                if self.auth_failed:
                    log.warning("dispatch accepts our credentials again after %d refusals",
                                self.auth_failures)
                    self.auth_failed, self.auth_failed_since = False, None
                failures = self.pacing.recovered()
                if failures:
                    log.info("dispatch reachable again after %d failures", failures)
                    self._sweep = True  # everything held back goes now, alarms first
            elif out.kind == "dead" and item.priority == PRIO_ALARM:
                # Never dead-letter an alarm: keep it, retry at the alarm cap, say so loudly.
                self.alarms_refused += 1
                self.last_status = out.status
                self._note_error(out.reason, out.detail)
                scrub = self.client.scrub
                self.last_alarm_refused = scrub(f"{item.incident_id}: HTTP {out.status}: "
                                                f"{out.detail}")[:300]
                delay = self.pacing.backoff(item.attempts, item.priority)
                await self._store(self.store.reschedule, item.id, now + delay,
                                  scrub(f"refused: HTTP {out.status}: {out.detail}")[:1000])
                self._next_retry = min(self._next_retry, now + delay)
                self._sweep = False  # honour its backoff: no tight loop, lower tiers go on
                self._loud("alarm_refused",
                           "dispatch REFUSED ALARM %s (item %s) with HTTP %s: kept and retried "
                           "every <= %g s; fix the cause with the dispatch centre and phone "
                           "the alarm in", item.incident_id, item.id, out.status,
                           self.pacing.alarm_backoff_max_s)
            elif out.kind == "dead":
                reason = self.client.scrub(f"HTTP {out.status}: {out.detail}".strip())
                await self._store(self.store.dead_letter, item.id, now, reason)
                self.dead_lettered += 1
                self.last_status = out.status
                self._note_error(out.reason, out.detail)
                log.error("dispatch rejected %s (%s, %s) permanently, dead-lettered: HTTP %s",
                          item.incident_id, item.payload.get("event"), item.id, out.status)
            else:
                if out.kind == "auth":
                    self.auth_failures += 1
                    if not self.auth_failed:
                        self.auth_failed, self.auth_failed_since = True, now
                    self._loud("auth", "dispatch refuses our credentials (HTTP %s, %d times "
                               "since %s): nothing is dropped, every message stays pending and "
                               "is retried; check [dispatch] token / secret, the clock and the "
                               "client certificate (`panicgw diag`)", out.status,
                               self.auth_failures, rfc3339(self.auth_failed_since or now))
                self._note_error(out.reason, out.detail)
                self.last_status = out.status
                until = self.pacing.failed(item.priority, out.retry_after, now,
                                           self._inflight_alarm())
                # It is tried again at the next probe (it is the most urgent waiting, or
                # goes with the sweep after dispatch answers): never earlier than that.
                await self._store(self.store.reschedule, item.id, until,
                                  self.client.scrub(f"{out.reason}: {out.detail}")[:1000])
                self._sweep = False
                if out.kind != "auth":  # auth failures are logged by _loud, rate-bounded
                    log.warning("dispatch %s failed (%s): next attempt in %.1f s, at %s "
                                "(one probe, the most urgent message first)",
                                item.incident_id, out.reason, until - now, rfc3339(until))
        except Exception as e:  # a store failure: the row stays pending and is retried
            self._note_error("store", f"{type(e).__name__}: {e}")
            log.exception("forwarder: store update for outbox item %s failed", item.id)
        finally:
            self._inflight.pop(item.id, None)
            if self._settled is not None:
                self._settled.add(item.id)
            self._kick.set()
