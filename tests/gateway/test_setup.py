"""Issue 10.11: installing the gateway on a Pi, walked the way docs/gateway.md ("Installing on
a Raspberry Pi") tells a technician, into a fresh root filesystem (`panicgw setup --root`):
the system user, directories and modes, the config from the example, the gateway DB, the
unit (enabled, `systemd-analyze verify` clean, hardened, LimitNOFILE above max_clients),
then the unit's own ExecStart runs the daemon (Type=notify: READY=1) on the installed config
with the virtual LoRa bridge running the real bridge firmware and an HTTPS dispatch, and
`panicgw diag --config` passes on it. A rerun changes nothing; --dry-run changes nothing."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from gwharness import DispatchThread
from gwkit import free_port, wait_until

from panicgw.dispatch_server.server import DispatchServer
from panicsim import Air, SimClock, start_virtual_bridge

REPO = Path(__file__).resolve().parents[2]
PANICGW = str(Path(sys.executable).parent / "panicgw")
DOC = REPO / "docs" / "gateway.md"
TOKEN, SECRET = "tok-setup-Pi-4711", "sig-setup-Pi-0815"
# The commands of the doc's section that this test performs (a --root stands for /).
DOC_COMMANDS = [
    "sudo /opt/panicgw/.venv/bin/panicgw setup --dry-run",
    "sudo /opt/panicgw/.venv/bin/panicgw setup",
    "sudoedit /etc/panicgw/gateway.toml",
    "sudo systemctl start panicgw",
    "sudo -u panicgw /opt/panicgw/.venv/bin/panicgw diag --config /etc/panicgw/gateway.toml",
]


def _section() -> str:
    text = DOC.read_text()
    start = text.index("## Installing on a Raspberry Pi")
    end = text.find("\n## ", start + 3)
    return text[start:end if end > 0 else None]


def _fresh_root(root: Path) -> None:
    """A root filesystem as a fresh OS image has it: its own user database, no panicgw.
    (Not as root, `useradd --root` cannot chroot: setup then runs as this user, `--user`.)"""
    (root / "etc").mkdir(parents=True)
    if os.geteuid() != 0:
        return
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc" / "group").write_text("root:x:0:\ndialout:x:20:\n")
    (root / "etc" / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (root / "etc" / "gshadow").write_text("root:*::\ndialout:*::\n")
    for f in ("shadow", "gshadow"):
        (root / "etc" / f).chmod(0o600)


def _tree(root: Path) -> dict[str, tuple[int, str]]:
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not \
            p.is_symlink() else os.readlink(p) if p.is_symlink() else ""
        out[str(p.relative_to(root))] = (stat.S_IMODE(st.st_mode), st.st_uid, digest)
    return out


def _setup(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    user = [] if os.geteuid() == 0 else ["--user", pwd.getpwuid(os.geteuid()).pw_name]
    return subprocess.run([PANICGW, "setup", "--root", str(root), *user, *args],
                          capture_output=True, text=True, timeout=120)


def _cert(d: Path) -> tuple[Path, Path]:
    cert, key = d / "dispatch.pem", d / "dispatch.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "90",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True,
                   timeout=60)
    return cert, key


def _edit(config: Path, section: str, key: str, value: object) -> None:
    """Set one key in the installed TOML the way a technician does in an editor: change its
    line in place (comments stay), or add it under its section."""
    text = config.read_text()
    line = f"{key} = {json.dumps(value)}"
    head = text.index(f"[{section}]")
    nxt = text.find("\n[", head + 1)
    body = text[head:nxt if nxt > 0 else None]
    new, n = re.subn(rf"(?m)^{re.escape(key)} = [^#\n]*?(\s*#.*)?$",
                     lambda m: line + (m.group(1) or ""), body, count=1)
    if not n:
        new = body.rstrip("\n") + f"\n{line}\n"
    config.write_text(text[:head] + new + (text[nxt:] if nxt > 0 else ""))


def test_the_documented_install_on_a_fresh_root_passes_diag(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.fail("openssl CLI is needed to make the dispatch certificate")
    section = _section()
    for cmd in DOC_COMMANDS:
        assert cmd in section, f"docs/gateway.md no longer says `{cmd}`"
    # the Pi installs without the [installer] extra (CircuitPython libraries, Blinka, ...)
    assert "sudo /opt/panicgw/.venv/bin/pip install -e /opt/panicgw/src\n" in section

    root = tmp_path / "root"
    _fresh_root(root)
    before = _tree(root)
    r = _setup(root, "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "would create  system user" in r.stdout or os.geteuid() != 0
    assert "would create  config /etc/panicgw/gateway.toml" in r.stdout
    assert "would run     enable panicgw.service" in r.stdout or shutil.which(
        "systemctl") is None
    assert _tree(root) == before  # a dry run changes nothing

    r = _setup(root, "--gateway-id", "gw-test-pi", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["error"] is None
    fresh = [s for s in doc["steps"] if os.geteuid() == 0 or "system user" not in s["what"]]
    assert all(s["action"] in ("create", "run") for s in fresh), doc["steps"]

    config = root / "etc" / "panicgw" / "gateway.toml"
    data = root / "var" / "lib" / "panicgw"
    unit = root / "etc" / "systemd" / "system" / "panicgw.service"
    if os.geteuid() == 0:  # the system user, in the root's own user database
        passwd = (root / "etc" / "passwd").read_text()
        m = re.search(r"(?m)^panicgw:x:(\d+):(\d+):[^:]*:/var/lib/panicgw:/usr/sbin/nologin$",
                      passwd)
        assert m, passwd
        uid = int(m.group(1))
        assert uid < 1000  # a system user
        assert re.search(r"(?m)^dialout:x:20:.*panicgw", (root / "etc" / "group").read_text())
    else:
        uid = os.geteuid()
    for p, mode, owner in ((root / "etc" / "panicgw", 0o750, 0), (config, 0o600, uid),
                           (data, 0o700, uid), (data / "gateway.db", 0o600, uid),
                           (unit, 0o644, None)):
        st = p.stat()
        assert stat.S_IMODE(st.st_mode) == mode, (p, oct(st.st_mode))
        if owner is not None and os.geteuid() == 0:
            assert st.st_uid == owner, (p, st.st_uid)
    cfg = tomllib.loads(config.read_text())
    assert cfg["gateway"]["id"] == "gw-test-pi" and cfg["gateway"]["data_dir"] == str(data)
    text = unit.read_text()
    assert f"ExecStart={PANICGW} run --config {config}" in text
    assert f"ReadWritePaths={data}" in text
    wants = root / "etc" / "systemd" / "system" / "multi-user.target.wants" / "panicgw.service"
    if shutil.which("systemctl"):
        assert wants.is_symlink()  # enabled: starts at boot
    if shutil.which("systemd-analyze"):
        v = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                           text=True, timeout=60)
        assert v.returncode == 0 and not v.stdout.strip() and not v.stderr.strip(), v.stderr

    # sudoedit /etc/panicgw/gateway.toml: what the dispatch centre gave us, and (test only)
    # free ports and the virtual bridge's pty instead of the Pi's USB port.
    cert, key = _cert(tmp_path)
    sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    sctx.load_cert_chain(str(cert), str(key))
    disp = DispatchThread()
    disp.call(disp.srv.stop())
    disp.srv = DispatchServer(token=TOKEN, secret=SECRET, ssl_context=sctx)
    disp.call(disp.srv.start())
    # The bridge as flashed (its own defaults): the gateway pushes its radio settings.
    bridge = start_virtual_bridge(Air(SimClock(1.0), seed=3), link_dir=tmp_path)
    proc = None
    try:
        for sec, k, v in (("dispatch", "url", disp.srv.url), ("dispatch", "token", TOKEN),
                          ("dispatch", "secret", SECRET), ("dispatch", "ca_file", str(cert)),
                          ("serial", "port", str(bridge.port_path)),
                          ("http", "host", "127.0.0.1"), ("http", "port", free_port()),
                          ("status", "port", free_port())):
            _edit(config, sec, k, v)
        assert stat.S_IMODE(config.stat().st_mode) == 0o600

        # sudo systemctl start panicgw: what systemd runs is the unit's ExecStart, with
        # $NOTIFY_SOCKET (Type=notify) and $WATCHDOG_USEC (WatchdogSec).
        exec_start = shlex.split(re.search(r"(?m)^ExecStart=(.*)$", text).group(1))
        notify = tmp_path / "notify.sock"
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        srv.bind(str(notify))
        srv.settimeout(30)
        env = {"PATH": "/usr/bin:/bin", "NOTIFY_SOCKET": str(notify), "WATCHDOG_USEC": "30000000"}
        log = (tmp_path / "journal.log").open("wb")
        proc = subprocess.Popen(exec_start, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        msgs: list[str] = []
        while not any("READY=1" in m for m in msgs):
            msgs.append(srv.recv(4096).decode())
        srv.close()

        def bridge_connected() -> bool:
            r = subprocess.run([PANICGW, "diag", "--config", str(config), "--json", "--only",
                                "bridge"], capture_output=True, text=True, timeout=60)
            return json.loads(r.stdout)["exit_code"] == 0

        assert wait_until(bridge_connected, 30), (tmp_path / "journal.log").read_text()[-3000:]
        r = subprocess.run([PANICGW, "diag", "--config", str(config), "--json"],
                           capture_output=True, text=True, timeout=120)
        doc = json.loads(r.stdout)
        bad = {x["id"]: (x["status"], x["finding"]) for x in doc["results"]
               if x["status"] in ("WARN", "FAIL")}
        assert r.returncode == 0 and not bad, bad
        assert doc["daemon_running"] is True
        # the daemon runs with this install's DB and logs nothing secret
        assert (data / "gateway.db").exists() and (data / "runtime.json").exists()
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        bridge.stop()
        disp.close()
    assert TOKEN not in (tmp_path / "journal.log").read_text()

    # running setup again: nothing to do, the technician's config is kept as it is
    edited = config.read_text()
    r = _setup(root, "--json")
    assert r.returncode == 0, r.stderr
    assert {s["action"] for s in json.loads(r.stdout)["steps"]} == {"keep"}
    assert config.read_text() == edited


def test_the_unit_is_hardened_and_has_descriptors_for_every_client() -> None:
    from panicgw import config as gwconfig

    text = (REPO / "deploy" / "panicgw.service").read_text()
    keys: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            k, _, v = line.partition("=")
            keys.setdefault(k.strip(), []).append(v.strip())
    one = {k: v[-1] for k, v in keys.items()}
    assert one["Type"] == "notify" and one["NotifyAccess"] == "main"
    assert int(one["WatchdogSec"]) > 0 and one["Restart"] == "always"
    max_clients = gwconfig.load(None).http["max_clients"]
    assert int(one["LimitNOFILE"]) > max_clients + 100
    for k, v in {"NoNewPrivileges": "true", "ProtectSystem": "strict", "PrivateTmp": "true",
                 "ProtectHome": "true", "ProtectKernelTunables": "true",
                 "ProtectKernelModules": "true", "ProtectKernelLogs": "true",
                 "ProtectControlGroups": "true", "RestrictNamespaces": "true",
                 "RestrictSUIDSGID": "true", "LockPersonality": "true",
                 "DevicePolicy": "closed", "User": "panicgw", "UMask": "0077"}.items():
        assert one.get(k) == v, (k, one.get(k))
    assert one["ReadWritePaths"] == "/var/lib/panicgw"
    assert set(one["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6",
                                                           "AF_NETLINK"}
    assert set(keys["DeviceAllow"]) == {"char-ttyACM rw", "char-ttyUSB rw"}
    assert one["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"


def test_setup_needs_root_for_a_real_install(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        r = subprocess.run([PANICGW, "setup", "--dry-run", "--json"], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0 and json.loads(r.stdout)["dry_run"] is True
        return
    r = subprocess.run([PANICGW, "setup"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "sudo" in r.stderr


SUDO_SECURE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # Debian's


def test_the_diag_command_setup_prints_runs(tmp_path: Path) -> None:
    """Setup's last step names the diag command to type. The venv's bin is on no PATH (and
    sudo uses its own secure_path), so setup links /usr/local/bin/panicgw to this panicgw:
    the printed commands run as printed, under --root and (the root standing for /) on a
    real install, `sudo -u panicgw panicgw diag --config /etc/panicgw/gateway.toml`."""
    root = tmp_path / "root"
    _fresh_root(root)
    r = _setup(root, "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    link = root / "usr" / "local" / "bin" / "panicgw"
    assert link.is_symlink() and link.resolve() == Path(PANICGW).resolve()
    env = {"PATH": "/usr/bin:/bin", "COLUMNS": "200", "LANG": "C.UTF-8"}

    # --root: the printed line, exactly as printed, runs diag on the tree's config
    printed = json.loads(r.stdout)["next"][-1]
    assert printed == f"{link} diag --config {root / 'etc/panicgw/gateway.toml'}"
    run = subprocess.run(shlex.split(printed), capture_output=True, text=True, timeout=120,
                         env=env)
    assert run.returncode in (0, 1, 2) and "panicgw diag" in run.stdout, run.stderr
    assert "Configuration" in run.stdout and "valid:" in run.stdout

    # a real install prints the sudo form (a dry run: nothing changes on this machine)
    r = subprocess.run([PANICGW, "setup", "--dry-run", "--json"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    argv = shlex.split(json.loads(r.stdout)["next"][-1])
    assert argv[:3] == ["sudo", "-u", "panicgw"] and argv[4:] == [
        "diag", "--config", "/etc/panicgw/gateway.toml"], argv
    # sudo finds the program on its secure_path: on the installed root, setup's link
    secure_path = os.pathsep.join(str(root) + d for d in SUDO_SECURE_PATH.split(":"))
    prog = shutil.which(argv[3], path=secure_path)
    assert prog is not None, f"`{argv[3]}` is not on sudo's PATH after setup"
    run = subprocess.run([prog, *argv[4:-1], str(root / argv[-1].lstrip("/")), "--json"],
                         capture_output=True, text=True, timeout=120, env=env)
    doc = json.loads(run.stdout)
    assert {x["id"]: x["status"] for x in doc["results"]}["config"] == "PASS", doc
