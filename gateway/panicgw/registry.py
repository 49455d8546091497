"""Device and site registry records, the export file format and key files.

The export file (``panic-button-registry/1``) is how an installer's laptop hands devices to a
gateway: ``panictool provision`` writes it, ``panicgw devices import`` reads it. It holds
device keys, so it is written with file mode 0600 and never logged.

Key generations: every device carries ``key_gen`` (1 at provision, +1 per rekey). An export
written before a rekey carries the older generation, so importing it again is refused
instead of silently putting back the replaced key (which would lock the button out:
every frame would be ``bad_tag``). Files without ``key_gen`` read as generation 1.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

FORMAT = "panic-button-registry/1"
SITE_KINDS = ("shop", "home")
PATHS = ("lora", "wifi")
KEY_LEN = 16
MAX_U32 = 0xFFFFFFFF
MIN_SUPERVISION_S = 60


class RegistryError(ValueError):
    """Bad registry input; the message names the device and the field."""


class KeyConflictError(RegistryError):
    """An import would replace a device's key with an older generation's, or with a
    different key of the same generation (a forked key). The message names the device and
    both generations; ``allow_older_key=True`` (``--allow-older-key``) overrides."""

    def __init__(self, device_id: int, stored_gen: int, new_gen: int) -> None:
        self.device_id, self.stored_gen, self.new_gen = device_id, stored_gen, new_gen
        if new_gen < stored_gen:
            what = (f"the gateway has key generation {stored_gen}, the import has the older "
                    f"generation {new_gen} (an export from before a rekey)")
        else:
            what = (f"the import has a different key of the same generation {new_gen} as the "
                    "gateway (a forked key: two rekeys from the same state)")
        super().__init__(
            f"device {device_id:08X}: {what}; importing it would replace the key the button "
            "most likely has and every frame would be rejected as bad_tag. Import a current "
            "export instead (`panicgw devices export FILE` on the gateway that has the newest "
            "key), or rekey the button (`panictool rekey`); if the button really has this "
            "file's key (check with `panictool verify`), rerun with --allow-older-key")


@dataclass(slots=True)
class SiteRecord:
    """Where a button is installed: what dispatch needs to send a patrol."""

    name: str
    kind: str  # "shop" | "home"
    address: str
    lat: float
    lon: float
    contact: str = ""
    phone: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "address": self.address,
            "lat": self.lat,
            "lon": self.lon,
            "contact": self.contact,
            "phone": self.phone,
        }


@dataclass(slots=True)
class DeviceRecord:
    """A provisioned button. ``key`` is the 16-byte secret shared with the button only."""

    device_id: int
    key: bytes
    site: SiteRecord
    label: str = ""
    paths: list[str] = field(default_factory=lambda: ["lora"])
    supervision_s: int = 3600
    firmware: str | None = None
    key_gen: int = 1  # 1 at provision, +1 per rekey (contract C4)

    def to_dict(self, with_key: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {"device_id": self.device_id}
        if with_key:
            d["key"] = self.key.hex()
        d["key_gen"] = self.key_gen
        d.update(
            {
                "label": self.label,
                "paths": list(self.paths),
                "supervision_s": self.supervision_s,
                "firmware": self.firmware,
                "site": self.site.to_dict(),
            }
        )
        return d

    def __repr__(self) -> str:  # never show the key in logs or tracebacks
        return (
            f"DeviceRecord(device_id=0x{self.device_id:08X}, label={self.label!r}, "
            f"site={self.site.name!r}, paths={self.paths!r})"
        )


def _who(device_id: Any, index: int | None) -> str:
    if isinstance(device_id, int) and not isinstance(device_id, bool):
        return f"device 0x{device_id:08X}"
    return f"device #{index}" if index is not None else "device"


def validate(rec: DeviceRecord, index: int | None = None) -> DeviceRecord:
    """Check every field; raise RegistryError naming the device and the field."""
    who = _who(rec.device_id, index)
    if (
        not isinstance(rec.device_id, int)
        or isinstance(rec.device_id, bool)
        or not 0 <= rec.device_id <= MAX_U32
    ):
        raise RegistryError(f"{who}: field 'device_id' must be an integer 0..{MAX_U32}")
    if not isinstance(rec.key, bytes | bytearray) or len(rec.key) != KEY_LEN:
        raise RegistryError(f"{who}: field 'key' must be {KEY_LEN} bytes")
    if not isinstance(rec.label, str):
        raise RegistryError(f"{who}: field 'label' must be a string")
    if (
        not isinstance(rec.paths, list)
        or not rec.paths
        or any(p not in PATHS for p in rec.paths)
        or len(set(rec.paths)) != len(rec.paths)
    ):
        raise RegistryError(f"{who}: field 'paths' must be a non-empty list of {PATHS}")
    if (
        not isinstance(rec.supervision_s, int)
        or isinstance(rec.supervision_s, bool)
        or rec.supervision_s < MIN_SUPERVISION_S
    ):
        raise RegistryError(
            f"{who}: field 'supervision_s' must be an integer >= {MIN_SUPERVISION_S}"
        )
    if rec.firmware is not None and not isinstance(rec.firmware, str):
        raise RegistryError(f"{who}: field 'firmware' must be a string or null")
    if (not isinstance(rec.key_gen, int) or isinstance(rec.key_gen, bool)
            or not 1 <= rec.key_gen <= MAX_U32):
        raise RegistryError(f"{who}: field 'key_gen' must be an integer >= 1")
    s = rec.site
    if not isinstance(s, SiteRecord):
        raise RegistryError(f"{who}: field 'site' must be a site object")
    if not isinstance(s.name, str) or not s.name.strip():
        raise RegistryError(f"{who}: field 'site.name' must be a non-empty string")
    if s.kind not in SITE_KINDS:
        raise RegistryError(f"{who}: field 'site.kind' must be one of {SITE_KINDS}")
    if not isinstance(s.address, str):
        raise RegistryError(f"{who}: field 'site.address' must be a string")
    for name, lo, hi in (("lat", -90.0, 90.0), ("lon", -180.0, 180.0)):
        v = getattr(s, name)
        if (
            not isinstance(v, int | float)
            or isinstance(v, bool)
            or not math.isfinite(v)
            or not lo <= v <= hi
        ):
            raise RegistryError(f"{who}: field 'site.{name}' must be a number {lo}..{hi}")
    for name in ("contact", "phone"):
        if not isinstance(getattr(s, name), str):
            raise RegistryError(f"{who}: field 'site.{name}' must be a string")
    rec.key = bytes(rec.key)
    return rec


def _site_from(obj: Any, who: str) -> SiteRecord:
    if not isinstance(obj, dict):
        raise RegistryError(f"{who}: field 'site' must be an object")
    for req in ("name", "kind", "address", "lat", "lon"):
        if req not in obj:
            raise RegistryError(f"{who}: field 'site.{req}' is missing")
    return SiteRecord(
        name=obj["name"],
        kind=obj["kind"],
        address=obj["address"],
        lat=obj["lat"],
        lon=obj["lon"],
        contact=obj.get("contact", ""),
        phone=obj.get("phone", ""),
    )


def record_from_dict(obj: Any, index: int | None = None) -> DeviceRecord:
    """One device of an export file; raises RegistryError naming the bad field."""
    if not isinstance(obj, dict):
        raise RegistryError(f"device #{index}: must be an object")
    who = _who(obj.get("device_id"), index)
    for req in ("device_id", "key", "site"):
        if req not in obj:
            raise RegistryError(f"{who}: field '{req}' is missing")
    key_hex = obj["key"]
    try:
        if not isinstance(key_hex, str):
            raise ValueError
        key = bytes.fromhex(key_hex)
    except ValueError:
        raise RegistryError(f"{who}: field 'key' must be {2 * KEY_LEN} hex digits") from None
    rec = DeviceRecord(
        device_id=obj["device_id"],
        key=key,
        site=_site_from(obj["site"], who),
        label=obj.get("label", ""),
        paths=obj.get("paths", ["lora"]),
        supervision_s=obj.get("supervision_s", 3600),
        firmware=obj.get("firmware"),
        key_gen=obj.get("key_gen", 1),  # files from before key generations: 1
    )
    return validate(rec, index)


def write_private(path: str | os.PathLike[str], data: bytes) -> None:
    """Create or replace a file readable by its owner only (0600), atomically and durably:
    export files and key files hold device keys."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_export(path: str | os.PathLike[str], records: list[DeviceRecord]) -> None:
    """Write the export file atomically with mode 0600 (it holds keys)."""
    for i, r in enumerate(records):
        validate(r, i)
    doc = {"format": FORMAT, "devices": [r.to_dict() for r in records]}
    write_private(path, (json.dumps(doc, indent=2) + "\n").encode())


