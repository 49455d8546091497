"""The demo's terminal view (rich): a live dashboard while it runs, a summary at the end."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

EVENT_STYLE = {"panic": "bold red", "test": "cyan", "supervision_lost": "yellow",
               "gateway_trouble": "yellow", "gateway_trouble_restore": "green",
               "supervision_restore": "green", "gateway_checkin": "dim"}


class LiveView:
    """Holds what the live view shows; ``render()`` builds one frame of it."""

    def __init__(self, duration_s: float, max_lines: int = 14) -> None:
        self.duration_s = duration_s
        self.t0 = time.monotonic()
        self.lines: deque[tuple[float, str, str]] = deque(maxlen=max_lines)
        self.status: dict[str, Any] | None = None
        self.received: list[Any] = []
        self.started_at = time.time()

    def log(self, text: str, style: str = "") -> None:
        self.lines.append((time.monotonic() - self.t0, text, style))

    def render(self) -> Group:
        st = self.status or {}
        fr = st.get("frames") or {}
        ob = st.get("outbox") or {}
        br = st.get("bridge") or {}
        broker = st.get("broker") or {}
        head = Text.assemble(
            ("panicdemo ", "bold"),
            (f"t={time.monotonic() - self.t0:5.1f}/{self.duration_s:.0f}s  ", ""),
            ("bridge ", "dim"), (str(br.get("state", "?")),
                                 "green" if br.get("state") == "connected" else "yellow"),
            ("  frames ", "dim"),
            (f"stored {fr.get('stored', 0)} dup {fr.get('duplicate', 0)} "
             f"rejected {fr.get('rejected', 0)}", ""),
            ("  outbox ", "dim"),
            (f"pending {ob.get('pending', 0)} delivered {ob.get('delivered', 0)}", ""),
            ("  MQTT ", "dim"),
            ("connected" if broker.get("connected") else "off", "dim"),
        )
        log = Table.grid(padding=(0, 1))
        log.add_column(justify="right", style="dim", width=5)
        log.add_column()
        for t, text, style in self.lines:
            log.add_row(f"{t:4.1f}", Text(text, style=style or ""))
        disp = Table(box=None, padding=(0, 1), show_edge=False)
        for col in ("t", "event", "CID", "site", "verdict"):
            disp.add_column(col, style="dim" if col == "t" else "", no_wrap=True,
                            overflow="ellipsis")
        for r in self.received[-12:]:
            body = r.body if isinstance(r.body, dict) else {}
            ev = str(body.get("event", "?"))
            disp.add_row(f"{r.at - self.started_at:4.1f}", Text(ev, EVENT_STYLE.get(ev, "")),
                         str((body.get("contact_id") or {}).get("display", "")),
                         str((body.get("site") or {}).get("name", "") or "-")[:24],
                         Text(r.verdict, "green" if r.verdict == "accepted" else "yellow"))
        rej = st.get("rejections") or {}
        rej_text = Text("rejections: ", "dim")
        rej_text.append(", ".join(f"{k} {v}" for k, v in sorted(rej.items())) or "none",
                        "magenta" if rej else "dim")
        grid = Table.grid(expand=True)
        grid.add_column(ratio=3)
        grid.add_column(ratio=2)
        grid.add_row(Panel(log, title="scenario", border_style="blue"),
                     Panel(disp, title="dispatch received", border_style="red"))
        return Group(head, grid, rej_text)


def print_summary(console: Console, s: dict[str, Any]) -> None:
    """The end-of-run summary for people (``--json`` prints the dict instead)."""
    t = Table(title="panicdemo summary", show_header=False, box=None, padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    lat = s["alarm_latency_s"]
    t.add_row("presses", ", ".join(f"{k} {v}" for k, v in sorted(s["presses"].items())))
    inc = s["incidents_delivered"]
    t.add_row("incidents delivered", f"{inc['total']} (" + ", ".join(
        f"{k} {v}" for k, v in inc["by_event"].items()) + ")")
    t.add_row("duplicates suppressed", str(s["duplicates_suppressed"]))
    t.add_row("rejections", ", ".join(f"{k} {v}" for k, v in s["rejections"].items()) or "none")
    t.add_row("heartbeats stored", f"{s['heartbeats_stored']} ({s['devices_heard']} buttons "
              "heard)")
    if lat["count"]:
        t.add_row("alarm latency", f"p50 {lat['p50']:.2f} s, p99 {lat['p99']:.2f} s "
                  f"(n={lat['count']}, press -> dispatch)")
    t.add_row("bridge", f"{s['bridge'].get('state')} (connects {s['bridge'].get('connects')}, "
              f"disconnects {s['bridge'].get('disconnects')})")
    t.add_row("MQTT", s["mqtt"] if isinstance(s["mqtt"], str) else
              f"broker {'connected' if s['mqtt'].get('connected') else 'not connected'}")
    console.print(t)
    for e in s["expectations"]:
        mark = Text("PASS ", "bold green") if e["ok"] else Text("FAIL ", "bold red")
        console.print(mark + Text(e["name"]) + Text(f"  ({e['detail']})", "dim"))
    if s.get("console_url"):
        console.print(f"dispatch console: {s['console_url']} (stopped with the demo)")
    if s["ok"]:
        console.print(Text(f"all expectations met in {s['elapsed_s']} s", "bold green"))
    else:
        console.print(Text("failed: " + "; ".join(s["failed"]), "bold red"))
