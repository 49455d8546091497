"""One gateway's membership of the group: the link, the codec and the shared state, wired.

The daemon (phase 2) holds one :class:`ClusterNode` and uses it from three places:

- the pipeline's outcomes: :meth:`report` for every verified frame, ``await`` :meth:`elect`
  for every LoRa downlink (transmit only when the decision says so);
  :meth:`peer_verdict` inside the batch, before a new frame is stored;
- supervision: :meth:`last_heard` (heard by any gateway) and :meth:`owns_silence`;
- the registry: :meth:`local_change` after every import, rekey or removal made on this
  gateway, and ``on_registry(entry)`` for every change that comes from the group (called on
  the MQTT thread: hand it to the store's writer; ``entry.record`` None means removal).

Nothing here waits for the broker: with the link down, :meth:`elect` decides at once,
:meth:`owns_silence` says yes, reports and local changes wait in buffers, and
everything converges after the reconnect: the broker re-sends retained status, digests and
registry; this gateway re-publishes its own status and digest, the registry entries the
broker lost, and the local changes made meanwhile (only once it has the group's registry,
marked by the echo of its own status: see :attr:`synced`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from panicgw.cluster.crypto import GroupKeys
from panicgw.cluster.election import AsyncElector, Candidate, Decision
from panicgw.cluster.link import ClusterLink
from panicgw.cluster.members import Membership
from panicgw.cluster.messages import (
    Claim,
    Codec,
    Digest,
    Gone,
    Outgoing,
    RegistryEntry,
    Rejected,
    RxReport,
    Status,
)
from panicgw.cluster.registry_replica import APPLIED, STALE, RegistryReplica
from panicgw.cluster.sequence import SeqSource
from panicgw.cluster.settings import ClusterSettings
from panicgw.cluster.state import PeerVerdict, ReceptionState
from panicgw.registry import DeviceRecord, KeyConflictError

log = logging.getLogger("panicgw.cluster")

LOG_EVERY_S = 60.0  # at most one warning per rejection reason a minute
TICK_S = 0.25
RESTORE_EVERY_S = 10.0
PRUNE_EVERY_S = 5.0


class ClusterNode:
    def __init__(self, settings: ClusterSettings, keys: GroupKeys, *,
                 on_registry: Callable[[RegistryEntry], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        s = settings
        self.settings = s
        self.gateway_id = s.gateway_id
        self.on_registry = on_registry
        self.clock = clock
        seq_file = Path(s.state_dir) / "cluster-seq" if s.state_dir else None
        self.codec = Codec(keys, s.gateway_id, seq=SeqSource(seq_file, clock), clock=clock)
        self.topics = self.codec.topics
        self.state = ReceptionState(s.gateway_id, copy_window_s=s.copy_window_s, clock=clock)
        self.members = Membership(s.gateway_id, stale_s=s.stale_s)
        self.replica = RegistryReplica()
        self.elector = AsyncElector(s.gateway_id, s.collect_s, live_peers=self.members.live)
        self.link = ClusterLink(
            s.host, s.port, f"panicgw-cluster-{s.group}-{s.gateway_id}",
            subscriptions=(self.topics.all,), on_message=self._on_message,
            on_connect=self._on_connect, will=self._will, username=s.username,
            password=s.password, tls=s.tls, ca_file=s.ca_file or None,
            client_cert=s.client_cert or None, client_key=s.client_key or None,
            keepalive=s.keepalive_s, reconnect_min_s=s.reconnect_min_s,
            reconnect_max_s=s.reconnect_max_s, publish_delay_s=s.publish_delay_s)
        self.stats: Counter[str] = Counter()
        self._conn = 0
        self._info: dict[str, Any] = {}
        self._synced = threading.Event()
        self._lock = threading.Lock()
        self._pending: dict[int, tuple[DeviceRecord | None, bool]] = {}
        self._logged: dict[str, float] = {}
        self._restored: dict[int, float] = {}
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        self._next_status = 0.0
        self._next_digest = 0.0
        self._next_prune = 0.0

    # -- life ----------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Connect in the background. ``loop``: where :meth:`elect` will be awaited (the
        running loop when called from one)."""
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
        if loop is not None:
            self.elector.attach(loop)
        self._stop.clear()
        self.link.start()
        self._timer = threading.Thread(target=self._tick_main, name="cluster-timer",
                                       daemon=True)
        self._timer.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Say goodbye (a retained ``gone``: peers take over at once) and disconnect."""
        self._stop.set()
        if self._timer is not None:
            self._timer.join(timeout)
        bye = self.codec.encode(Gone(self.gateway_id, self._conn, "shutdown"))
        self.link.stop(timeout, last=(bye.topic, bye.payload))
        self.codec.seq.close()

    @property
    def connected(self) -> bool:
        return self.link.connected

    @property
    def synced(self) -> bool:
        """Connected, and the group's retained registry has arrived since the connect."""
        return self.link.connected and self._synced.is_set()

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(timeout) and self.link.connected

    # -- receptions and downlinks --------------------------------------------------------

    def report(self, r: RxReport) -> None:
        """A frame this gateway verified: into the union, and to the peers."""
        if r.gateway != self.gateway_id:
            raise ValueError("report() is for this gateway's own receptions")
        self.state.observe(r)
        self._send(self.codec.encode(r))

    async def elect(self, r: RxReport) -> Decision:
        """Report ``r`` and decide whether this gateway transmits its LoRa downlink."""
        if not r.downlink or r.path != "lora":
            raise ValueError("elect() is for frames with a LoRa downlink to send")
        self.report(r)
        isolated = not self.link.connected
        d = await self.elector.run(r.key, Candidate(self.gateway_id, r.snr, r.rssi),
                                   isolated=isolated)
        if d.transmit and not isolated:
            self._send(self.codec.encode(Claim(self.gateway_id, r.key, self.clock())))
        self.stats[f"election_{d.reason}"] += 1
        return d

    def peer_verdict(self, device_id: int, key_gen: int, counter: int, attempt: int,
                     at: float | None = None) -> PeerVerdict:
        return self.state.peer_verdict(device_id, key_gen, counter, attempt, at)

    # -- supervision ---------------------------------------------------------------------

    def last_heard(self, device_id: int) -> float | None:
        return self.state.last_heard(device_id)

    def owns_silence(self, device_id: int) -> bool:
        return self.members.owns_silence(device_id, self.link.connected)

    # -- registry ------------------------------------------------------------------------

    def local_change(self, device_id: int, record: DeviceRecord | None, *,
                     allow_older_key: bool = False) -> None:
        """An import/rekey (``record``) or removal (None) made on this gateway: published
        once the group's registry is here (now, when it is)."""
        with self._lock:
            self._pending[device_id] = (record, allow_older_key)
        if self.synced:
            self._flush_local()

    def _flush_local(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for device_id, (record, override) in pending.items():
            try:
                if not self.replica.check_local(record, device_id, override):
                    continue
            except KeyConflictError as e:
                # An old export imported here: the group keeps its newer key, and so does
                # this gateway's store (the group's entry is handed back to it).
                self.stats["local_refused"] += 1
                log.error("registry change not published: %s", e)
                cur = self.replica.get(device_id)
                if cur is not None and self.on_registry is not None:
                    self.on_registry(cur)
                continue
            entry = self.codec.registry_entry(record, device_id,
                                              self.replica.next_gen(device_id))
            out = self.codec.encode(entry)
            self.replica.apply(entry, out.payload)
            self._send(out)
            self.stats["registry_published"] += 1

    def _restore(self, device_id: int) -> None:
        """An older entry was published, e.g. an old message played back (retained) by
        someone with broker access: put ours back, so a gateway joining later does not
        start from the old one. At most once per device per RESTORE_EVERY_S (no storm)."""
        now = time.monotonic()
        if now - self._restored.get(device_id, -RESTORE_EVERY_S) < RESTORE_EVERY_S:
            return
        self._restored[device_id] = now
        for dev, payload in self.replica.payloads([device_id]):
            self.link.publish(self.topics.registry(dev), payload, retain=True)
            self.stats["registry_restored"] += 1

    def _repair(self) -> None:
        for device_id, payload in self.replica.missing_on_broker():
            self.link.publish(self.topics.registry(device_id), payload, retain=True)
            self.stats["registry_repaired"] += 1

    # -- status and fleet ----------------------------------------------------------------

    def set_status(self, info: dict[str, Any]) -> None:
        """Details for the peers' fleet view (queue depth, bridge, version...)."""
        self._info = dict(info)
        self._publish_status()

    def _publish_status(self) -> None:
        st = Status(self.gateway_id, self._conn, self.clock(), self.settings.supervise,
                    self._info)
        out = self.codec.encode(st)
        self.link.publish(out.topic, out.payload, sticky=True)
        self._next_status = time.monotonic() + self.settings.status_interval_s

    def _publish_digest(self, force: bool = False) -> None:
        """The retained digest: ~50 bytes a device heard (0.5 MB for 10,000), so sent
        every ``digest_interval_s`` when something changed, and fresh at every connect (it
        is what peers catch up from after an outage); live reports carry the rest."""
        own = self.state.own_digest(force)
        if not own:  # nothing (new) heard: the retained one still holds
            return
        out = self.codec.encode(Digest(self.gateway_id, self.clock(), own))
        self.link.publish(out.topic, out.payload, sticky=True)
        self._next_digest = time.monotonic() + self.settings.digest_interval_s

    def fleet(self) -> dict[str, Any]:
        return {"gateway": self.gateway_id, "group": self.topics.group,
                "connected": self.link.connected, "synced": self.synced,
                "members": self.members.snapshot(), "devices": self.state.fleet()}

    def counters(self) -> dict[str, Any]:
        return {"link": self.link.stats(), "rejected": dict(self.codec.rejected),
                "accepted": self.codec.accepted, "registry": dict(self.replica.stats),
                "elections": dict(self.elector.election.stats), "node": dict(self.stats),
                "live_peers": sorted(self.members.live())}

    # -- link callbacks (paho's thread) --------------------------------------------------

    def _will(self) -> tuple[str, bytes]:
        self._conn = self.codec.seq.next()
        out = self.codec.encode(Gone(self.gateway_id, self._conn, "connection lost"))
        return out.topic, out.payload

    def _on_connect(self) -> None:
        self._synced.clear()
        self.replica.forget_broker()
        self._publish_status()  # its echo marks the end of the retained messages
        self._publish_digest(force=True)

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        try:
            inc = self.codec.decode(topic, payload)
        except Rejected as e:
            self._log_reject(e.reason, str(e))
            return
        m = inc.msg
        if isinstance(m, RegistryEntry):
            if retained:
                self.replica.seen_on_broker(m.device_id, m.gen)
            verdict = self.replica.apply(m, payload)
            if verdict == APPLIED and self.on_registry is not None:
                self.on_registry(m)
            elif verdict == STALE:
                # Live deliveries lose their retain flag (MQTT 3.1.1), so any stale
                # entry may have replaced the broker's retained copy: restore ours.
                self._log_reject("registry_stale", f"{m!r} is older than ours")
                self._restore(m.device_id)
            return
        if inc.sender == self.gateway_id:
            if isinstance(m, Status) and m.conn == self._conn and not self._synced.is_set():
                self._synced.set()
                self._flush_local()
                self._repair()
            return
        if isinstance(m, RxReport):
            self.state.observe(m)
            if m.downlink and m.path == "lora":
                self.elector.observe(m.key, Candidate(m.gateway, m.snr, m.rssi))
        elif isinstance(m, Claim):
            self.elector.observe_claim(m.key, m.gateway)
        elif isinstance(m, Status):
            self.members.status(m)
        elif isinstance(m, Gone):
            self.members.gone(m)
        elif isinstance(m, Digest):
            self.state.merge_digest(m)

    def _log_reject(self, reason: str, detail: str) -> None:
        now = time.monotonic()
        if now - self._logged.get(reason, -LOG_EVERY_S) >= LOG_EVERY_S:
            self._logged[reason] = now
            log.warning("cluster message rejected (%s): %s", reason, detail)

    # -- timer thread --------------------------------------------------------------------

    def _tick_main(self) -> None:
        while not self._stop.wait(TICK_S):
            try:
                now = time.monotonic()
                if self.link.connected and now >= self._next_status:
                    self._publish_status()
                if now >= self._next_digest:
                    self._publish_digest()
                if now >= self._next_prune:
                    self.state.prune()
                    self.elector.prune()
                    self._next_prune = now + PRUNE_EVERY_S
            except Exception:  # the timer must survive anything
                log.exception("cluster timer failed")

    def _send(self, out: Outgoing) -> None:
        self.link.publish(out.topic, out.payload, retain=out.retain)