def read_export(path: str | os.PathLike[str]) -> list[DeviceRecord]:
    """Parse and validate an export file; duplicate device ids are an error."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise RegistryError(f"cannot read {path}: {e.strerror}") from None
    return parse_export(text, str(path))


def parse_export(text: str, source: str) -> list[DeviceRecord]:
    """:func:`read_export` of text already read (``panicgw devices import -``: stdin);
    ``source`` names it in errors."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise RegistryError(f"{source}: not JSON (line {e.lineno}: {e.msg})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise RegistryError(f"{source}: field 'format' must be {FORMAT!r}")
    devices = doc.get("devices")
    if not isinstance(devices, list):
        raise RegistryError(f"{source}: field 'devices' must be a list")
    out: list[DeviceRecord] = []
    seen: set[int] = set()
    for i, obj in enumerate(devices):
        rec = record_from_dict(obj, i)
        if rec.device_id in seen:
            raise RegistryError(f"{_who(rec.device_id, i)}: field 'device_id' appears twice")
        seen.add(rec.device_id)
        out.append(rec)
    return out


def write_key_file(path: str | os.PathLike[str], device_id: int, key: bytes,
                   **extra: Any) -> None:
    """One device's key as a 0600 JSON file: a sealed backup (`panictool provision
    --key-file`) or the hand-over from `panicgw devices rekey --key-file` to
    `panictool rekey --use-key` (which passes ``key_gen=N``: the generation it is)."""
    doc = {"device_id": device_id, "device_id_hex": f"{device_id:08X}", "key": key.hex(),
           "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}
    write_private(path, (json.dumps(doc) + "\n").encode())


class KeyFile(NamedTuple):
    """What a key file holds (``key_gen`` None: not recorded, e.g. bare hex)."""

    device_id: int | None
    key: bytes
    key_gen: int | None


def read_key_file(path: str | os.PathLike[str]) -> tuple[int | None, bytes]:
    """(device id or None, key) from a file of :func:`write_key_file` or one holding just
    the 32 hex digits. Raises RegistryError saying what is wrong (never showing the key)."""
    kf = read_key_file_full(path)
    return kf.device_id, kf.key


def read_key_file_full(path: str | os.PathLike[str]) -> KeyFile:
    """Like :func:`read_key_file`, with the key generation the file records."""
    key_gen = None
    try:
        text = Path(path).read_text().strip()
    except OSError as e:
        raise RegistryError(f"cannot read {path}: {e.strerror}") from None
    device_id = None
    raw = text
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            raise RegistryError(f"{path}: not valid JSON") from None
        raw = str(doc.get("key", ""))
        device_id = doc.get("device_id")
        if device_id is not None and not (isinstance(device_id, int)
                                          and 0 < device_id < 0xFFFFFFFF):
            raise RegistryError(f"{path}: device_id must be an integer id")
        key_gen = doc.get("key_gen")
        if key_gen is not None and not (isinstance(key_gen, int)
                                        and not isinstance(key_gen, bool) and key_gen >= 1):
            raise RegistryError(f"{path}: key_gen must be an integer >= 1")
    try:
        key = bytes.fromhex(raw)
    except ValueError:
        key = b""
    if len(key) != 16:
        raise RegistryError(f"{path}: the key must be 32 hex digits")
    return KeyFile(device_id, key, key_gen)
