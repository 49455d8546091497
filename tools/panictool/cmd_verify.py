"""`panictool verify`: prove on site that this button is who the gateway thinks it is and
that its TEST transmission reaches the gateway, on which paths, with how much radio margin.
The TEST is triggered over USB (a request in NVM the firmware acts on at boot), so nobody
has to press the button; ``--press`` keeps the manual 5-press flow."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

from panicgw import registry
from panicgw.store import Store, StoreError
from panictool import common, identity, testrequest, verify
from panictool.transport import TransportError
from panictool.transport_serial import SerialTransport, auto_port

EPILOG = """\
Examples:

  panictool verify --gateway-db /var/lib/panicgw/gateway.db     # on the Pi, button on USB
  panictool verify --port /dev/ttyACM0 --gateway-db gw.db --timeout 90
  panictool verify --gateway-db gw.db --press                   # you press 5 times instead
  panictool verify --export today.json --gateway http://127.0.0.1:8765
                                    # on the Pi as yourself: the DB is the service's (0600)
  panictool verify --export today.json --no-test                # identity checks only

It reads the key fingerprint from the board (the key itself never leaves it), writes a
TEST request into the board's NVM, restarts code.py and reads the PANIC-BUTTON boot
report; the firmware erases the request and sends one TEST (exactly as 5 quick presses
would), and verify waits for the gateway to store it (asking the running gateway's status
API with --gateway, or reading its DB with --gateway-db): paths heard, RSSI/SNR and link
margin for the configured SF, and the button's ACK. A TEST the gateway heard but rejected
(another key, not imported) fails with the reason. Firmware older than 0.2.0 or a board
with too little NVM cannot take the request: verify says so and asks you to press the
button 5 times quickly instead (as --press does).

Exit codes: 0 all checks passed (warnings allowed); 1 a check failed; 2 bad options;
4 serial problem; 6 device not registered or registry unreadable.
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


def lookup(device_id: int, gateway_db: Path | None, export: Path | None,
           as_json: bool) -> registry.DeviceRecord | None:
    try:
        if gateway_db is not None:
            if not gateway_db.exists():
                common.fail(common.REGISTRY, f"{gateway_db} does not exist",
                            "pass the gateway's data_dir/gateway.db", as_json)
            s = Store(gateway_db)
            try:
                return s.get_device(device_id)
            finally:
                s.close()
        if export is not None:
            for r in registry.read_export(export):
                if r.device_id == device_id:
                    return r
    except (registry.RegistryError, StoreError) as e:
        common.fail(common.REGISTRY, str(e), as_json=as_json)
    return None


def print_result(res: verify.Result, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(res.to_dict()))
        return
    for c in res.checks:
        typer.echo(f"{c.status:4} {c.name}: {c.detail}")
        if c.hint and c.status != verify.PASS:
            typer.echo(f"     what to do: {c.hint}")
    typer.echo("RESULT: " + ("PASS" if res.ok else "FAIL"))


