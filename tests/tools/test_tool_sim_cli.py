"""`panictool sim --bridge` run as a user runs it: the installed console script starts a
virtual LoRa bridge (real bridge firmware) on a pty and simulated buttons (real button
firmware); a real `panicgw run` opens that pty with pyserial. Covers the printed pty path,
`--bridge-link` (a stable path the gateway is configured with before sim starts) and
`--export` (the gateway learns the buttons from `panicgw devices import` while sim waits)."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from panicgw import registry
from panicgw.store import Store
from panictool.cli import app

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from e2ekit import stop_group, wait_for  # noqa: E402

PANICGW = ROOT / ".venv" / "bin" / "panicgw"
PANICTOOL = ROOT / ".venv" / "bin" / "panictool"
BRIDGE_LINE = re.compile(r"^virtual bridge on (\S+)(?: \(-> (\S+)\))?: set the gateway's "
                         r"\[serial\] port to it \(SF9, 921\.4 MHz\)$", re.M)


class Proc:
    """A console script in its own process group, its stdout and stderr collected by
    threads so the test can wait for a line while it runs."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.out: list[str] = []
        self.err: list[str] = []
        self._threads = [threading.Thread(target=self._pump, args=(f, sink), daemon=True)
                         for f, sink in ((self.proc.stdout, self.out),
                                         (self.proc.stderr, self.err))]
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(f: Any, sink: list[str]) -> None:
        for raw in iter(f.readline, b""):
            sink.append(raw.decode("utf-8", "replace"))

    def stderr(self) -> str:
        return "".join(self.err)

    def finish(self, timeout: float) -> int:
        rc = self.proc.wait(timeout)
        for t in self._threads:
            t.join(5)
        return rc

    def stop(self) -> None:
        stop_group(self.proc)


def start_gateway(tmp_path: Path, serial_port: str) -> tuple[Proc, Path]:
    """`panicgw run` with its serial bridge at ``serial_port`` (reopened every <= 0.5 s while
    missing) and HTTP/status on free ports; (process, data dir) once it is listening."""
    data = tmp_path / "gw"
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(
        f'[gateway]\nid = "gw-sim-cli"\ndata_dir = "{data}"\nlog_format = "text"\n'
        '[http]\nhost = "127.0.0.1"\nport = 0\n[status]\nhost = "127.0.0.1"\nport = 0\n'
        f'[serial]\nenabled = true\nport = "{serial_port}"\nspreading_factor = 9\n'
        'frequency_mhz = 921.4\nreconnect_max_s = 0.5\n')
    gw = Proc([str(PANICGW), "run", "--config", str(cfg)])

    def runtime() -> dict[str, Any] | None:
        assert gw.proc.poll() is None, "gateway exited: " + gw.stderr()[-2000:]
        try:
            info = json.loads((data / "runtime.json").read_text())
        except (OSError, ValueError):
            return None
        return info if info.get("status_port") else None

    try:
        wait_for(runtime, 20, "the gateway's runtime.json")
    except BaseException:
        gw.stop()
        raise
    return gw, data


