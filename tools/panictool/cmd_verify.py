"""`panictool verify`: prove on site that this button is who the gateway thinks it is and
that its TEST transmission reaches the gateway, on which paths, with how much radio margin.

The TEST is triggered over USB (a request in NVM the firmware acts on at boot), so nobody
has to press the button; ``--press`` keeps the manual 5-press flow. The proof is the
gateway's ACK: the button prints the downlink it received and verify checks its tag with the
key in the board's NVM, so nothing on the gateway has to be reachable from the laptop. When
the gateway can be reached (its DB or status API) its view of the TEST is added.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from panicgw import access
from panictool import common, identity, testrequest, verify
from panictool.transport import TransportError
from panictool.transport_serial import SerialTransport, auto_port

EPILOG = """\
Examples:

  panictool verify                          # at the shop: the button on USB, nothing else
  panictool verify --port /dev/ttyACM0 --timeout 90
  panictool verify --press                  # you press 5 times instead (older firmware)
  panictool verify --config /etc/panicgw/gateway.toml      # on the gateway: adds its view
  panictool verify --export today.json --gateway http://127.0.0.1:8765
                                    # on the Pi as yourself: the DB is the service's (0600)
  panictool verify --export today.json --no-test          # identity checks only

It reads the board's identity from NVM (the key fingerprint is computed on the board),
writes a TEST request into NVM, restarts code.py and reads the PANIC-BUTTON boot report;
the firmware erases the request and sends one TEST (exactly as 5 quick presses would).
The gateway stores it and answers with an ACK signed with the button's key; the button
prints the downlink it received and verify checks that signature with the key it read from
NVM (never shown): proof that the gateway holds this button's key and stored its TEST.
It reports the downlink's RSSI/SNR and the margin at the SF it came on. With the gateway's
view (--config or --gateway-db on the gateway, or its status API with --gateway) it also
checks the registry (site, key fingerprint, firmware) and reports how the gateway heard the
TEST: paths, uplink RSSI/SNR and margin, or why it rejected it. On the gateway the default
config /etc/panicgw/gateway.toml is used when it can be read. Firmware older than 0.2.0 or
a board with too little NVM cannot take the request: verify says so and asks you to press
the button 5 times quickly instead (as --press does).

Exit codes: 0 all checks passed (warnings allowed); 1 a check failed (no identity, no
ACK, a signature or margin failure); 2 bad options; 4 serial problem; 6 device not in the
registry given, or that registry unusable.
"""


class SerialLines:
    """Console lines from a serial port, for the verify checks."""

    def __init__(self, t: SerialTransport) -> None:
        self.t = t
        self.buf = b""

    def __call__(self, timeout: float) -> str | None:
        end = time.monotonic() + timeout
        while True:
            if b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                return line.decode("utf-8", "replace").rstrip("\r")
            left = end - time.monotonic()
            if left <= 0:
                return None
            self.buf += self.t.read_console(min(left, 0.2))


@dataclass
class Gateway:
    """What verify can see of the gateway: a registry to check the board against, and a
    view of the frames it heard. Either may be missing: the signed ACK needs neither."""

    records: dict[int, access.DeviceRecord] | None = None  # None: no registry here
    db: Path | None = None
    heard: tuple[verify.HeardSource, str] | None = None
    note: str = ""  # why there is no gateway view (shown as INFO)


def _read_db(path: Path) -> dict[int, access.DeviceRecord]:
    s = access.open_db(path, readonly=True)
    try:
        return {r.device_id: r for r in s.list_devices()}
    finally:
        s.close()


def find_gateway(gateway_db: Path | None, config: Path | None, export: Path | None,
                 url: str | None, as_json: bool) -> Gateway:
    """The registry and gateway view the options name (refusing what cannot be opened),
    or, with none given, the default config's DB when this machine is the gateway."""
    gw = Gateway()
    if url is not None:
        if not url.startswith(("http://", "https://")):
            common.fail(common.USAGE, f"--gateway {url!r} is not a URL",
                        "pass the status API, e.g. --gateway http://127.0.0.1:8765", as_json)
        gw.heard = (verify.api_source(url), f"the gateway at {url}")
    if gateway_db is not None or config is not None:
        try:
            gw.db = access.locate_db(gateway_db, config)
            gw.records = _read_db(gw.db)
        except (access.AccessError, OSError) as e:
            common.fail(common.REGISTRY, str(e), as_json=as_json)
    elif export is None and url is None and access.default_config().is_file():
        try:  # on the gateway itself: its view comes for free when readable
            gw.db = access.locate_db()
            gw.records = _read_db(gw.db)
        except (access.AccessError, OSError) as e:
            gw.db = None
            gw.note = f"the gateway's DB was not read ({e})"
    if export is not None:
        try:
            recs = {r.device_id: r for r in access.read_export(export)}
        except access.RegistryError as e:
            common.fail(common.REGISTRY, str(e), as_json=as_json)
        gw.records = {**recs, **(gw.records or {})}
    if gw.heard is None and gw.db is not None:
        gw.heard = (verify.db_source(gw.db), f"the gateway DB {gw.db}")
    return gw


