"""Simulated board: runs the real firmware unchanged on a PC, for tests, ``panictool sim``
and the demo: exactly the files ``panictool flash`` writes (panicimage.manifest), imported
as on a board (its built-ins, then ``/`` and ``/lib``; never the host's modules), with the
real CircuitPython libraries (``adafruit_rfm`` over a register-level SX127x model on a
fake SPI bus, ``adafruit_requests`` over real sockets).

Quick use::

    from panicsim import Air, SimClock, SimButton, VirtualClock, start_virtual_bridge

    clock = SimClock(speed=1.0)            # real time x speed; clock.skip(s) jumps ahead
    clock = VirtualClock()                 # or: time moves when every board waits (tests)
    air = Air(clock, loss=0.0, duplicate=0.0, latency_s=0.0, corrupt=0.0, seed=1)
    bridge = start_virtual_bridge(air, settings={"PB_FREQUENCY_MHZ": "921.4", "PB_SF": 9})
    bridge.port_path      # open with pyserial (stable symlink to a pty)
    bridge.unplug(); bridge.replug()       # USB gone (port vanishes, board off) and back
    bridge.status_counters via the link: send STATUS / PING / CONFIG / TX (panicproto.link)
    bridge.stop()                          # firmware stopped and port removed

    btn = SimButton(device_id=0x12345678, key=bytes(16), air=air,
                    board="feather_rp2040_rfm95",      # or feather_esp32s3 (Wi-Fi only),
                                                       # feather_esp32s3_rfm95_wing (both)
                    settings={"PB_REGION": "AS923-2", "PB_SF": 9,
                              "PB_WIFI_SSID": "shop", "PB_WIFI_PASSWORD": "password1",
                              "PB_GATEWAY_URL": "http://127.0.0.1:8080"},
                    wifi_networks={"shop": "password1"})
    btn.start()            # cold boot: prints `PANIC-BUTTON {json}` (btn.boot_reports())
    btn.alarm()            # = btn.press(2.0): hold 2 s (simulated) -> ALARM
    btn.test()             # = btn.click(5) -> TEST
    btn.set_tamper(True)
    btn.power_cut(); btn.start()   # RAM and sleep memory lost, NVM kept (btn.nvm_writes)
    btn.console, btn.led_log, btn.wait_for_line(pred, timeout)   # timeout: real seconds
    btn.boot_log           # [(clock time, reset reason)] per run of code.py
    btn.radio.sent         # [(time, sf, packet)]: exactly what the chip put on air
    btn.imported           # files of the flashed tree the last run of code.py imported
    usb = btn.usb_console()        # USB serial console on a pty: usb.path for pyserial /
                                   # panictool (raw REPL, Ctrl-C stops, Ctrl-D reloads)
    btn.reload()                   # soft reload: code.py again, sleep memory kept
    btn.stop()

    SimButton(..., drive="path/CIRCUITPY")   # the board's filesystem: code.py and lib/ run
                                             # from there (`panictool flash` or btn.flash()
                                             # put them there), settings.toml re-read at
                                             # every boot, the console's open()/os rooted
                                             # there. Without drive: a private copy of
                                             # what `panictool flash` writes.

Semantics worth knowing:

* Settings are the PB_* keys of settings.toml (dict or ``settings_toml=path``); the key
  and device id go into the simulated NVM exactly as ``panictool provision`` writes them
  (``panicbutton.nvmstore.identity_record``).
* The LoRa bridge speaks panicproto.link on the pty: RX (frame + RSSI + SNR) for each
  radio frame; TX payload is transmitted at once; PING -> PONG; STATUS request -> STATUS
  JSON {firmware, uptime_s, radio{frequency_mhz, sf, bw_hz, cr, tx_power}, counters{rx,
  tx, tx_failed, crc_errors, dropped, link_errors, ...}, noise_floor_dbm}; CONFIG JSON
  (any of frequency_mhz, sf, bw_hz, cr, tx_power) -> STATUS, or LOG "config rejected:
  ..." with the same seq. A STATUS is also sent when a host opens the port.
* The air delivers a packet only to radios on the same frequency, SF and bandwidth whose
  modem receives for the whole packet; airtime comes from panicproto.airtime with the
  sender's modulation. Packets carry no RadioHead header (the firmware sends with
  ``radiohead = False``): an uplink is 19 bytes, a downlink 18. ``air.rssi``/``air.snr``
  are what a receiving chip reports. ``air.inject(bytes, frequency_mhz, sf)`` transmits
  garbage or forgeries.
* Wi-Fi uses the host's real sockets and the real adafruit_requests library: the button
  POSTs to ``{PB_GATEWAY_URL}/v1/frames``.
* ``SimClock(speed=k)`` runs k times faster than real time; a gateway answering in real
  time then looks k times slower to the button, so keep speed 1 with a real gateway.
* ``VirtualClock()`` (tests): time stands still while any board's firmware thread works
  (a Wi-Fi request over real sockets included) and jumps to the next deadline when all of
  them wait (``time.sleep``, a receive window, a deep sleep's TimeAlarm, a test's
  ``clock.sleep`` or ``btn.press``), so an hour of heartbeats takes milliseconds; wait on
  conditions (``wait_for_line``, ``clock.wait_until(None, wake=pred, real_timeout=s)``).
  Nothing outside the process waits for it: a test that talks to a bridge's serial port
  itself wraps that in ``with clock.hold():`` (time then moves only while the test waits
  on the clock, so its reads and replies are never overtaken), and a real gateway, the
  demo and ``panictool sim`` use ``SimClock``.
"""

from panicsim.air import Air
from panicsim.board import SimBoard
from panicsim.bridge import VirtualBridge, start_virtual_bridge
from panicsim.button import SimButton
from panicsim.clock import SimClock, VirtualClock

__all__ = ["Air", "SimBoard", "SimButton", "SimClock", "VirtualBridge", "VirtualClock",
           "start_virtual_bridge"]
