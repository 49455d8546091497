"""``bridge``: the LoRa bridge is plugged in, answers, and runs the gateway's radio settings.

With the daemon running it owns the port, so the daemon's status API says how its bridge
and serial reader are; with it stopped diag finds the port by the daemon's own rule
(:mod:`panicgw.ports`) and asks the bridge itself, but never opens a port another process
holds (it looks in /proc first), so it cannot disturb whoever has it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from panicgw.diag.checks.radio import RESTART, radio_results
from panicgw.diag.context import FAIL, PASS, SKIP, WARN, Context, Result
from panicgw.diag.linkclient import LinkClient
from panicgw.diag.wording import fmt_age
from panicgw.ports import bridge_data_port

UNPLUGGED_HINT = ("Check the bridge's USB cable and power; `ls -l /dev/serial/by-id/`; "
                  "set [serial] port to the by-id path (or \"auto\"); reflash with "
                  "`panictool flash --role bridge` if it does not enumerate.")
# The daemon's bridge states (ingest/serial_link.py, ingest/serial.py): starting, handshake,
# connected, missing, disconnected, reader_dead, reader_stalled.
GONE = ("missing", "disconnected")


def port_holders(device: str) -> list[tuple[int, str]]:
    """Processes (pid, command) that have ``device`` open, from /proc (Linux)."""
    try:
        target = os.path.realpath(device)
        st = os.stat(target)
    except OSError:
        return []
    me = os.getpid()
    out = []
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    for pdir in proc.iterdir():
        if not pdir.name.isdigit() or int(pdir.name) == me:
            continue
        try:
            for fd in (pdir / "fd").iterdir():
                try:
                    fst = os.stat(fd)
                except OSError:
                    continue
                if fst.st_rdev == st.st_rdev and stat.S_ISCHR(fst.st_mode) and (
                        fst.st_ino == st.st_ino):
                    cmd = (pdir / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                        "utf-8", "replace").strip()
                    out.append((int(pdir.name), cmd[:120]))
                    break
        except OSError:
            continue
    return out


def find_bridge_port(cfg_serial: dict[str, Any]) -> tuple[str | None, str]:
    """(port, how) for the configured port, or the daemon's own auto-detection rule."""
    port = cfg_serial["port"]
    if port != "auto":
        return (port if os.path.exists(port) else None), f"configured port {port}"
    return bridge_data_port(cfg_serial["usb_vid"])


def _skipped(why: str, ids: tuple[str, ...] = ("ping", "radio", "noise")) -> list[Result]:
    titles = {"ping": "Bridge answers PING", "radio": "Bridge radio settings",
              "noise": "Radio noise floor"}
    return [Result(f"bridge.{i}", titles[i], SKIP, why) for i in ids]


def _bridge_direct(ctx: Context, cfg_serial: dict[str, Any]) -> list[Result]:
    t = ctx.thresholds
    port, how = find_bridge_port(cfg_serial)
    if port is None:
        return [Result("bridge.present", "Bridge present", FAIL,
                       f"bridge not found: {how}", UNPLUGGED_HINT), *_skipped("no bridge")]
    holders = port_holders(port)
    if holders:
        who = ", ".join(f"pid {p} ({c})" for p, c in holders)
        return [Result("bridge.present", "Bridge present", PASS, f"{port} ({how})"),
                Result("bridge.ping", "Bridge answers PING", WARN,
                       f"{port} is held by {who}; not opened (diag never steals the port)",
                       "If that is panicgw, enable its status API ([status] enabled = true) "
                       "so diag can ask it; otherwise stop the other program."),
                *_skipped("port busy", ("radio", "noise"))]
    present = Result("bridge.present", "Bridge present", PASS, f"{port} ({how})")
    try:
        client = LinkClient(port, cfg_serial["baudrate"], t.bridge_timeout_s)
    except Exception as e:  # pyserial raises SerialException/OSError/ValueError
        text = str(e)
        hint = UNPLUGGED_HINT
        if "ermission" in text:
            hint = ("Add the service user to the dialout group: `sudo usermod -aG dialout "
                    "<user>` and log in again.")
        elif "lock" in text.lower() or "busy" in text.lower():
            hint = "Another program has the port open: stop it (is panicgw running?)."
        return [Result("bridge.present", "Bridge present", FAIL,
                       f"cannot open {port}: {text[:160]}", hint),
                *_skipped("port not opened")]
    try:
        from panicproto import link

        nonce = secrets.token_bytes(4)
        pong = client.request(link.PING, nonce, link.PONG)
        if pong is None:
            logs = f"; its last log: {client.logs[-1]!r}" if client.logs else ""
            return [present,
                    Result("bridge.ping", "Bridge answers PING", FAIL,
                           f"no PONG from {port} within {t.bridge_timeout_s:g} s{logs}",
                           "Wrong device or bridge firmware not running: check the port, "
                           "watch `panictool console`, reflash with "
                           "`panictool flash --role bridge`."),
                    *_skipped("bridge silent", ("radio", "noise"))]
        ping = Result("bridge.ping", "Bridge answers PING", PASS, f"PONG from {port}")
        reply = client.request(link.STATUS, b"", link.STATUS)
        status_doc: Any = None
        if reply is not None:
            with contextlib.suppress(ValueError):
                status_doc = json.loads(reply.payload.decode("utf-8"))
    finally:
        client.close()
    if not isinstance(status_doc, dict):
        return [present, ping,
                Result("bridge.radio", "Bridge radio settings", FAIL,
                       "bridge answers PING but sent no valid STATUS",
                       "Update the bridge firmware (`panictool flash --role bridge`)."),
                *_skipped("no STATUS", ("noise",))]
    return [present, ping, *radio_results(ctx, cfg_serial, status_doc, live=False)]