def print_result(res: verify.Result, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(res.to_dict()))
        return
    for c in res.checks:
        typer.echo(f"{c.status:4} {c.name}: {c.detail}")
        if c.hint and c.status not in (verify.PASS, verify.INFO):
            typer.echo(f"     what to do: {c.hint}")
    typer.echo("RESULT: " + ("PASS" if res.ok else "FAIL"))


def verify_cmd(
    port: str | None = typer.Option(None, "--port", help="The button's serial console "
                                    "(default: the USB device with vendor 0x239A)."),
    config: Path | None = typer.Option(None, "--config", help="The gateway's config (the one "
                                       "`panicgw run --config` uses; default "
                                       "/etc/panicgw/gateway.toml when present): its DB "
                                       "gives the registry and the gateway's view."),
    gateway_db: Path | None = typer.Option(None, "--gateway-db", help="The gateway's DB "
                                           "itself (<data_dir>/gateway.db), instead of "
                                           "--config."),
    export: Path | None = typer.Option(None, "--export", help="Registry export file from "
                                       "provision: check the board against it."),
    gateway: str | None = typer.Option(None, "--gateway", help="The running gateway's status "
                                       "API, e.g. http://127.0.0.1:8765 on the gateway: its "
                                       "view of the TEST without reading its DB."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds to wait for the TEST "
                                  "(its press, with --press) and for the gateway's ACK."),
    boot_timeout: float = typer.Option(30.0, "--boot-timeout", help="Seconds to wait for the "
                                       "boot report after restarting code.py."),
    press: bool = typer.Option(False, "--press", help="Do not trigger the TEST over USB: "
                               "you press the button 5 times quickly (older firmware)."),
    no_test: bool = typer.Option(False, "--no-test", help="Skip the TEST transmission "
                                 "(identity checks only: proves nothing about reception)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON result for scripts."),
) -> None:
    """Have a provisioned button send a TEST and check the gateway's signed ACK of it."""
    if press and no_test:
        common.fail(common.USAGE, "--press and --no-test contradict each other",
                    "pass one of them", as_json)
    gw = find_gateway(gateway_db, config, export, gateway, as_json)
    res = verify.Result()
    try:
        used = port or auto_port()
        with SerialTransport(used) as t:
            t.enter_raw_repl()
            ident = identity.board_identity(t)
            if ident is None:
                res.add("identity", verify.FAIL, "no device id/key in NVM",
                        "run `panictool provision`")
                print_result(res, as_json)
                raise typer.Exit(common.CHECK_FAILED)
            device_id, board_fp = ident
            rec = None
            if gw.records is not None:
                rec = gw.records.get(device_id)
                if rec is None:
                    res.add("registered", verify.FAIL, f"device 0x{device_id:08X} is not in "
                            "the registry", "`panicgw devices import FILE` on the gateway "
                            "with the provision export, or provision with --config on the "
                            "gateway")
                    print_result(res, as_json)
                    raise typer.Exit(common.REGISTRY)
                res.add("registered", verify.PASS, f"0x{device_id:08X} at {rec.site.name}"
                        + (f", key generation {rec.key_gen}" if hasattr(rec, "key_gen")
                           else ""))
            else:
                res.add("registered", verify.INFO, f"0x{device_id:08X}: no registry here; "
                        "the gateway's signed ACK shows whether it knows this button")
            key = None
            if not no_test:
                found = identity.board_key(t)
                key = found[1] if found is not None and found[0] == device_id else None
            nonce: int | None = None
            why_not: str | None = None
            if not no_test and not press:
                why_not = testrequest.unavailable(t)
                if why_not is None:
                    nonce = testrequest.request(t)
            lines = SerialLines(t)
            t.soft_reboot(run_code=True)
            crash: list[str] = []
            rep = verify.read_boot_report(lines, boot_timeout, crash)
            verify.check_report(res, rep, rec, board_fp, identity.fingerprint,
                                crash[0] if crash else None)
            if no_test:
                res.add("TEST", verify.INFO, "not sent (--no-test): reception not checked")
            elif rep is not None and "error" not in rep:
                run_test(res, lines, device_id, key, rep, gw, timeout, as_json, nonce,
                         why_not)
    except TransportError as e:
        common.fail(common.SERIAL, str(e), e.hint, as_json)
    print_result(res, as_json)
    if not res.ok:
        raise typer.Exit(common.CHECK_FAILED)


