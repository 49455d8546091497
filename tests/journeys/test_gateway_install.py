"""A gateway install into a fresh root, command for command as docs/gateway.md's "Installing
on a Raspberry Pi" writes it, then a button registered and verified the way that section
says.

Every command of the section (its `sh` blocks, and the commands its text quotes) must have
a step here, or the test fails: a command added to the doc is walked or flagged. `--root`
stands for `/` (the paths the doc names are under it), `sudo` is dropped (the test runs as
root, or as this user with `--user`), `sudoedit` is an edit of the installed config line by
line, and `systemctl start`/`restart` run the installed unit's own ExecStart with the
environment systemd gives it (Type=notify: READY=1). The Pi's virtual environment is this
repository's, but every `panicgw` of the section runs with only what `pip install -e
/opt/panicgw/src` (no extras) installs importable: the CircuitPython libraries of the
`installer` extra, Blinka and the dev tools are refused at import, as they are absent on the
Pi. apt-get, `python3 -m venv` and pip itself need the network, so what they provide is
checked instead: the venv module, and the distributions a plain install pulls in.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import pwd
import re
import shlex
import signal
import socket
import stat
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path

from drivefakes import uf2_image
from journeykit import (
    BIN,
    GATEWAY_DOC,
    RSSI,
    SNR,
    Board,
    day_commands,
    edit_config,
    free_port,
    run_as,
    wait_for,
)

from panicsim import start_virtual_bridge

SECTION = "Installing on a Raspberry Pi"
RP2040 = 0xE48BFF56
# Commands the section's text names without asking anyone to type them.
MENTIONED = {
    "panicgw setup": "what the steps' `sudo /opt/panicgw/.venv/bin/panicgw setup` is",
    "panictool flash": "the installer's laptop (docs/installing.md)",
    "panictool provision": "the installer's laptop (docs/installing.md)",
    "systemctl daemon-reload": "run by setup",
    "systemctl enable panicgw": "run by setup (its `enable panicgw.service` line)",
    "panicgw setup --root DIR": "how this test installs (a root standing for /)",
    "systemctl --root": "how setup enables the unit in such a root",
    "panicgw diag --config": "what step 4's diag is",
}


def section_commands() -> list[str]:
    """The section's commands: each line of its `sh` blocks, then each command its text
    quotes in backticks (sudo, panicgw, panictool, journalctl, systemctl)."""
    text = GATEWAY_DOC.read_text()
    body = text.split(f"\n## {SECTION}\n", 1)[1].split("\n## ", 1)[0]
    out, fenced = [], False
    for line in body.splitlines():
        if line.strip().startswith("```"):
            fenced = not fenced
            continue
        if fenced and line.strip():
            out.append(line.strip())
    prose = re.sub(r"```.*?```", "", body, flags=re.S)
    for m in re.finditer(r"`((?:sudo|panicgw|panictool|journalctl|systemctl) [^`]+)`",
                         " ".join(prose.split())):
        if m.group(1) not in out:
            out.append(m.group(1))
    return out


def plain_install_env(tmp: Path) -> dict[str, str]:
    """The environment of a Pi that ran `pip install -e /opt/panicgw/src` without extras:
    a sitecustomize refuses every top-level module of a distribution that install does
    not pull in (the standard library and the venv's own pip/setuptools stay)."""
    def norm(n: str) -> str:
        return re.sub(r"[-_.]+", "-", n).lower()

    wanted, todo = set(), ["panic-button"]
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted.add(name)
        try:
            reqs = md.distribution(name).requires or []
        except md.PackageNotFoundError:
            continue  # a conditional dependency of another Python version
        todo += [norm(re.match(r"[A-Za-z0-9._-]+", r).group(0)) for r in reqs
                 if "extra ==" not in r.replace("extra==", "extra ==")]
    venv_own = {"pip", "setuptools", "pkg_resources", "_distutils_hack"}
    refused = sorted(
        mod for mod, dists in md.packages_distributions().items()
        if mod not in sys.stdlib_module_names and mod not in venv_own
        and not any(norm(d) in wanted for d in dists))
    assert "adafruit_rfm" in refused and "pytest" in refused and "aiohttp" not in refused
    d = tmp / "plain-install"
    d.mkdir()
    (d / "sitecustomize.py").write_text(
        "import sys\n"
        f"REFUSED = set({refused!r})\n"
        "class _NotInstalled:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in REFUSED:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r} (not installed on "
        "the Pi: pip install -e without extras)', name=name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, _NotInstalled())\n")
    # PATH: sudo's secure_path on Debian.
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "PYTHONPATH": str(d), "LANG": "C.UTF-8"}


