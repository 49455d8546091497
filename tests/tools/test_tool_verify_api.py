"""`panictool verify`'s status-API source against the real daemon: a TEST the gateway stored
is found with its path and signal; one it rejected (another key) fails with the reason."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gateway"))
from gwharness import GatewayThread, make_config  # noqa: E402
from gwkit import DEV, KEY, make_record, post_frame, uplink  # noqa: E402

from panicgw.store import Store  # noqa: E402
from panicproto import frames  # noqa: E402
from panictool import verify  # noqa: E402


def test_api_source_reports_stored_and_rejected_tests(tmp_path):
    cfg = make_config(tmp_path)
    s = Store(cfg.db_path)
    s.upsert_device(make_record())
    s.close()
    with GatewayThread(cfg) as g:
        url = f"http://127.0.0.1:{g.gw.status_port}"
        source = verify.api_source(url)
        assert post_frame(g.gw.http.port, uplink(frames.TEST, counter=0x00010005)) == 200
        good = verify.Result()
        verify.check_heard(good, source, url, DEV, 0x00010005, ["wifi"], 9, 5.0)
        assert [(c.name, c.status) for c in good.checks] == [("gateway heard TEST", "PASS")]
        assert good.heard[0]["path"] == "wifi" and good.heard[0]["duplicate"] is False
        assert "stored as test via wifi" in good.checks[0].detail

        other_key = bytes(reversed(KEY))
        assert post_frame(g.gw.http.port, uplink(frames.TEST, counter=0x00010006,
                                             key=other_key)) == 403
        bad = verify.Result()
        verify.check_heard(bad, source, url, DEV, 0x00010006, ["wifi"], 9, 5.0)
        assert bad.checks[0].status == "FAIL" and "rejected it: bad_tag" in bad.checks[0].detail
        # after a rekey the fix is one key for both ends, or an export of the current
        # key generation (docs/installing.md), not importing an old export again
        assert "panictool rekey" in bad.checks[0].hint
        assert "current key generation" in bad.checks[0].hint

        silent = verify.Result()
        verify.check_heard(silent, source, url, DEV, 0x00010007, ["wifi"], 9, 0.5)
        assert silent.checks[0].status == "FAIL" and "after 0 s" in silent.checks[0].detail

    gone = verify.Result()  # the gateway stopped: a clear failure, not a traceback
    verify.check_heard(gone, verify.api_source(url), url, DEV, 0x00010005, ["wifi"], 9, 1.0)
    assert gone.checks[0].status == "FAIL" and "cannot read" in gone.checks[0].detail