def gateway_status(data: Path) -> dict[str, Any]:
    port = json.loads((data / "runtime.json").read_text())["status_port"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/status", timeout=5) as r:
        return json.loads(r.read())


def summary_of(sim: Proc) -> dict[str, Any]:
    return json.loads(sim.out[-1])


def assert_tests_stored_over_lora(db: Path, device_ids: list[str]) -> None:
    """Each simulated button has exactly one TEST event in the gateway DB, heard on the
    lora path with the simulated air's link figures, and no Wi-Fi copy."""
    s = Store(db)
    try:
        for hex_id in device_ids:
            events = [e for e in s.recent_events(50, int(hex_id, 16))
                      if e["kind"].upper() == "TEST"]
            assert len(events) == 1, (hex_id, events)
            heard = s.receptions(events[0]["id"])
            assert heard and {h["path"] for h in heard} == {"lora"}, heard
            assert heard[0]["rssi"] == -90 and heard[0]["snr"] == 7.0  # panicsim.Air's
    finally:
        s.close()


def test_sim_bridge_prints_the_pty_and_the_gateway_acks_tests_over_lora(tmp_path):
    """`sim --bridge --gateway-db`: the user reads the printed pty, points the gateway's
    [serial] port at it and starts the gateway; both buttons' TEST presses are acknowledged
    via lora and stored with a lora reception."""
    db = tmp_path / "gw" / "gateway.db"
    Store(db).close()  # the gateway has run before: its DB exists (sim never creates it)
    sim = Proc([str(PANICTOOL), "sim", "--bridge", "--gateway-db", str(db), "--buttons", "2",
                "--rate", "5", "--seed", "7", "--json"])
    gw = None
    try:
        m = wait_for(lambda: BRIDGE_LINE.search(sim.stderr()), 20, "the printed bridge port")
        pty_link = m.group(1)
        assert m.group(2) is None  # no --bridge-link: the port itself is printed
        assert os.path.realpath(pty_link).startswith("/dev/pts/")
        gw, data = start_gateway(tmp_path, pty_link)
        assert sim.finish(60) == 0, sim.stderr() + "".join(sim.out)
        status = gateway_status(data)
    finally:
        sim.stop()
        if gw is not None:
            gw.stop()
    doc = summary_of(sim)
    assert doc["ready"] == 2 and doc["presses"] == 2 and doc["acknowledged"] == 2, doc
    assert doc["unacknowledged"] == 0 and doc["ack_paths"] == {"lora": 2}
    assert doc["kind"] == "test" and len(doc["device_ids"]) == 2
    assert status["bridge"]["port"] == pty_link and status["bridge"]["connects"] >= 1
    assert_tests_stored_over_lora(db, doc["device_ids"])
    assert not os.path.lexists(pty_link)  # the bridge's port goes away with sim


def test_sim_bridge_link_and_export_imported_while_sim_waits(tmp_path):
    """The gateway runs first, configured with the --bridge-link path; sim writes the
    buttons to --export (0600, importable), the test imports it with `panicgw devices
    import` while sim waits for heartbeats, and the TEST press is acknowledged via lora."""
    (tmp_path / "dev").mkdir()
    link = tmp_path / "dev" / "panic-bridge"
    export = tmp_path / "sim-export.json"
    gw, data = start_gateway(tmp_path, str(link))
    sim = None
    try:
        assert gateway_status(data)["bridge"]["state"] == "missing"
        sim = Proc([str(PANICTOOL), "sim", "--bridge", "--bridge-link", str(link), "--export",
                    str(export), "--seed", "3", "--json"])
        wait_for(export.exists, 20, "the export file")
        assert stat.S_IMODE(export.stat().st_mode) == 0o600  # it holds keys
        recs = registry.read_export(export)
        assert len(recs) == 1 and recs[0].paths == ["lora"] and len(recs[0].key) == 16
        imp = subprocess.run([str(PANICGW), "devices", "import", "--db",
                              str(data / "gateway.db"), str(export), "--json"],
                             capture_output=True, text=True, timeout=30)
        assert imp.returncode == 0, imp.stderr
        assert json.loads(imp.stdout) == {"imported": [f"{recs[0].device_id:08X}"]}

        m = wait_for(lambda: BRIDGE_LINE.search(sim.stderr()), 20, "the printed bridge port")
        assert m.group(1) == str(link)
        assert link.is_symlink() and os.readlink(link) == m.group(2)
        assert os.path.realpath(link).startswith("/dev/pts/")
        assert stat.S_ISCHR(os.stat(link).st_mode)
        # The gateway, set up before sim ran, found the port at the link's path.
        wait_for(lambda: gateway_status(data)["bridge"]["state"] == "connected", 20,
                 "the gateway to open the bridge at the link")
        assert sim.finish(60) == 0, sim.stderr() + "".join(sim.out)
    finally:
        if sim is not None:
            sim.stop()
        gw.stop()
    doc = summary_of(sim)
    assert doc["ready"] == 1 and doc["presses"] == 1 and doc["acknowledged"] == 1, doc
    assert doc["ack_paths"] == {"lora": 1}
    assert doc["device_ids"] == [f"{recs[0].device_id:08X}"]
    # sim cannot unregister what the gateway imported: it names the commands that do
    assert doc["cleanup"]["remove_with"] == [
        f"panicgw devices remove {recs[0].device_id:08X} --yes"]
    assert_tests_stored_over_lora(data / "gateway.db", doc["device_ids"])
    assert not os.path.lexists(link)  # removed with the port, not left dangling
    assert not os.path.lexists(m.group(2))


runner = CliRunner()


@pytest.mark.parametrize("case", ["no directory", "regular file", "without --bridge"])
def test_bad_bridge_link_is_refused_before_anything_is_registered(tmp_path, case):
    export = tmp_path / "e.json"
    precious = tmp_path / "gateway.toml"
    precious.write_text("[gateway]\n")
    link, path = {"no directory": (tmp_path / "nodir" / "bridge", ["--bridge"]),
                  "regular file": (precious, ["--bridge"]),
                  "without --bridge": (tmp_path / "bridge",
                                       ["--gateway-url", "http://127.0.0.1:9"])}[case]
    r = runner.invoke(app, ["sim", *path, "--bridge-link", str(link), "--export", str(export),
                            "--json"])
    assert r.exit_code == 2, r.output
    doc = json.loads(r.output)
    assert doc["ok"] is False and "--bridge-link" in doc["error"]
    assert not export.exists()  # refused before the buttons were registered
    assert precious.read_text() == "[gateway]\n" and not precious.is_symlink()


def test_help_keeps_the_config_section_names():
    """Rich markup once ate "[serial]" and "[http]" from the examples."""
    r = runner.invoke(app, ["sim", "--help"])
    assert r.exit_code == 0
    assert "[serial]" in r.output and "[http]" in r.output and "--bridge-link" in r.output