def check_bridge(ctx: Context) -> list[Result]:
    if ctx.cfg is None:
        return [Result("bridge.present", "Bridge present", SKIP,
                       "not checked: the configuration is invalid")]
    cfg_serial = ctx.cfg.serial
    if not cfg_serial["enabled"]:
        return [Result("bridge.present", "Bridge present", SKIP,
                       "LoRa disabled ([serial] enabled = false)")]
    if ctx.status is None:
        return _bridge_direct(ctx, cfg_serial)
    b = ctx.status.get("bridge")
    if not isinstance(b, dict):
        return [Result("bridge.present", "Bridge present", WARN,
                       "the daemon's status API reports no bridge state",
                       "Upgrade panicgw; or stop it and run diag to probe the port directly.")]
    return _bridge_live(ctx, cfg_serial, b)


def _bridge_live(ctx: Context, cfg_serial: dict[str, Any], b: dict[str, Any]) -> list[Result]:
    state = str(b.get("state", "unknown"))
    port = b.get("port") or cfg_serial["port"]
    if state in GONE:
        return [Result("bridge.present", "Bridge present", FAIL,
                       f"daemon reports bridge {state} at {port}",
                       "Check the bridge's USB cable and power; `ls -l /dev/serial/by-id/`; "
                       "the daemon reconnects by itself once it is back."),
                *_skipped("no bridge", ("ping",))]
    if state in ("reader_dead", "reader_stalled"):
        # The daemon's reader, not the bridge, is what failed (bridge.reader says how).
        return [Result("bridge.present", "Bridge present", SKIP,
                       f"unknown: the daemon is not reading {port}", data={"bridge": b}),
                *_reader_result(b), *_skipped("the reader is not running", ("ping",))]
    present = Result("bridge.present", "Bridge present", PASS, f"{state} at {port}",
                     data={"bridge": b})
    pong_age = None
    if isinstance(b.get("last_pong"), int | float):
        pong_age = ctx.now - float(b["last_pong"])
    ping_limit = max(3 * float(cfg_serial["ping_interval_s"]), 5.0)
    if isinstance(pong_age, int | float) and pong_age > ping_limit:
        ping = Result("bridge.ping", "Bridge answers PING", FAIL,
                      f"last PONG {fmt_age(pong_age)} ago (expected every "
                      f"{cfg_serial['ping_interval_s']:g} s)",
                      "The bridge is wedged: unplug and replug it; check `journalctl -u "
                      "panicgw` for link errors; reflash with `panictool flash --role bridge`.")
    elif isinstance(pong_age, int | float):
        ping = Result("bridge.ping", "Bridge answers PING", PASS,
                      f"last PONG {fmt_age(pong_age)} ago")
    else:
        ready = state == "connected"
        ping = Result("bridge.ping", "Bridge answers PING", PASS if ready else WARN,
                      f"daemon reports state {state!r}", "" if ready else
                      "Wait a few seconds and run diag again; check `journalctl -u panicgw`.")
    bstatus = b.get("bridge") if isinstance(b.get("bridge"), dict) else None
    reader = _reader_result(b)
    if bstatus is None:
        return [present, *reader, ping,
                Result("bridge.radio", "Bridge radio settings", WARN,
                       "the daemon has no STATUS from the bridge yet",
                       "Run diag again in a few seconds; if it stays, update the bridge "
                       "firmware (`panictool flash --role bridge`).")]
    rc = b.get("radio_config") if isinstance(b.get("radio_config"), dict) else None
    return [present, *reader, ping,
            *radio_results(ctx, cfg_serial, bstatus, live=True, rc=rc)]


def _reader_result(b: dict[str, Any]) -> list[Result]:
    """bridge.reader: the daemon's serial reader thread (a dead one reads nothing while the
    bridge itself may be fine; a quiet one is just a quiet neighbourhood)."""
    r = b.get("reader")
    if not isinstance(r, dict):
        return []  # an older daemon
    errors = int(r.get("errors") or 0)
    last = str(r.get("last_error") or "")[:200]
    title = "Serial reader running"
    if not r.get("alive", True) or b.get("state") in ("reader_dead", "reader_stalled"):
        how = "stopped" if not r.get("alive", True) else (
            f"stalled for {fmt_age(float(r.get('idle_s') or 0))}")
        return [Result("bridge.reader", title, FAIL,
                       f"the daemon's serial reader has {how}: no LoRa frame is read or "
                       "acknowledged" + (f" (last error: {last})" if last else ""),
                       f"A gateway fault, not the bridge's: {RESTART}, then send `journalctl "
                       "-u panicgw` to the maintainers.", {"reader": r})]
    if errors:
        return [Result("bridge.reader", title, WARN,
                       f"{errors} reader fault(s) since start, the link reopened each time; "
                       f"last: {last}",
                       "Reception continues; send `journalctl -u panicgw` to the maintainers.",
                       {"reader": r})]
    return [Result("bridge.reader", title, PASS, "reading, no faults", {"reader": r})]