def verify_cmd(
    port: str | None = typer.Option(None, "--port", help="The button's serial console "
                                    "(default: the USB device with vendor 0x239A)."),
    gateway_db: Path | None = typer.Option(None, "--gateway-db", help="Gateway database: the "
                                           "registry and the frames it stored."),
    export: Path | None = typer.Option(None, "--export", help="Registry export file (the "
                                       "identity checks; add --gateway for the TEST check)."),
    gateway: str | None = typer.Option(None, "--gateway", help="The running gateway's status "
                                       "API, e.g. http://127.0.0.1:8765 on the gateway: where "
                                       "the TEST is looked for without reading its DB."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds to wait for the TEST "
                                  "(its press, with --press) and for the gateway to store it."),
    boot_timeout: float = typer.Option(30.0, "--boot-timeout", help="Seconds to wait for the "
                                       "boot report after restarting code.py."),
    press: bool = typer.Option(False, "--press", help="Do not trigger the TEST over USB: "
                               "you press the button 5 times quickly (older firmware)."),
    no_test: bool = typer.Option(False, "--no-test", help="Skip the TEST transmission."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON result for scripts."),
) -> None:
    """Check a provisioned button against the registry and have it send a TEST to the gateway."""
    if gateway_db is None and export is None:
        common.fail(common.USAGE, "say where the registry is",
                    "pass --gateway-db PATH, or --export FILE (with --gateway URL for the "
                    "TEST check)", as_json)
    heard_src: tuple[verify.HeardSource, str] | None = None
    if gateway is not None:
        if not gateway.startswith(("http://", "https://")):
            common.fail(common.USAGE, f"--gateway {gateway!r} is not a URL",
                        "pass the status API, e.g. --gateway http://127.0.0.1:8765", as_json)
        heard_src = (verify.api_source(gateway), f"the gateway at {gateway}")
    elif gateway_db is not None:
        heard_src = (verify.db_source(gateway_db), f"the gateway DB {gateway_db}")
    if press and no_test:
        common.fail(common.USAGE, "--press and --no-test contradict each other",
                    "pass one of them", as_json)
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
            rec = lookup(device_id, gateway_db, export, as_json)
            if rec is None:
                res.add("registered", verify.FAIL, f"device 0x{device_id:08X} is not in the "
                        "registry", "run `panicgw devices import` with the provision export, "
                        "or provision with --gateway-db")
                print_result(res, as_json)
                raise typer.Exit(common.REGISTRY)
            res.add("registered", verify.PASS, f"0x{device_id:08X} at {rec.site.name}")
            nonce: int | None = None
            why_not: str | None = None
            if not no_test and not press and heard_src is not None:
                why_not = testrequest.unavailable(t)
                if why_not is None:
                    nonce = testrequest.request(t)
            lines = SerialLines(t)
            t.soft_reboot(run_code=True)
            rep = verify.read_boot_report(lines, boot_timeout)
            verify.check_report(res, rep, rec, board_fp, identity.fingerprint)
            if not no_test and rep is not None and "error" not in rep:
                if heard_src is None:
                    res.add("gateway heard TEST", verify.WARN,
                            "not checked (no --gateway or --gateway-db)")
                else:
                    run_test(res, lines, rec, rep, heard_src, timeout, as_json, nonce,
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


def run_test(res: verify.Result, lines: verify.LineSource, rec: registry.DeviceRecord,
             rep: dict[str, Any], heard_src: tuple[verify.HeardSource, str],
             timeout: float, as_json: bool,
             nonce: int | None = None, why_not: str | None = None) -> None:
    """Wait for the TEST the firmware sends (requested over USB, or pressed by the
    installer), then for the gateway to store it."""
    start = time.monotonic()
    if nonce is not None:
        why_not = _remote_outcome(rep, nonce)
    if nonce is not None and why_not is None:
        res.test = {"trigger": "usb", "nonce": nonce, "counter": None, "ack": None}
        counter, _ = verify.wait_for_press(lines, timeout)
        if counter is None:
            res.add("TEST sent", verify.FAIL, f"the firmware took TEST request {nonce} but "
                    f"queued no TEST within {timeout:.0f} s",
                    "read the console (`panictool console`) for errors")
            return
        res.add("TEST sent", verify.PASS, f"counter {counter}, requested over USB "
                f"(request {nonce})")
    else:
        if why_not is not None:
            res.add("TEST request", verify.WARN, f"{why_not}; falling back to a TEST press")
        typer.echo("Press the button 5 times quickly now (TEST pattern) ...", err=as_json)
        res.test = {"trigger": "press", "nonce": None, "counter": None, "ack": None}
        counter, _ = verify.wait_for_press(lines, timeout)
        if counter is None:
            res.add("TEST press", verify.FAIL, f"no TEST press seen within {timeout:.0f} s",
                    "press 5 times quickly, about 3 presses per second")
            return
        res.add("TEST press", verify.PASS, f"counter {counter}")
    res.test["counter"] = counter
    sf = int((rep.get("settings") or {}).get("sf") or 9)
    left = max(5.0, timeout - (time.monotonic() - start))
    verify.check_heard(res, heard_src[0], heard_src[1], rec.device_id, counter,
                       list(rep.get("paths") or []), sf, left, lines)


VERIFY = common.command_help(verify_cmd, EPILOG)
