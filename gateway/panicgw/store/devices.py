"""The registry in the DB: sites, devices, their keys and key generations, and the replay
window each key has (``device_state``'s replay columns, ``retired_keys``).

The record types and validation are the registry file format's (panicgw.registry); this
module is where they meet SQL. Every change bumps the registry generation in the same
commit, so the running daemon reloads its cache (panicgw.pipeline).
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from panicgw.registry import DeviceRecord, KeyConflictError, SiteRecord, validate
from panicgw.store.meta import MetaRepository
from panicproto import mac


class DeviceRepository(MetaRepository):
    def _upsert_site(self, s: SiteRecord) -> int:
        self.db.execute(
            "INSERT INTO sites (name, kind, address, lat, lon, contact, phone) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name, address) DO UPDATE SET "
            "kind = excluded.kind, lat = excluded.lat, lon = excluded.lon, "
            "contact = excluded.contact, phone = excluded.phone",
            (s.name, s.kind, s.address, float(s.lat), float(s.lon), s.contact, s.phone),
        )
        row = self.db.execute(
            "SELECT id FROM sites WHERE name = ? AND address = ?", (s.name, s.address)
        ).fetchone()
        return int(row[0])

    def upsert_device(self, rec: DeviceRecord, now: float | None = None, *,
                      allow_older_key: bool = False) -> None:
        """Register or update a device and its site (replay state is kept on update).

        Key generations (contract C4): replacing a stored key with one of an older
        generation, or with a different key of the same generation (a forked key), raises
        :class:`~panicgw.registry.KeyConflictError` unless ``allow_older_key``. A key that
        changes without a newer generation (the override) is stored as ``stored + 1``, so
        it is the newest from now on and the key it replaced is refused next time.

        A new device, a new key or a new supervision interval restarts supervision's
        silence count (``enrolled_at``): the installer is at the button, which starts its
        schedule anew. A re-import that changes neither (a registry sync between
        gateways) does not, or a periodic sync would hide a silent button forever.

        A new key is a rekey: the replay window starts over (:meth:`_install_key`), as the
        button's counter does when ``panictool rekey`` writes the key."""
        validate(rec)
        now = time.time() if now is None else now
        with self.transaction():
            row = self.db.execute(
                "SELECT key, key_gen, supervision_s, enrolled_at FROM devices "
                "WHERE device_id = ?", (rec.device_id,)).fetchone()
            key_gen, enrolled = rec.key_gen, now
            new_key = True
            if row is not None:
                old_key, old_gen, old_sup, old_enrolled = (bytes(row[0]), int(row[1]),
                                                           int(row[2]), float(row[3]))
                if mac.equal(old_key, bytes(rec.key)):
                    new_key = False
                    key_gen = max(old_gen, rec.key_gen)
                    if rec.supervision_s == old_sup:
                        enrolled = old_enrolled
                elif rec.key_gen <= old_gen:
                    if not allow_older_key:
                        raise KeyConflictError(rec.device_id, old_gen, rec.key_gen)
                    key_gen = old_gen + 1
                if new_key:
                    self._retire_key(rec.device_id, old_key, old_gen, now)
            site_id = self._upsert_site(rec.site)
            self.db.execute(
                "INSERT INTO devices (device_id, key, site_id, label, paths, supervision_s, "
                "firmware, registered_at, updated_at, key_gen, enrolled_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (device_id) DO UPDATE SET key = excluded.key, "
                "site_id = excluded.site_id, label = excluded.label, paths = excluded.paths, "
                "supervision_s = excluded.supervision_s, firmware = excluded.firmware, "
                "updated_at = excluded.updated_at, key_gen = excluded.key_gen, "
                "enrolled_at = excluded.enrolled_at",
                (rec.device_id, bytes(rec.key), site_id, rec.label, json.dumps(rec.paths),
                 rec.supervision_s, rec.firmware, now, now, key_gen, enrolled),
            )
            if new_key:
                self._install_key(rec.device_id, bytes(rec.key))
            else:
                self.db.execute(
                    "INSERT OR IGNORE INTO device_state (device_id) VALUES (?)",
                    (rec.device_id,))
            self._bump_generation()

    def upsert_devices(self, recs: list[DeviceRecord], *,
                       allow_older_key: bool = False) -> None:
        """All or nothing: one refused device (KeyConflictError) rolls back every one."""
        with self.transaction():
            for r in recs:
                self.upsert_device(r, allow_older_key=allow_older_key)

    _DEVICE_SELECT = (
        "SELECT d.device_id, d.key, d.label, d.paths, d.supervision_s, d.firmware, "
        "s.name, s.kind, s.address, s.lat, s.lon, s.contact, s.phone, d.key_gen "
        "FROM devices d JOIN sites s ON s.id = d.site_id"
    )

    @staticmethod
    def _device_from_row(row: tuple[Any, ...]) -> DeviceRecord:
        return DeviceRecord(
            device_id=int(row[0]),
            key=bytes(row[1]),
            label=row[2],
            paths=json.loads(row[3]),
            supervision_s=int(row[4]),
            firmware=row[5],
            site=SiteRecord(row[6], row[7], row[8], row[9], row[10], row[11], row[12]),
            key_gen=int(row[13]),
        )

    def enrolled_at(self, device_id: int) -> float | None:
        """When the device was last (re)enrolled (see :meth:`upsert_device`)."""
        row = self.db.execute("SELECT enrolled_at FROM devices WHERE device_id = ?",
                              (device_id,)).fetchone()
        return float(row[0]) if row else None

    def get_device(self, device_id: int) -> DeviceRecord | None:
        row = self.db.execute(
            self._DEVICE_SELECT + " WHERE d.device_id = ?", (device_id,)
        ).fetchone()
        return self._device_from_row(row) if row else None

    def list_devices(self) -> list[DeviceRecord]:
        rows = self.db.execute(self._DEVICE_SELECT + " ORDER BY d.device_id").fetchall()
        return [self._device_from_row(r) for r in rows]

    def device_keys(self) -> list[tuple[int, bytes, int, int]]:
        """(device id, key, supervision interval, key generation) of every device: the
        pipeline's cache."""
        return [(int(r[0]), bytes(r[1]), int(r[2]), int(r[3])) for r in self.db.execute(
            "SELECT device_id, key, supervision_s, key_gen FROM devices")]

    def device_key_gen(self, device_id: int) -> int | None:
        row = self.db.execute("SELECT key_gen FROM devices WHERE device_id = ?",
                              (device_id,)).fetchone()
        return int(row[0]) if row else None

    # -- key changes and the replay window ------------------------------------------------

    @staticmethod
    def _fingerprint(device_id: int, key: bytes) -> bytes:
        """What retired_keys keeps of a key: enough to recognise it, useless to sign with."""
        return hashlib.sha256(b"panicgw retired key\x00" + device_id.to_bytes(4, "big")
                              + bytes(key)).digest()[:16]

    def _retire_key(self, device_id: int, key: bytes, key_gen: int, now: float) -> None:
        """Remember the outgoing key with the replay window it has now (see
        :meth:`_install_key`). Call inside a transaction, before the key is replaced."""
        st = self.db.execute("SELECT replay_highest, replay_bitmap FROM device_state "
                             "WHERE device_id = ?", (device_id,)).fetchone()
        highest, bitmap = (int(st[0]), str(st[1])) if st else (-1, "0")
        self.db.execute(
            "INSERT INTO retired_keys (device_id, fingerprint, key_gen, replay_highest, "
            "replay_bitmap, retired_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (device_id, fingerprint) DO UPDATE SET key_gen = excluded.key_gen, "
            "replay_highest = excluded.replay_highest, replay_bitmap = excluded.replay_bitmap, "
            "retired_at = excluded.retired_at",
            (device_id, self._fingerprint(device_id, key), key_gen, highest, bitmap, now))

    def _install_key(self, device_id: int, key: bytes) -> None:
        """The replay window for a key the device now has. A key it never had before: an
        empty window, because ``panictool rekey`` restarts the button's counter with the
        new key, and no frame made with an older key passes the new key's tag, so the
        counters can be used again (events, incidents and dispatch ids carry the key
        generation, so they stay apart). A key it had before (an older export imported with
        ``--allow-older-key``, a removed device registered again): the window that key had
        when it was retired, so no frame recorded under it can be replayed; a button whose
        counter restarted under it is moved forward by RESYNC. Call inside a transaction."""
        row = self.db.execute(
            "SELECT replay_highest, replay_bitmap FROM retired_keys WHERE device_id = ? AND "
            "fingerprint = ?", (device_id, self._fingerprint(device_id, key))).fetchone()
        highest, bitmap = (int(row[0]), str(row[1])) if row else (-1, "0")
        self.db.execute(
            "INSERT INTO device_state (device_id, replay_highest, replay_bitmap) "
            "VALUES (?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET "
            "replay_highest = excluded.replay_highest, replay_bitmap = excluded.replay_bitmap",
            (device_id, highest, bitmap))

    def remove_device(self, device_id: int) -> bool:
        """Unregister (its frames are rejected from now on); its events and outbox stay, and
        so does its key's replay window (retired_keys), should it be registered again."""
        with self.transaction():
            row = self.db.execute("SELECT key, key_gen FROM devices WHERE device_id = ?",
                                  (device_id,)).fetchone()
            if row is not None:
                self._retire_key(device_id, bytes(row[0]), int(row[1]), time.time())
            cur = self.db.execute("DELETE FROM devices WHERE device_id = ?", (device_id,))
            self.db.execute("DELETE FROM device_state WHERE device_id = ?", (device_id,))
            self.db.execute(
                "DELETE FROM sites WHERE id NOT IN (SELECT site_id FROM devices)"
            )
            if cur.rowcount:
                self._bump_generation()
        return cur.rowcount > 0

    def rekey(self, device_id: int, key: bytes, now: float | None = None) -> int | None:
        """Replace a device's key: its generation goes up by one, its replay window starts
        over (:meth:`_install_key`: the button's counter restarts with the new key) and
        supervision counts silence from now (the button is being rekeyed; until it has the
        new key its frames are bad_tag). Returns the new key generation; the current one,
        with nothing changed, when ``key`` is already the device's key (restarting the
        window of a key in use would let its recorded frames be replayed); None when the
        device is not registered."""
        if len(key) != 16:
            raise ValueError("key must be 16 bytes")
        now = time.time() if now is None else now
        with self.transaction():
            row = self.db.execute("SELECT key, key_gen FROM devices WHERE device_id = ?",
                                  (device_id,)).fetchone()
            if row is None:
                return None
            old_key, old_gen = bytes(row[0]), int(row[1])
            if mac.equal(old_key, bytes(key)):
                return old_gen
            self._retire_key(device_id, old_key, old_gen, now)
            self.db.execute(
                "UPDATE devices SET key = ?, updated_at = ?, enrolled_at = ?, "
                "key_gen = key_gen + 1 WHERE device_id = ?",
                (bytes(key), now, now, device_id),
            )
            self._install_key(device_id, bytes(key))
            self._bump_generation()
        return old_gen + 1

    def save_replay(self, device_id: int, highest: int, bitmap: int) -> None:
        self.db.execute(
            "INSERT INTO device_state (device_id, replay_highest, replay_bitmap) VALUES (?, ?, ?)"
            " ON CONFLICT (device_id) DO UPDATE SET replay_highest = excluded.replay_highest, "
            "replay_bitmap = excluded.replay_bitmap",
            (device_id, highest, format(bitmap, "x")),
        )
