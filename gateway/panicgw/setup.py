"""The install steps of `panicgw setup`: the gateway as a service on a Raspberry Pi.

What a technician would otherwise do by hand from comments in a unit file, in one idempotent
command (docs/gateway.md, "Installing on a Raspberry Pi"):

1. the system user ``panicgw`` (no login, no home, in group ``dialout`` for the bridge);
2. ``/etc/panicgw`` (0750 root:panicgw) and ``/var/lib/panicgw`` (0700 panicgw), the data
   directory the daemon's DB lives in;
3. ``/etc/panicgw/gateway.toml`` from ``deploy/gateway.toml.example`` (0600 panicgw: it will
   hold the dispatch token), unless one is there already: an existing config is never
   touched;
4. the gateway DB, created empty with its schema (0600 panicgw), so `panicgw devices import`
   works before the first start (only the gateway creates its DB: `panicgw run` or this);
5. ``/usr/local/bin/panicgw``, a link to this panicgw: the venv's ``bin`` is on nobody's
   PATH, and the docs and diag's hints say ``panicgw ...`` (also ``sudo -u panicgw
   panicgw ...``: sudo's secure_path has /usr/local/bin). Another program already there
   (not a link) is left alone, and the commands setup prints name the full path instead;
6. ``/etc/systemd/system/panicgw.service`` from ``deploy/panicgw.service``, with ExecStart
   pointing at this panicgw, ReadWritePaths at the data directory and LimitNOFILE above
   ``[http] max_clients``; then ``systemctl daemon-reload`` and ``systemctl enable``
   (``--start``: also (re)start it).

A rerun changes only what differs (and says so); ``--dry-run`` lists what it would do.
``--root DIR`` installs a self-contained tree under DIR (tests, trying it out): every path
above is under DIR, the config's data_dir and the unit's paths point inside DIR, the user is
added to DIR/etc/passwd (``useradd --root``) and the unit enabled with ``systemctl --root``.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import panicgw
from panicgw import config as gwconfig

CONFIG = Path("/etc/panicgw/gateway.toml")
DATA_DIR = Path("/var/lib/panicgw")
UNIT = Path("/etc/systemd/system/panicgw.service")
LINK = Path("/usr/local/bin/panicgw")
NOFILE_MIN = 8192
NOFILE_SPARE = 1024  # DB, serial, dispatch, MQTT, status API above the Wi-Fi clients


def executable() -> Path:
    """This panicgw's command (the venv's ``bin/panicgw``): what the unit and the link run."""
    return Path(sys.executable).parent / "panicgw"


def source_tree() -> Path:
    """The checkout panicgw runs from (editable install): deploy/ and docs/ live there."""
    return Path(panicgw.__file__).resolve().parents[2]


@dataclass
class Step:
    what: str
    action: str  # "create" | "update" | "keep" | "run" | "skip"
    detail: str = ""


class SetupError(RuntimeError):
    """A step failed; the message says what to do."""


@dataclass
class Account:
    uid: int
    gid: int


class Setup:
    """The install, step by step. ``dry_run``: decide every step, change nothing."""

    def __init__(self, root: Path | None, *, user: str, gateway_id: str | None,
                 dry_run: bool, start: bool) -> None:
        self.root = root.resolve() if root is not None else None
        self.user = user
        self.gateway_id = gateway_id
        self.dry_run = dry_run
        self.start = start
        self.steps: list[Step] = []
        self.src = source_tree()
        self.exe = executable()
        self.linked = False  # LINK is (or, in a dry run, would be) this panicgw

    # -- helpers ---------------------------------------------------------------------------

    def at(self, p: Path) -> Path:
        """``p`` on the target system: under --root, inside it."""
        return self.root / p.relative_to("/") if self.root is not None else p

    def note(self, what: str, action: str, detail: str = "") -> None:
        if self.dry_run and action in ("create", "update", "run"):
            action = f"would {action}"
        self.steps.append(Step(what, action, detail))

    def _run(self, argv: list[str]) -> None:
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        except OSError as e:
            raise SetupError(f"cannot run {argv[0]}: {e.strerror}") from None
        if r.returncode != 0:
            raise SetupError(f"`{' '.join(argv)}` failed (exit {r.returncode}): "
                             f"{(r.stderr or r.stdout).strip()[-500:]}")

    def account(self) -> Account | None:
        """The service user on the target system (None: not there yet)."""
        if self.root is None:
            try:
                pw = pwd.getpwnam(self.user)
            except KeyError:
                return None
            return Account(pw.pw_uid, pw.pw_gid)
        passwd = self.at(Path("/etc/passwd"))
        if passwd.exists():
            for line in passwd.read_text().splitlines():
                f = line.split(":")
                if len(f) >= 4 and f[0] == self.user:
                    return Account(int(f[2]), int(f[3]))
        try:  # a --root tree without its own user database: the host's (tests as non-root)
            pw = pwd.getpwnam(self.user)
        except KeyError:
            return None
        return Account(pw.pw_uid, pw.pw_gid) if not passwd.exists() else None

    def _chown(self, p: Path, acct: Account | None, gid: int | None = None) -> None:
        if acct is None or self.dry_run:
            return
        st = p.stat()
        want = (acct.uid, acct.gid if gid is None else gid)
        if (st.st_uid, st.st_gid) != want:
            try:
                os.chown(p, *want)
            except PermissionError:
                raise SetupError(f"cannot give {p} to {self.user}: run setup as root "
                                 "(sudo)") from None

    # -- steps -----------------------------------------------------------------------------

    def step_user(self) -> Account | None:
        acct = self.account()
        if acct is not None:
            self.note(f"system user {self.user}", "keep", f"uid {acct.uid}")
            return acct
        argv = ["useradd", "--system", "--user-group", "--home-dir", str(DATA_DIR),
                "--no-create-home", "--shell", "/usr/sbin/nologin"]
        if self._has_group("dialout"):
            argv += ["--groups", "dialout"]
        if self.root is not None:
            argv[1:1] = ["--root", str(self.root)]
        argv.append(self.user)
        self.note(f"system user {self.user}", "create",
                  "no login, no home; group dialout for the LoRa bridge's serial port")
        if self.dry_run:
            return None
        self._run(argv)
        acct = self.account()
        if acct is None:
            raise SetupError(f"useradd ran but {self.user} is not in the user database")
        return acct

    def _has_group(self, name: str) -> bool:
        if self.root is None:
            try:
                grp.getgrnam(name)
                return True
            except KeyError:
                return False
        group = self.at(Path("/etc/group"))
        return group.exists() and any(line.split(":")[0] == name
                                      for line in group.read_text().splitlines())

    def step_dir(self, path: Path, mode: int, acct: Account | None, owner: bool,
                 why: str) -> None:
        p = self.at(path)
        if not p.exists():
            self.note(f"directory {path}", "create", f"mode {mode:04o}, {why}")
            if not self.dry_run:
                p.mkdir(parents=True, mode=mode)
        elif not p.is_dir():
            raise SetupError(f"{p} exists and is not a directory: move it away")
        elif p.stat().st_mode & 0o7777 != mode:
            self.note(f"directory {path}", "update", f"mode {p.stat().st_mode & 0o7777:04o} "
                      f"-> {mode:04o}")
        else:
            self.note(f"directory {path}", "keep", f"mode {mode:04o}")
        if self.dry_run:
            return
        os.chmod(p, mode)
        if acct is not None:  # the data dir is the user's; the config dir root's (its group)
            self._chown(p, acct if owner else Account(os.geteuid(), acct.gid))

    def config_text(self) -> str:
        example = self.src / "deploy" / "gateway.toml.example"
        if not example.is_file():
            raise SetupError(f"{example} is missing: panicgw setup runs from the source tree "
                             "it was installed from (`pip install -e`)")
        text = example.read_text()
        gid = self.gateway_id or default_gateway_id()
        text = re.sub(r'(?m)^id = "[^"]*"(\s*#.*)?$',
                      f'id = "{gid}"                  # names this gateway to dispatch and MQTT',
                      text, count=1)
        text = re.sub(r'(?m)^data_dir = "[^"]*"(\s*#.*)?$',
                      f'data_dir = "{self.at(DATA_DIR)}"     # the DB (device keys): 0700',
                      text, count=1)
        text = re.sub(r"(?m)^# panicgw configuration \(copy to .*\n(# `sudo panicgw setup`.*\n)?",
                      f"# panicgw configuration, written by `panicgw setup` (mode 0600, owner "
                      f"{self.user}: it will hold secrets).\n", text, count=1)
        return text

    def step_config(self, acct: Account | None) -> Path:
        p = self.at(CONFIG)
        if p.exists():
            self.note(f"config {CONFIG}", "keep", "an existing config is never overwritten")
        else:
            text = self.config_text()
            gwconfig.from_dict(_toml(text), str(CONFIG))  # never install an invalid config
            self.note(f"config {CONFIG}", "create",
                      f"from deploy/gateway.toml.example, mode 0600, owner {self.user}")
            if not self.dry_run:
                _write(p, text, 0o600)
        if not self.dry_run and p.exists():
            if p.stat().st_mode & 0o077:
                os.chmod(p, 0o600)
            self._chown(p, acct)
        return p

    def step_db(self, cfg: gwconfig.Config | None, acct: Account | None) -> None:
        from panicgw.store import Store

        path = cfg.db_path if cfg is not None else self.at(DATA_DIR) / "gateway.db"
        if path.exists():
            self.note(f"database {self._target(path)}", "keep", "existing DB kept as it is")
            if self.dry_run:
                return
        else:
            self.note(f"database {self._target(path)}", "create",
                      "empty, with the gateway's schema (mode 0600): `panicgw devices "
                      "import` works before the first start")
            if self.dry_run:
                return
            Store(path).close()
        for suffix in ("", "-wal", "-shm"):
            q = Path(str(path) + suffix)
            if q.exists():
                self._chown(q, acct)
        if acct is not None and path.parent.exists():
            self._chown(path.parent, acct)

    def step_link(self) -> None:
        p = self.at(LINK)
        what = f"link {LINK}"
        if p.is_symlink():
            old = os.readlink(p)
            if old == str(self.exe):
                self.note(what, "keep", f"-> {self.exe}")
                self.linked = True
                return
            self.note(what, "update", f"-> {self.exe} (was -> {old})")
        elif p.exists():
            if self.exe.exists() and p.samefile(self.exe):  # a system-wide pip install
                self.note(what, "keep", "this panicgw")
                self.linked = True
            else:
                self.note(what, "skip", f"another program is there (not a link): left alone; "
                          f"run this panicgw as {self.exe}")
            return
        else:
            self.note(what, "create", f"-> {self.exe} (`panicgw` on the PATH, also with sudo)")
        self.linked = True
        if self.dry_run:
            return
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.tmp")
        tmp.unlink(missing_ok=True)
        os.symlink(self.exe, tmp)
        os.replace(tmp, p)

    def unit_text(self, cfg: gwconfig.Config | None, config_path: Path) -> str:
        template = self.src / "deploy" / "panicgw.service"
        if not template.is_file():
            raise SetupError(f"{template} is missing: panicgw setup runs from the source "
                             "tree it was installed from (`pip install -e`)")
        text = template.read_text()
        exe = self.exe
        data_dir = cfg.data_dir if cfg is not None else self.at(DATA_DIR)
        max_clients = int(cfg.http["max_clients"]) if cfg is not None else 2000
        nofile = max(NOFILE_MIN, max_clients + NOFILE_SPARE)
        text = re.sub(r"(?m)^ExecStart=.*$",
                      f"ExecStart={exe} run --config {config_path}", text)
        text = re.sub(r"(?m)^ReadWritePaths=.*$", f"ReadWritePaths={data_dir}", text)
        text = re.sub(r"(?m)^LimitNOFILE=.*$", f"LimitNOFILE={nofile}", text)
        text = re.sub(r"(?m)^User=.*$", f"User={self.user}", text)
        text = re.sub(r"(?m)^Group=.*$", f"Group={self.user}", text)
        text = re.sub(r"(?m)^Documentation=.*$",
                      f"Documentation=file://{self.src / 'docs' / 'gateway.md'}", text)
        return text

    def step_unit(self, text: str) -> bool:
        p = self.at(UNIT)
        if p.exists() and p.read_text() == text:
            self.note(f"unit {UNIT}", "keep", "up to date")
            return False
        self.note(f"unit {UNIT}", "update" if p.exists() else "create",
                  "ExecStart, ReadWritePaths and LimitNOFILE for this install")
        if not self.dry_run:
            _write(p, text, 0o644)
        return True

    def step_systemd(self, changed: bool) -> None:
        systemctl = shutil.which("systemctl")
        if systemctl is None:
            self.note("enable panicgw.service", "skip",
                      "systemctl not found: not a systemd system")
            return
        if self.root is not None:
            enabled = self.at(Path("/etc/systemd/system/multi-user.target.wants/"
                                   "panicgw.service")).is_symlink()
            if enabled:
                self.note("enable panicgw.service", "keep", f"enabled in {self.root}")
            else:
                self.note("enable panicgw.service", "run",
                          f"systemctl --root {self.root} enable panicgw.service")
                if not self.dry_run:
                    self._run([systemctl, "--root", str(self.root), "enable",
                               "panicgw.service"])
            if self.start:
                self.note("start panicgw.service", "skip", "--root: nothing runs there")
            return
        if changed:
            self.note("reload systemd", "run", "systemctl daemon-reload")
            if not self.dry_run:
                self._run([systemctl, "daemon-reload"])
        r = subprocess.run([systemctl, "is-enabled", "panicgw.service"], capture_output=True,
                           text=True, timeout=60)
        if r.stdout.strip() == "enabled":
            self.note("enable panicgw.service", "keep", "enabled (starts at boot)")
        else:
            self.note("enable panicgw.service", "run", "systemctl enable panicgw.service")
            if not self.dry_run:
                self._run([systemctl, "enable", "panicgw.service"])
        if self.start:
            self.note("start panicgw.service", "run", "systemctl restart panicgw.service")
            if not self.dry_run:
                self._run([systemctl, "restart", "panicgw.service"])

    # -- all of it -------------------------------------------------------------------------

    def run(self) -> list[Step]:
        acct = self.step_user()  # None in a dry run that would create it: nothing to chown
        self.step_dir(CONFIG.parent, 0o750, acct, owner=False,
                      why=f"root, group {self.user} (reads its config)")
        config_path = self.step_config(acct)
        cfg: gwconfig.Config | None = None
        if config_path.exists():
            try:
                cfg = gwconfig.load(config_path)
            except gwconfig.ConfigError as e:
                raise SetupError(f"the existing config does not validate: {e}; fix it, then "
                                 "run setup again") from None
        elif self.dry_run:
            cfg = gwconfig.from_dict(_toml(self.config_text()), str(CONFIG),
                                     self.at(CONFIG.parent))
        data_dir = cfg.data_dir if cfg is not None else self.at(DATA_DIR)
        self.step_dir(self._target(data_dir), 0o700, acct, owner=True,
                      why=f"owner {self.user}: the DB holds device keys")
        self.step_db(cfg, acct)
        self.step_link()
        changed = self.step_unit(self.unit_text(cfg, self.at(CONFIG)))
        self.step_systemd(changed)
        return self.steps

    def next_steps(self) -> list[str]:
        """What the technician does after setup, as commands to type on the target system
        (under --root: on this machine, with the tree's paths)."""
        config_path = self.at(CONFIG)
        edit = (f"edit {config_path}: [gateway] id, [dispatch] url, token and secret from the "
                "dispatch centre, [serial] region")
        panicgw = str(self.at(LINK)) if self.linked and self.root is not None else (
            "panicgw" if self.linked else str(self.exe))
        if self.root is not None:
            return [edit, f"{self.exe} run --config {config_path}",
                    f"{panicgw} diag --config {config_path}"]
        return [edit, "sudo systemctl restart panicgw",
                f"sudo -u {self.user} {panicgw} diag --config {config_path}"]

    def _target(self, p: Path) -> Path:
        """``p`` as a path of the target system (inverse of :meth:`at`)."""
        if self.root is not None and p.is_relative_to(self.root):
            return Path("/") / p.relative_to(self.root)
        return p


def default_gateway_id() -> str:
    """``gw-<hostname>``: unique per Pi without anyone thinking of it."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname().split(".")[0]) or "pi"
    return f"gw-{host}"


def _toml(text: str) -> dict[str, Any]:
    import tomllib

    return tomllib.loads(text)


def _write(p: Path, text: str, mode: int) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, p)


