"""``bridge.radio`` and ``bridge.noise``: the bridge's radio runs on ``[serial]``'s settings
(the comparison is :mod:`panicgw.radio`, the daemon's own) and hears a quiet channel.

The fix depends on who can act: the running daemon pushes its settings to the bridge at
every connect (contract C6), so a difference is a push that failed or a bridge that reset;
with the daemon stopped, starting it is the fix, never editing the bridge.
"""

from __future__ import annotations

from typing import Any

from panicgw import radio
from panicgw.diag.context import FAIL, PASS, SKIP, WARN, Context, Result

RESTART = "`sudo systemctl restart panicgw`"
TITLE = "Bridge radio settings"


def _pushed(ctx: Context, rc: dict[str, Any]) -> Result | None:
    """bridge.radio from the daemon's CONFIG push (contract C6), or None when the push went
    through and the STATUS comparison decides."""
    state = rc.get("state")
    detail = str(rc.get("detail") or "")[:200]
    where = f"[serial] in {ctx.config_path}" if ctx.config_path else "[serial] in the config"
    if state == "rejected":
        return Result("bridge.radio", TITLE, FAIL,
                      f"the bridge refused the gateway's radio settings: {detail}",
                      f"The bridge names the setting it cannot take: fix it in {where} "
                      f"(frequency_mhz, spreading_factor, bandwidth_hz, coding_rate, "
                      f"tx_power_dbm), then {RESTART}.", {"radio_config": rc})
    if state == "no_reply":
        return Result("bridge.radio", TITLE, FAIL,
                      "the bridge does not answer the gateway's CONFIG (its radio settings "
                      "push): firmware too old or stuck",
                      "Update the bridge firmware with `panictool flash --role bridge` and "
                      "replug it; the gateway pushes its settings on every connect.",
                      {"radio_config": rc})
    if state == "mismatch":
        return Result("bridge.radio", TITLE, FAIL,
                      f"the bridge took CONFIG but reports other settings: {detail}",
                      "The bridge firmware does not apply what it accepts: reflash it with "
                      "`panictool flash --role bridge` and replug it.", {"radio_config": rc})
    if state in ("sent", "not_sent"):
        return Result("bridge.radio", TITLE, WARN,
                      "the gateway has not had the bridge confirm its radio settings yet",
                      "Run diag again in a few seconds.", {"radio_config": rc})
    return None


def _settings(ctx: Context, cfg_serial: dict[str, Any], status_doc: dict[str, Any],
              live: bool, rc: dict[str, Any] | None) -> Result:
    diff = [str(d) for d in radio.differences(cfg_serial, status_doc,
                                              ctx.thresholds.frequency_tolerance_mhz)]
    pushed = _pushed(ctx, rc) if rc else None
    if pushed is not None:
        return pushed
    if diff and live:
        # The push went through once; the bridge reports something else since (a reset).
        return Result("bridge.radio", TITLE, FAIL,
                      "bridge radio differs from config: " + ", ".join(diff),
                      "The gateway pushes [serial]'s settings again within 30 s; if this "
                      "stays, reflash the bridge with `panictool flash --role bridge` and "
                      f"replug it, or {RESTART}.")
    if diff:
        return Result("bridge.radio", TITLE, FAIL,
                      "bridge radio differs from config: " + ", ".join(diff),
                      "Nothing to edit on the bridge: `panicgw run` pushes the [serial] radio "
                      "settings to it whenever it connects. Start the gateway (`sudo "
                      "systemctl start panicgw`) and run diag again. Only if the buttons "
                      "really use the bridge's values, put those in [serial] instead.")
    if not radio.reported(status_doc):
        return Result("bridge.radio", TITLE, WARN,
                      "bridge STATUS reports no radio settings",
                      "Update the bridge firmware (`panictool flash --role bridge`).")
    return Result("bridge.radio", TITLE, PASS,
                  f"match config ({cfg_serial['frequency_mhz']:g} MHz, "
                  f"SF{cfg_serial['spreading_factor']}, "
                  f"{cfg_serial['bandwidth_hz'] / 1000:g} kHz)")


def _noise(ctx: Context, status_doc: dict[str, Any]) -> Result:
    limit = ctx.thresholds.noise_floor_warn_dbm
    noise = status_doc.get("noise_floor_dbm")  # panicbridge's STATUS; None before a sample
    if not isinstance(noise, int | float) or isinstance(noise, bool):
        return Result("bridge.noise", "Radio noise floor", SKIP,
                      "the bridge does not report a noise floor")
    if noise > limit:
        return Result("bridge.noise", "Radio noise floor", WARN,
                      f"noise floor {noise:g} dBm is above {limit:g} dBm: "
                      "interference cuts range", "Move the antenna away from the Pi, USB 3 "
                      "ports and power supplies; use a proper outdoor antenna; look for other "
                      "transmitters near the channel.", {"noise_floor_dbm": noise})
    return Result("bridge.noise", "Radio noise floor", PASS, f"{noise:g} dBm",
                  data={"noise_floor_dbm": noise})


def radio_results(ctx: Context, cfg_serial: dict[str, Any], status_doc: dict[str, Any],
                  live: bool, rc: dict[str, Any] | None = None) -> list[Result]:
    """bridge.radio and bridge.noise from a bridge STATUS (``live``: as the running daemon
    last had it, with its CONFIG push state ``rc``; else asked by diag itself)."""
    if "radio" in status_doc and status_doc["radio"] is None:
        err = str(status_doc.get("radio_error") or "no radio")[:160]
        return [Result("bridge.radio", TITLE, FAIL,
                       f"the bridge's radio is not working: {err}",
                       "The LoRa module does not answer the bridge: check the radio board/"
                       "FeatherWing seating and antenna, then replug; replace the bridge if it "
                       "persists."),
                Result("bridge.noise", "Radio noise floor", SKIP, "no radio")]
    return [_settings(ctx, cfg_serial, status_doc, live, rc), _noise(ctx, status_doc)]