def fresh_root(root: Path) -> list[str]:
    """A root filesystem as a fresh OS image has it (its own user database when we are
    root, for `useradd --root`); the extra setup arguments this test needs."""
    (root / "etc").mkdir(parents=True)
    if os.geteuid() != 0:  # useradd cannot chroot: the service runs as this user
        return ["--user", pwd.getpwuid(os.geteuid()).pw_name]
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc" / "group").write_text("root:x:0:\ndialout:x:20:\n")
    (root / "etc" / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (root / "etc" / "gshadow").write_text("root:*::\ndialout:*::\n")
    for f in ("shadow", "gshadow"):
        (root / "etc" / f).chmod(0o600)
    return []


class Pi:
    """The Pi being installed: a fresh root, the shop's air and the gateway's bridge."""

    def __init__(self, tmp: Path, air, pki) -> None:
        self.tmp, self.air, self.pki = tmp, air, pki
        self.root = tmp / "root"
        self.setup_args = fresh_root(self.root)
        self.env = plain_install_env(tmp)
        self.config = self.root / "etc" / "panicgw" / "gateway.toml"
        self.data = self.root / "var" / "lib" / "panicgw"
        self.unit = self.root / "etc" / "systemd" / "system" / "panicgw.service"
        self.bridge = start_virtual_bridge(air, name="gw-bridge", link_dir=str(tmp))
        self.dispatch: subprocess.Popen | None = None
        self.daemon: subprocess.Popen | None = None
        self.journal = tmp / "journal.log"
        self.token, self.secret = "tok-" + os.urandom(8).hex(), "sig-" + os.urandom(16).hex()
        self.record = tmp / "dispatch.jsonl"

    def panicgw(self, *args: str, timeout: float = 120,
                stdin: Path | None = None) -> subprocess.CompletedProcess[str]:
        """``stdin``: a file the admin's shell gives the command (`< FILE`)."""
        with open(stdin or os.devnull, "rb") as f:
            return subprocess.run([str(BIN / "panicgw"), *args], capture_output=True,
                                  text=True, timeout=timeout, env=self.env, stdin=f)

    def start_dispatch(self) -> int:
        port = free_port()
        self.dispatch = subprocess.Popen(
            [str(BIN / "panicgw"), "dispatch-server", "--port", str(port), "--record",
             str(self.record), "--tls-cert", str(self.pki.cert), "--tls-key", str(self.pki.key)],
            env=dict(os.environ, PANICGW_DISPATCH_TOKEN=self.token,
                     PANICGW_DISPATCH_SECRET=self.secret),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        return port

    def status(self) -> dict:
        """The running daemon's status API (its port from runtime.json)."""
        try:
            port = json.loads((self.data / "runtime.json").read_text())["status_port"]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/status", timeout=2) as r:
                return json.loads(r.read())
        except (OSError, ValueError, KeyError):
            return {}

    def systemctl_start(self) -> None:
        """What systemd runs for the unit: its ExecStart, with $NOTIFY_SOCKET (Type=notify)
        and $WATCHDOG_USEC (WatchdogSec), stdout to the journal; started once READY=1."""
        text = self.unit.read_text()
        argv = shlex.split(re.search(r"(?m)^ExecStart=(.*)$", text).group(1))
        wd = int(re.search(r"(?m)^WatchdogSec=(\d+)", text).group(1))
        notify = self.tmp / f"notify-{os.urandom(3).hex()}.sock"
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        srv.bind(str(notify))
        srv.settimeout(30)
        env = dict(self.env, NOTIFY_SOCKET=str(notify), WATCHDOG_USEC=str(wd * 1_000_000))
        with self.journal.open("ab") as log:
            self.daemon = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True)
        try:
            got = ""
            while "READY=1" not in got:
                got += srv.recv(4096).decode()
        except TimeoutError:
            raise AssertionError("no READY=1 from the unit's ExecStart:\n"
                                 + self.journal.read_text()[-3000:]) from None
        finally:
            srv.close()

    def systemctl_stop(self) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            os.killpg(self.daemon.pid, signal.SIGTERM)  # KillMode=control-group, SIGTERM
            self.daemon.wait(30)
        self.daemon = None

    def stop(self) -> None:
        self.systemctl_stop()
        if self.dispatch is not None:
            os.killpg(self.dispatch.pid, signal.SIGTERM)
            self.dispatch.wait(30)
        self.bridge.stop()


def test_gateway_install_into_a_fresh_root_then_a_button_on_it(tmp_path, air, pki, laptop,
                                                                monkeypatch):
    pi = Pi(tmp_path, air, pki)
    walked: list[str] = []
    boards: list[Board] = []
    commands = [c for c in section_commands() if c not in MENTIONED]

    def step(cmd: str) -> str:
        assert cmd in commands, f"docs/gateway.md no longer says `{cmd}`"
        walked.append(cmd)
        return cmd

    venv = "/opt/panicgw/.venv/bin/"
    try:
        # 1. The source tree and its own venv, without extras. apt-get, venv and pip need
        # the network: what they provide is checked. python3-venv: the venv module.
        step("sudo apt-get install -y python3-venv")
        r = subprocess.run([sys.executable, "-m", "venv", "--help"], capture_output=True)
        assert r.returncode == 0
        step("sudo python3 -m venv /opt/panicgw/.venv")
        step("sudo /opt/panicgw/.venv/bin/pip install -e /opt/panicgw/src")
        r = pi.panicgw("--help")  # the plain install's panicgw starts
        assert r.returncode == 0, r.stderr

        # 2. setup --dry-run changes nothing; setup installs.
        cmd = step(f"sudo {venv}panicgw setup --dry-run")
        before = sorted(str(p) for p in pi.root.rglob("*"))
        r = pi.panicgw(*shlex.split(cmd)[2:], "--root", str(pi.root), *pi.setup_args)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "would create  config /etc/panicgw/gateway.toml" in r.stdout, r.stdout
        assert sorted(str(p) for p in pi.root.rglob("*")) == before
        cmd = step(f"sudo {venv}panicgw setup")
        r = pi.panicgw(*shlex.split(cmd)[2:], "--root", str(pi.root), *pi.setup_args)
        assert r.returncode == 0, r.stdout + r.stderr
        for p, mode in ((pi.config, 0o600), (pi.data, 0o700), (pi.data / "gateway.db", 0o600),
                        (pi.unit, 0o644)):
            assert stat.S_IMODE(p.stat().st_mode) == mode, (p, oct(p.stat().st_mode))
        assert f"ExecStart={BIN / 'panicgw'} run --config {pi.config}" in pi.unit.read_text()

        # 3. sudoedit: what the dispatch centre gave (https URL, token, secret, its CA);
        # test-only: the bridge's pty instead of the Pi's USB port, free local ports.
        step("sudoedit /etc/panicgw/gateway.toml")
        dport = pi.start_dispatch()
        text = pi.config.read_text()
        for section, key, value in (
                ("dispatch", "url", f"https://127.0.0.1:{dport}/v1/events"),
                ("dispatch", "token", pi.token), ("dispatch", "secret", pi.secret),
                ("dispatch", "ca_file", str(pki.ca)),
                ("serial", "port", pi.bridge.port_path), ("http", "host", "127.0.0.1"),
                ("http", "port", free_port()), ("status", "port", free_port())):
            text = edit_config(text, section, key, value)
        pi.config.write_text(text)
        cfg = tomllib.loads(text)
        assert cfg["serial"].get("region", "AS923-2") == "AS923-2"  # the example's region

        # 4. Start it and check it: every line of diag says PASS.
        step("sudo systemctl start panicgw")
        pi.systemctl_start()
        cmd = step(f"sudo -u panicgw {venv}panicgw diag --config /etc/panicgw/gateway.toml")

        def diag() -> dict:
            r = pi.panicgw(*shlex.split(cmd)[4:-1], str(pi.config), "--json")
            return json.loads(r.stdout)

        last: list[dict] = []

        def passing() -> dict | None:
            d = diag()
            last[:] = [d]
            return d if d["exit_code"] == 0 else None

        try:
            doc = wait_for(passing, 30, "diag to pass on the installed gateway")
        except AssertionError:
            raise AssertionError([(x["id"], x["status"], x["finding"]) for x in
                                  last[0]["results"] if x["status"] != "PASS"]) from None
        bad = {x["id"]: (x["status"], x["finding"]) for x in doc["results"]
               if x["status"] != "PASS" and x["status"] != "SKIP"}
        assert not bad and doc["daemon_running"] is True, bad
        step("journalctl -u panicgw -e")  # the unit's stdout is the journal
        assert pi.journal.read_text().strip() and pi.token not in pi.journal.read_text()
        step("sudo systemctl restart panicgw")  # after changing the config
        pi.systemctl_stop()
        pi.systemctl_start()
        wait_for(passing, 30, "diag to pass after the restart")
        step("sudo systemctl edit panicgw")  # local changes: a drop-in systemd manages
        assert "[Service]" in pi.unit.read_text()

        # 5. A button registered the way the section says (the installer's export, imported
        # on the Pi with --config), verified on the installer's laptop by its signed ACK.
        flash, provision, _import, verify = day_commands()
        uf2 = shlex.split(flash)[-1]
        (laptop.home / uf2).write_bytes(uf2_image(RP2040))
        boards.append(Board("sim", tmp_path, laptop, air))
        r = laptop.run(flash, pi)
        assert r.exit_code == 0, r.output
        r = laptop.run(provision, pi)
        assert r.exit_code == 0, r.output
        cmd = step("sudo -u panicgw panicgw devices import - --config "
                   "/etc/panicgw/gateway.toml < FILE")
        user, argv, stdin = run_as(cmd)
        assert (user, stdin) == ("panicgw", "FILE")  # setup's user; the export on stdin
        argv = [str(pi.config) if a == "/etc/panicgw/gateway.toml" else a for a in argv[1:]]
        r = pi.panicgw(*argv, stdin=laptop.home / "today.json")
        assert r.returncode == 0, r.stdout + r.stderr
        # "The running gateway picks the device up within seconds" (docs/installing.md).
        wait_for(lambda: pi.status().get("devices") == 1, 15, "the daemon to load the device")
        r = laptop.run(verify, pi)
        assert r.exit_code == 0, r.output
        # STORED, or DELIVERED when the first ACK was missed (a busy machine) and the button's
        # retry was answered after dispatch had confirmed: either proves the gateway holds it.
        assert re.search(r"PASS gateway ACK: (STORED|DELIVERED) via lora, signed with this "
                         r"button's key", r.output), r.output
        dev = int(re.search(r"registered: 0x([0-9A-F]{8})", r.output).group(1), 16)
        got = wait_for(lambda: [x for x in (pi.record.read_text().splitlines()
                                            if pi.record.exists() else [])
                                if f'"{dev:08X}"' in x], 20, "the TEST at dispatch")
        assert json.loads(got[0])["status"] == 200
        boards.pop().stop()

        # ... or, another button on the Pi's own USB, provisioned straight into its DB.
        (tmp_path / "on-the-pi").mkdir()
        (laptop.home / uf2).write_bytes(uf2_image(RP2040))
        boards.append(Board("sim", tmp_path / "on-the-pi", laptop, air, name="gudang"))
        r = laptop.run(flash, pi, on_gateway=True)
        assert r.exit_code == 0, r.output
        cmd = step("panictool provision --gateway-db /var/lib/panicgw/gateway.db")
        argv = [str(pi.data / "gateway.db") if a == "/var/lib/panicgw/gateway.db" else a
                for a in shlex.split(cmd)]
        r = laptop.run(shlex.join([*argv, "--site-name", "Toko Maju", "--kind", "shop",
                                   "--address", "Jl. Merdeka 12, Bandung", "--lat", "-6.9147",
                                   "--lon", "107.6098", "--label", "gudang"]),
                       pi, on_gateway=True)
        assert r.exit_code == 0 and "registered in the gateway DB" in r.output, r.output
        wait_for(lambda: pi.status().get("devices") == 2, 15, "the daemon to load it")
        r = laptop.run("panictool verify --config /etc/panicgw/gateway.toml", pi,
                       on_gateway=True)
        assert r.exit_code == 0, r.output
        assert f"PASS LoRa uplink margin: RSSI {RSSI:g} dBm, SNR {SNR:.1f} dB" in r.output
    finally:
        for b in boards:
            b.stop()
        pi.stop()
    assert sorted(walked) == sorted(commands), (
        f"commands of the section this journey does not walk: "
        f"{[c for c in commands if c not in walked]}")
