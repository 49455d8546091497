"""``mqtt``: the optional broker accepts the gateway's login (only status and telemetry go
there: alarms reach dispatch without it, so this is at worst a WARN)."""

from __future__ import annotations

import secrets
import threading
from typing import Any

from panicgw.diag.context import PASS, SKIP, WARN, Context, Result, skip_no_config
from panicgw.diag.wording import reason


def mqtt_probe(host: str, port: int, username: str, password: str, use_tls: bool,
               timeout: float) -> tuple[int, str]:
    """(0, "ok") when the broker accepts a CONNECT, else (code, reason); never raises."""
    import paho.mqtt.client as mqtt

    done = threading.Event()
    result: dict[str, Any] = {}

    def on_connect(client: Any, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        result["rc"] = int(getattr(rc, "value", rc))
        result["text"] = str(rc)
        done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                         client_id=f"panicgw-diag-{secrets.token_hex(4)}")
    client.on_connect = on_connect
    if username:
        client.username_pw_set(username, password or None)
    if use_tls:
        client.tls_set()
    try:
        client.connect(host, port, keepalive=10)
    except OSError as e:
        return -1, f"unreachable ({reason(e)})"
    client.loop_start()
    try:
        if not done.wait(timeout):
            return -2, f"no CONNACK within {timeout:g} s"
    finally:
        client.disconnect()
        client.loop_stop()
    rc = result.get("rc", -3)
    return (0, "ok") if rc == 0 else (rc, f"refused the connection ({result.get('text')})")


def check_mqtt(ctx: Context) -> Result:
    title = "MQTT broker"
    if (r := skip_no_config(ctx, "mqtt", title)) is not None:
        return r
    m = ctx.cfg.mqtt  # type: ignore[union-attr]
    if not m["enabled"]:
        return Result("mqtt", title, SKIP, "no broker configured (optional: [mqtt] enabled)")
    where = f"{m['host']}:{m['port']}"
    broker = (ctx.status or {}).get("broker")
    daemon_view = ""
    if isinstance(broker, dict) and broker.get("state"):
        daemon_view = f"; daemon reports {broker['state']}"
    rc, detail = mqtt_probe(m["host"], m["port"], m["username"], m["password"], m["tls"],
                            ctx.thresholds.probe_timeout_s)
    if rc == 0:
        if isinstance(broker, dict) and broker.get("state") == "disconnected":
            return Result("mqtt", title, WARN,
                          f"broker at {where} accepts diag but the daemon is disconnected",
                          "The daemon reconnects by itself; if it stays disconnected, restart "
                          "panicgw and check its log.")
        return Result("mqtt", title, PASS, f"connected to {where}{daemon_view}")
    hint = ("Start or fix the broker (`systemctl status mosquitto`), check [mqtt] host/port "
            "and the firewall. Alarms still reach dispatch without it: only status and "
            "telemetry are affected.")
    if rc in (4, 5, 134, 135):
        hint = "The broker refuses our login: check [mqtt] username/password and its ACL."
    return Result("mqtt", title, WARN, f"broker at {where}: {detail}{daemon_view}", hint)
