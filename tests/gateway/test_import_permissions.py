"""`panicgw devices import` on a gateway laid out as `panicgw setup` leaves it: the config 0600
in a 0750 root:<service> directory, the DB 0600 in a 0700 directory, all the service user's;
the admin's export file 0600, the admin's.

The admin, as themself, is refused with a permission error naming the exact command
(docs/installing.md's `sudo -u panicgw panicgw devices import - < today.json`); that command,
as the service user with the admin's file on stdin, imports; the service user given the
file's path is told the same command. Root may run it too, and leaves every file of the
data directory the service user's (SQLite hands the -wal/-shm it creates as root to the DB's
owner), so the daemon keeps opening them.

Needs root (files of other users, and forks that become them); skipped otherwise.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gwkit import make_record
from typer.testing import CliRunner

from panicgw import registry
from panicgw.cli import app as gw_app
from panicgw.store import Store

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: other users' files")

ADMIN = 4242  # the gateway's admin: a user of its own (uid = gid), not in the service group


def service_account() -> pwd.struct_passwd:
    """A system account standing for `panicgw` (setup's useradd --user-group: the group of
    the config's directory is named like the user)."""
    for name in ("daemon", "bin", "sys"):
        try:
            pw = pwd.getpwnam(name)
            if pw.pw_uid != 0 and grp.getgrgid(pw.pw_gid).gr_name == name:
                return pw
        except KeyError:
            continue
    pytest.fail("no system account with a group of its name (daemon, bin, sys) to stand for "
                "panicgw")


class Pi:
    def __init__(self, base: Path) -> None:
        self.svc = service_account()
        uid, gid = self.svc.pw_uid, self.svc.pw_gid
        etc, self.data, home = base / "etc" / "panicgw", base / "var" / "lib" / "panicgw", \
            base / "home" / "admin"
        for d in (etc, self.data, home):
            d.mkdir(parents=True)
        self.config = etc / "gateway.toml"
        self.config.write_text(f'[gateway]\nid = "gw-perm"\ndata_dir = "{self.data}"\n'
                               "[serial]\nenabled = false\n")
        self.db = self.data / "gateway.db"
        Store(self.db).close()
        self.export = home / "today.json"
        registry.write_export(self.export, [make_record()])
        for p, mode, owner in ((etc, 0o750, (0, gid)), (self.config, 0o600, (uid, gid)),
                               (self.data, 0o700, (uid, gid)), (self.db, 0o600, (uid, gid)),
                               (home, 0o700, (ADMIN, ADMIN)),
                               (self.export, 0o600, (ADMIN, ADMIN))):
            os.chown(p, *owner)
            os.chmod(p, mode)

    def import_as(self, uid: int, gid: int, *args: str,
                  stdin: bytes | None = None) -> tuple[int, str]:
        """`panicgw devices import ARGS` in a fork that has become ``uid``:``gid``. The
        command runs once as root first: what it imports lazily is loaded before the fork
        (the other user may not read this Python's own files)."""
        CliRunner().invoke(gw_app, ["devices", "import", str(self.data / "none.json")])
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the child reports through the pipe)
            code, out = 99, ""
            try:
                os.close(r)
                os.setgroups([gid])
                os.setgid(gid)
                os.setuid(uid)
                res = CliRunner().invoke(gw_app, ["devices", "import", *args], input=stdin,
                                         env={"PANICGW_CONFIG": None})
                code, out = res.exit_code, res.output
                if res.exception is not None and not isinstance(res.exception, SystemExit):
                    out += repr(res.exception)
            except BaseException as e:
                out = repr(e)
            finally:
                os.write(w, json.dumps([code, out]).encode())
                os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            data = f.read()
        os.waitpid(pid, 0)
        code, out = json.loads(data)
        return code, out

    def owners(self) -> dict[str, int]:
        return {p.name: p.stat().st_uid for p in self.data.iterdir()}

    def knows(self) -> bool:
        s = Store(self.db, create=False, readonly=True)
        try:
            return s.get_device(make_record().device_id) is not None
        finally:
            s.close()


@pytest.fixture
def pi() -> Iterator[Pi]:
    base = Path(tempfile.mkdtemp(prefix="panicgw-perm-"))  # not under root's 0700 tmp
    os.chmod(base, 0o755)
    try:
        yield Pi(base)
    finally:
        import shutil
        shutil.rmtree(base, ignore_errors=True)


def test_the_admin_is_told_the_command_and_it_imports(pi: Pi) -> None:
    svc, uid, gid = pi.svc.pw_name, pi.svc.pw_uid, pi.svc.pw_gid
    # The admin's own account reaches neither the config nor the DB.
    code, out = pi.import_as(ADMIN, ADMIN, str(pi.export), "--config", str(pi.config))
    want = f"sudo -u {svc} panicgw devices import - --config {pi.config} < {pi.export}"
    assert code == 2 and "permission denied" in out and f"`{want}`" in out, out
    assert "no gateway config" not in out
    code, out = pi.import_as(ADMIN, ADMIN, str(pi.export), "--gateway-db", str(pi.db))
    want_db = f"sudo -u {svc} panicgw devices import - --gateway-db {pi.db} < {pi.export}"
    assert code == 3 and f"`{want_db}`" in out and "no gateway DB" not in out, out
    # The service user cannot read the admin's 0600 file: the same command, file on stdin.
    code, out = pi.import_as(uid, gid, str(pi.export), "--config", str(pi.config))
    assert code == 2 and f"`{want}`" in out, out
    assert not pi.knows()
    # The command as it says: the service user, the file read by the admin's shell.
    code, out = pi.import_as(uid, gid, "-", "--config", str(pi.config),
                             stdin=pi.export.read_bytes())
    assert code == 0 and "imported 1 device(s): 0000BEEF" in out, out
    assert pi.knows()
    assert set(pi.owners().values()) == {uid}, pi.owners()


def test_root_may_import_and_leaves_the_files_the_service_users(pi: Pi) -> None:
    uid = pi.svc.pw_uid
    daemon = Store(pi.db, create=False)  # the running daemon's connection: -wal, -shm exist
    try:
        daemon.list_devices()
        res = CliRunner().invoke(gw_app, ["devices", "import", str(pi.export), "--config",
                                          str(pi.config)], env={"PANICGW_CONFIG": None})
        assert res.exit_code == 0, res.output
        owners: dict[str, Any] = pi.owners()
        assert {"gateway.db", "gateway.db-wal", "gateway.db-shm"} <= set(owners), owners
        assert set(owners.values()) == {uid}, owners
    finally:
        daemon.close()
    assert pi.knows()
