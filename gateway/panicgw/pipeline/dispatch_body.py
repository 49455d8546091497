"""The dispatch body for a stored event, degraded rather than lost.

A dispatch payload that cannot be built (bad site data, a builder bug) never fails the
batch: the event is stored and acknowledged and the outbox gets a degraded body (the failed
parts replaced, ``detail`` starting with ``DEGRADED:``). Only when even the minimal body
fails is that one frame rolled back and rejected (``payload_error``, see commit.py).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from panicgw.forward import payload as dispatch_payload
from panicgw.registry import SITE_KINDS, SiteRecord

log = logging.getLogger("panicgw.pipeline")

PayloadBuilder = Callable[..., dict[str, Any]]

UNKNOWN_SITE = SiteRecord("(device removed from registry)", "shop", "", 0.0, 0.0)


class PayloadFailed(Exception):
    """Not even a minimal dispatch body could be built for a stored event."""


def _safe_text(value: Any, limit: int = 500) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def safe_site(site: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The site with every field the payload schema would refuse replaced; and their names."""
    out: dict[str, Any] = {}
    replaced: list[str] = []
    name = _safe_text(site.get("name"))
    out["name"] = name or "(site name unavailable)"
    kind = site.get("kind")
    out["kind"] = kind if kind in SITE_KINDS else "shop"
    for k in ("address", "contact", "phone"):
        v = _safe_text(site.get(k))
        out[k] = v if v is not None else ""
    for k, lim in (("lat", 90.0), ("lon", 180.0)):
        v = site.get(k)
        ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) \
            and -lim <= v <= lim
        out[k] = float(v) if ok else 0.0
    for k in ("name", "kind", "address", "contact", "phone", "lat", "lon"):
        if out[k] != site.get(k):
            replaced.append(f"site.{k}")
    return out, replaced


def build_or_degrade(builder: PayloadBuilder, **kw: Any) -> tuple[dict[str, Any], bool]:
    """(body, degraded): the dispatch body for a stored event.

    1. ``builder`` with everything; 2. on any exception, the same builder with the site's
    unusable fields replaced; 3. the reference builder with the bare minimum (device id,
    battery, event, times). A degraded body says so in ``detail`` ("DEGRADED: ..."; the
    schema allows no extra field) and is logged at error level; the caller counts it
    (``payload_degraded`` in the status API's frames). Raises PayloadFailed only when even
    step 3 fails (a gateway-wide fault such as an invalid gateway id).
    """
    try:
        return builder(**kw), False
    except Exception as e:  # a bug or bad registry data must not lose a stored alarm
        first = f"{type(e).__name__}: {e}"
    site, replaced = safe_site(kw["site"])
    dev = kw["device"]
    attempts = [
        (builder, {**kw, "site": site}, replaced),
        (dispatch_payload.build_payload, {
            **kw, "site": site, "paths": [],
            "device": {"id": dev["id"], "label": "", "firmware": None,
                       "low_battery": bool(dev.get("low_battery")),
                       "battery_mv": min(max(int(dev.get("battery_mv") or 0), 0), 10000)}},
         [*replaced, "device.label", "device.firmware", "paths"]),
    ]
    for attempt, args, parts in attempts:
        note = (f"DEGRADED: the gateway could not build this message normally ({first}); "
                f"replaced: {', '.join(parts) or 'nothing'}. Verify site and caller by "
                "phone.")
        try:
            body = attempt(**{**args, "detail": note[:500]})
        except Exception as e:
            last = f"{type(e).__name__}: {e}"
            continue
        log.error("dispatch payload for %s degraded: %s", kw["incident_id"], first,
                  extra={"fields": {"incident_id": kw["incident_id"], "replaced": parts}})
        return body, True
    raise PayloadFailed(f"{first}; minimal body: {last}")
