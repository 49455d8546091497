"""The scripted scenario: what happens to the world, and when.

Steps (seconds after the buttons start powering up; default run 30 s; with more than
22 buttons every step after the power-up moves later by the longer power-up):

* 0-5   buttons power up (staggered); each sends its first heartbeat 5 s after boot.
        An attacker jams the replay victim's frames while recording them.
* ~6    the attacker got a frame; the victim's battery is swapped (new counter epoch).
* 10.5  dual-path panic: a Wi-Fi+LoRa button is held; both copies reach the gateway.
* 12.5  a forged ALARM (right device id, wrong key) on the air; one over Wi-Fi too.
* 13    panic with its ACK lost on the air: the button retries with the same counter.
* 13.5  the "silent" button's battery is removed: supervision must report it lost.
* 14    the attacker replays the recorded frame (behind the replay window).
* 15.5+ more panics from other LoRa buttons, 0.75 s apart.
* 19.5-26.5 the LoRa bridge is unplugged and plugged back in.
* 27.5  TEST press over LoRa (proves reception came back).
* then  (longer --duration) background presses until the end, then settle.

The scenario only acts; summary.py judges from what dispatch and the gateway recorded.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from panicdemo.world import FREQ_MHZ, SF, AirFault, DemoButton, World, ack_to, uplink_from
from panicproto import frames

SCRIPT_END_S = 29.5  # last scripted action (the TEST press) ends by about here
MIN_DURATION_S = 30
BOOT_SPREAD_S = 5.0  # power-ups spread out, so first heartbeats collide less
ALARM_HOLD_S = 3.0  # a frightened user holds well past the 1.5 s threshold


@dataclass
class Roles:
    """Which button plays which part (device ids, for the summary's checks)."""

    ack_lost: int
    silent: int
    replay_victim: int
    test: int
    forged_target: int
    dual_path: int
    extra_panics: list[int] = field(default_factory=list)


@dataclass
class Scenario:
    world: World
    duration_s: float = 30.0
    log: Callable[[str, str], None] = lambda text, style: None

    def __post_init__(self) -> None:
        w = self.world
        n_extra = min(4, max(2, w.n_lora // 8))
        self.roles = Roles(
            ack_lost=w.lora(0).device_id, silent=w.lora(w.silent_index).device_id,
            replay_victim=w.lora(2).device_id, test=w.lora(3).device_id,
            forged_target=w.lora(4).device_id, dual_path=w.wifi(0).device_id,
            extra_panics=[w.lora(5 + i).device_id for i in range(n_extra)])
        # More buttons take longer to power up and to get their first heartbeats through
        # the one channel: the scripted actions start that much later.
        self.boot_spread_s = max(BOOT_SPREAD_S, 0.23 * len(w.buttons))
        self.offset = self.boot_spread_s - BOOT_SPREAD_S
        self.duration_s = max(self.duration_s, MIN_DURATION_S + self.offset)
        self.t0 = time.monotonic()
        self.actions: list[tuple[float, str]] = []  # (t, what was done) for the summary
        self.captured: bytes | None = None
        self._threads: list[threading.Thread] = []
        self.stop = threading.Event()

    # -- helpers ----------------------------------------------------------------------------
    def now(self) -> float:
        return time.monotonic() - self.t0

    def at(self, t: float) -> None:
        """Sleep until script time ``t`` (+ the boot offset; returns early when stopping)."""
        left = t + self.offset - self.now()
        if left > 0:
            self.stop.wait(left)

    def act(self, text: str, style: str = "") -> None:
        self.actions.append((round(self.now(), 2), text))
        self.log(text, style)

    def button(self, device_id: int) -> DemoButton:
        return self.world.by_id[device_id]

    def _bg(self, fn: Callable[[], Any], name: str) -> None:
        t = threading.Thread(target=fn, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _press_alarm(self, b: DemoButton, why: str) -> None:
        self.act(f"{b.name} ({self._site(b)}): panic button held - {why}", "bold red")
        self._bg(lambda: b.press(ALARM_HOLD_S), f"press-{b.name}")

    def _site(self, b: DemoButton) -> str:
        for r in self.world.records:
            if r.device_id == b.device_id:
                return r.site.name
        return "?"

    # -- the script ---------------------------------------------------------------------------
    def run(self) -> None:
        """Run the whole script (blocking; call from a worker thread)."""
        w = self.world
        r = self.roles
        self.t0 = time.monotonic()
        jam = w.air.add_fault(AirFault("jammer", uplink_from(r.replay_victim), count=None))
        self.act("attacker near " + self.button(r.replay_victim).name +
                 " jams its frames and records them", "magenta")
        stagger = self.boot_spread_s / max(1, len(w.buttons))
        for b in w.buttons:
            if self.stop.is_set():
                return
            b.start()
            self.stop.wait(stagger)
        self.act(f"{len(w.buttons)} buttons powered up; heartbeats follow 5 s after boot")

        self._capture_and_swap_battery(jam)
        self.at(10.5)  # first heartbeats are through: a quiet channel for both copies
        self._press_alarm(self.button(r.dual_path), "heard over Wi-Fi and LoRa")
        self.at(12.5)
        self._forge()
        self.at(13)
        a = self.button(r.ack_lost)
        w.air.add_fault(AirFault("ack lost", ack_to(a.device_id), count=1))
        self._press_alarm(a, "its ACK will be lost on the air")
        self.at(13.5)
        s = self.button(r.silent)
        s.power_cut()
        self.act(f"{s.name} ({self._site(s)}): battery removed - it goes silent", "yellow")
        self.at(14)
        self._replay()
        for i, dev in enumerate(r.extra_panics):
            self.at(15.5 + 0.75 * i)
            self._press_alarm(self.button(dev), "another shop")
        self.at(19.5)
        w.bridge.unplug()
        self.act("LoRa bridge USB unplugged", "yellow")
        self.at(26.5)
        w.bridge.replug()
        self.act("LoRa bridge plugged back in", "green")
        self.at(27.5)
        t = self.button(r.test)
        self.act(f"{t.name} ({self._site(t)}): installer TEST press (5 clicks) over LoRa",
                 "cyan")
        self._bg(lambda: self._installer_test(t), "press-test")
        self._background()

    def _installer_test(self, b: DemoButton) -> None:
        """5 clicks; like an installer who saw no reaction, click again (at most 3 times).
        Clicks made while a deep-sleeping button boots are not seen by its firmware."""
        for _ in range(3):
            before = sum(1 for _, k, _ in b.presses() if k == "test")
            b.test()
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline and not self.stop.is_set():
                if sum(1 for _, k, _ in b.presses() if k == "test") > before:
                    return
                self.stop.wait(0.1)
            if self.stop.is_set():
                return
            self.act(f"{b.name}: TEST not recognised (clicks lost while it woke); "
                     "clicking again", "dim")

    def _capture_and_swap_battery(self, jam: AirFault) -> None:
        """Wait for the jammed, recorded frame; then swap the victim's battery (new epoch)."""
        w = self.world
        v = self.button(self.roles.replay_victim)
        deadline = self.now() + 12
        while self.now() < deadline and not self.stop.is_set():
            got = [p for _, name, p in list(w.air.recorded)
                   if name == v.name and uplink_from(v.device_id)(p, name)]
            if got:
                self.captured = got[0]
                break
            self.stop.wait(0.1)
        v.power_cut()
        w.air.clear_fault(jam)
        if self.captured is None:
            self.act(f"attacker recorded nothing from {v.name}", "red")
            v.start()
            return
        up = frames.decode_uplink(self.captured)
        self.act(f"attacker recorded {v.name}'s {frames.TYPE_NAMES[up.kind]} "
                 f"(counter 0x{up.counter:08X}); the gateway never heard it", "magenta")
        v.start()
        self.act(f"{v.name}: battery swapped, boots with a new counter epoch")

    def _forge(self) -> None:
        w = self.world
        target = self.button(self.roles.forged_target)
        wrong_key = bytes(16)
        up = frames.Uplink(frames.ALARM, target.device_id, 0x7FFF0001, battery_mv=3900)
        self.act(f"forged ALARM for {target.name} transmitted on LoRa (wrong key)", "magenta")
        self._transmit_until_heard(frames.encode_uplink(wrong_key, up), "bad_tag")
        up = frames.Uplink(frames.ALARM, 0x0BADBEEF, 1, battery_mv=3900, wifi=True)
        body = frames.encode_uplink(bytes(range(16)), up)
        req = urllib.request.Request(f"http://127.0.0.1:{w.http_port}/v1/frames", data=body,
                                     headers={"Content-Type": "application/octet-stream"},
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=3) as resp:
                answer = f"HTTP {resp.status}"
        except urllib.error.HTTPError as e:
            answer = f"HTTP {e.code} {e.read().decode(errors='replace').strip()}"
        except OSError as e:
            answer = f"no answer ({e})"
        self.act(f"forged ALARM for unknown device 0BADBEEF POSTed over Wi-Fi: {answer}",
                 "magenta")

    def _replay(self) -> None:
        v = self.button(self.roles.replay_victim)
        if self.captured is None:
            self.act("nothing to replay (no frame was recorded)", "red")
            return
        # The victim's new epoch must have reached the gateway first (its first heartbeat).
        deadline = self.now() + 6
        while self.now() < deadline and not v.acks("heartbeat") and not self.stop.is_set():
            self.stop.wait(0.1)
        self.act(f"attacker replays {v.name}'s recorded frame on LoRa", "magenta")
        self._transmit_until_heard(self.captured, "replay")

    def _transmit_until_heard(self, payload: bytes, reason: str, tries: int = 3) -> None:
        """Transmit like an attacker would: again if the gateway's rejection counter for
        ``reason`` did not move (the frame collided with other traffic on the channel)."""
        w = self.world

        def seen() -> int:
            st = w.status() or {}
            return int((st.get("rejections") or {}).get(reason, 0))

        before = seen()
        for i in range(tries):
            w.air.inject(payload, FREQ_MHZ, SF)
            deadline = self.now() + 1.5
            while self.now() < deadline and not self.stop.is_set():
                if seen() > before:
                    return
                self.stop.wait(0.1)
            if i + 1 < tries:
                self.act("  (collided with other traffic; transmitting again)", "dim")

    def _background(self) -> None:
        """Longer runs: a press somewhere every few seconds until the settle time."""
        w = self.world
        busy = {self.roles.silent, self.roles.replay_victim, self.roles.ack_lost,
                self.roles.test, self.roles.forged_target, *self.roles.extra_panics}
        pool = [b for b in w.buttons if b.device_id not in busy and b.role == "lora"]
        t = SCRIPT_END_S + 1
        end = self.duration_s - 5 - self.offset
        while t < end and pool and not self.stop.is_set():
            self.at(t)
            b = pool.pop(w.rng.randrange(len(pool)))
            if w.rng.random() < 0.75:
                self._press_alarm(b, "background traffic")
            else:
                self.act(f"{b.name} ({self._site(b)}): TEST press", "cyan")
                self._bg(lambda b=b: self._installer_test(b), f"press-{b.name}")
            t += 3.0

    def pressing(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def join(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))
