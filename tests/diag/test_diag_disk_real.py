"""`panicgw diag`'s free-disk check on a REAL small filesystem: the gateway's data directory
is a 64 MB tmpfs and filler files take real space, with the thresholds scaled to that size
through ``--set`` (warn below 40 MB, fail below 10 MB). The faked version, thresholds far
above any disk, is test_diag_checks.py::test_disk_nearly_full.

Asserted per fill level: the disk line's status, the exit code of ``--only database`` (the
group holding the disk line, so a stopped daemon's warning does not mask it), and that the
finding states the free megabytes the kernel reports (within 2 MB)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from diagkit import Gateway, LoopThread, by_id

FS_MB = 64
THRESHOLDS = ("--set", "disk_free_warn_mb=40", "--set", "disk_free_fail_mb=10",
              # percentages low enough that only the MB limits decide on this small fs
              "--set", "disk_free_warn_pct=5", "--set", "disk_free_fail_pct=1")


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[int, str], Path]]:
    """``tmpfs(size_mb, name)`` mounts a fresh tmpfs at ``tmp_path/name``: free space the
    kernel reports, not a faked threshold. Unmounted at teardown, whatever the outcome. Needs
    root: skipped without it, except in CI (CI=true), where a missing tool is a failure."""
    mounted: list[Path] = []

    def mount(size_mb: int, name: str = "tmpfs") -> Path:
        where = tmp_path / name
        where.mkdir()
        try:
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700",
                                "tmpfs", str(where)], capture_output=True, text=True,
                               timeout=30)
            why = " ".join(r.stderr.split()) or f"exit code {r.returncode}"
            ok = r.returncode == 0
        except OSError as e:  # no mount(8)
            why, ok = str(e), False
        if not ok:
            msg = f"cannot mount a {size_mb} MB tmpfs at {where}: {why} (needs root)"
            if os.environ.get("CI") == "true":
                pytest.fail(msg)
            pytest.skip(msg)
        mounted.append(where)
        total = shutil.disk_usage(where).total
        assert abs(total - size_mb * 2**20) < 2**20, f"{where} is not a {size_mb} MB fs"
        return where

    yield mount
    errors = []
    for where in reversed(mounted):
        r = subprocess.run(["umount", str(where)], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)
            errors.append(f"umount {where}: {r.stderr.strip()} (lazily unmounted)")
    if errors:
        pytest.fail("; ".join(errors))


@pytest.fixture
def gw_on_tmpfs(tmpfs: Callable[[int, str], Path], tmp_path: Path, loop_thread: LoopThread,
                certs: dict[int, tuple[Path, Path]]) -> Iterator[Gateway]:
    """diagkit's stopped gateway whose data directory (DB and all) is the tmpfs itself."""
    tmpfs(FS_MB, "data")  # diagkit.Gateway keeps its DB in <root>/data
    g = Gateway(tmp_path, loop_thread, certs)
    yield g
    g.close()  # before the unmount: the DB must be closed


def fill_to(fs: Path, name: str, free_mb: float) -> Path:
    """A filler file leaving about ``free_mb`` MB (10^6 bytes, diag's unit) free on ``fs``."""
    path = fs / name
    size = shutil.disk_usage(fs).free - int(free_mb * 1e6)
    assert size > 0, f"{fs} already has less than {free_mb} MB free"
    with open(path, "wb") as f:
        for _ in range(size // 2**20):
            f.write(bytes(2**20))
        f.write(bytes(size % 2**20))
    return path


def disk_line(gw: Gateway) -> tuple[int, dict]:
    code, doc = gw.diag("--only", "database", *THRESHOLDS)
    real_mb = shutil.disk_usage(gw.data).free / 1e6
    r = by_id(doc)["disk"]
    m = re.search(r"([\d,]+) MB free", r["finding"])
    assert m, r["finding"]
    stated = float(m.group(1).replace(",", ""))
    assert abs(stated - real_mb) <= 2, (r["finding"], real_mb)
    assert str(gw.data) in r["finding"]
    return code, r


def test_disk_check_on_a_real_filling_filesystem(gw_on_tmpfs):
    gw = gw_on_tmpfs
    data = gw.data
    assert shutil.disk_usage(data).free / 1e6 > 60  # the DB takes next to nothing

    code, r = disk_line(gw)
    assert r["status"] == "PASS" and code == 0, (code, r)

    first = fill_to(data, "filler-1", 30)
    code, r = disk_line(gw)
    assert r["status"] == "WARN", r
    assert "warn below 40 MB" in r["finding"] and "journalctl" in r["hint"]
    assert code == 1

    fill_to(data, "filler-2", 5)
    code, r = disk_line(gw)
    assert r["status"] == "FAIL", r
    assert "fail below 10 MB" in r["finding"] and "stops accepting alarms" in r["hint"]
    assert code == 2

    # Space freed: the same check passes again (nothing about the verdict is sticky).
    first.unlink()
    (data / "filler-2").unlink()
    code, r = disk_line(gw)
    assert r["status"] == "PASS" and code == 0, (code, r)