def _remote_outcome(rep: dict[str, Any], nonce: int) -> str | None:
    """None when the firmware took our request; else why it did not."""
    if "remote_test" not in rep:
        return (f"firmware {rep.get('firmware')} ignored the TEST request (it predates "
                f"{testrequest.SINCE_TEXT}; `panictool flash` updates it)")
    if rep["remote_test"] != nonce:
        return "the firmware did not find the TEST request in NVM after the restart"
    return None


def run_test(res: verify.Result, lines: verify.LineSource, device_id: int, key: bytes | None,
             rep: dict[str, Any], gw: Gateway, timeout: float, as_json: bool,
             nonce: int | None = None, why_not: str | None = None) -> None:
    """Wait for the TEST the firmware sends (requested over USB, or pressed by the
    installer), then for the gateway's ACK of it; add the gateway's view when there is one."""
    start = time.monotonic()
    if nonce is not None:
        why_not = _remote_outcome(rep, nonce)
    usb = nonce is not None and why_not is None
    if not usb:
        if why_not is not None:
            res.add("TEST request", verify.WARN, f"{why_not}; falling back to a TEST press")
        typer.echo("Press the button 5 times quickly now (TEST pattern) ...", err=as_json)
    res.test = {"trigger": "usb" if usb else "press", "nonce": nonce if usb else None,
                "counter": None, "ack": None}
    what = "the TEST" if usb else "your TEST press"
    with common.waiting(f"waiting for {what} and the gateway's ACK", timeout,
                        as_json) as tick:
        counter, _ = verify.wait_for_press(lines, timeout, tick)
        if counter is None:
            if usb:
                res.add("TEST sent", verify.FAIL, f"the firmware took TEST request {nonce} "
                        f"but queued no TEST within {timeout:.0f} s",
                        "read the console (`panictool console`) for errors")
            else:
                res.add("TEST press", verify.FAIL, f"no TEST press seen within "
                        f"{timeout:.0f} s", "press 5 times quickly, about 3 presses per second")
            return
        if usb:
            res.add("TEST sent", verify.PASS, f"counter {counter}, requested over USB "
                    f"(request {nonce})")
        else:
            res.add("TEST press", verify.PASS, f"counter {counter}")
        res.test["counter"] = counter
        left = max(5.0, timeout - (time.monotonic() - start))
        ack = verify.wait_for_ack(lines, counter, left, tick)
    proved = verify.check_ack(res, ack, key, device_id, counter, left, rep.get("firmware"))
    sf = int((rep.get("settings") or {}).get("sf") or 9)
    if gw.heard is not None:
        verify.check_heard(res, gw.heard[0], gw.heard[1], device_id, counter,
                           list(rep.get("paths") or []), sf,
                           max(3.0, timeout - (time.monotonic() - start)) if ack else 2.0,
                           required=not proved)
    else:
        res.add("gateway's view", verify.INFO, gw.note or "not asked (on the gateway: "
                "--config or --gateway for uplink RSSI/SNR)")
        if not proved and ack is not None:
            res.add("TEST confirmed", verify.FAIL, "nothing here proves the gateway stored "
                    "the TEST: the button's ACK line carries no downlink to check",
                    "flash the current firmware (`panictool flash`), or run verify on the "
                    "gateway with --config (or --gateway URL) to read its view")


VERIFY = common.command_help(verify_cmd, EPILOG)
