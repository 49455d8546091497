"""`panicdemo`: the whole system on this machine, with a scripted scenario."""

from __future__ import annotations

import json
import sys

import typer

EXIT_OK = 0
EXIT_EXPECTATION = 1
EXIT_SETUP = 2


def demo(
    duration: float = typer.Option(
        30.0, "--duration", "-d", min=30.0, max=3600.0,
        help="Seconds the scenario runs (30 minimum); longer runs add background presses.",
    ),
    buttons: int = typer.Option(
        20, "--buttons", "-b", min=20, max=500,
        help="LoRa buttons behind the virtual bridge (each runs the real firmware in a thread).",
    ),
    wifi_buttons: int = typer.Option(
        2, "--wifi-buttons", min=1, max=50, help="Wi-Fi (+LoRa) buttons posting to the gateway.",
    ),
    json_out: bool = typer.Option(
        False, "--json", help="No live view: print the summary as JSON (for scripts).",
    ),
    seed: int = typer.Option(None, "--seed", help="Fix device ids, sites and radio randomness."),
    keep: bool = typer.Option(
        False, "--keep", help="Keep the temporary data directory (DB, gateway log, config).",
    ),
) -> None:
    """Run the panic-button system on this machine and watch a scripted scenario.

    Starts the gateway (embedded defaults: SQLite in a temporary directory; MQTT only when a
    broker answers on 127.0.0.1:1883), the police dispatch console (`panicconsole serve`
    over HTTPS; its URL and a sign-in are printed), a virtual LoRa bridge on a
    pseudo-terminal and simulated buttons running the real firmware. Then: heartbeats; a
    panic heard over LoRa and Wi-Fi; a panic whose ACK is lost; forged and replayed frames;
    the bridge unplugged and replugged; a button going silent; a TEST press.

    The summary (presses, incidents delivered, duplicates suppressed, rejections by reason,
    alarm latency p50/p99) is computed from what dispatch received and what the gateway
    recorded. Exit codes: 0 every expectation met, 1 an expectation failed (named), 2 a part
    could not start (the message says which, and where its log is).
    """
    from rich.console import Console
    from rich.live import Live

    from panicdemo import runner
    from panicdemo.view import LiveView, print_summary
    from panicdemo.world import SetupError

    err = Console(stderr=True)
    try:
        if json_out:
            result, _ = runner.run(lora=buttons, wifi=wifi_buttons, duration_s=duration,
                                   seed=seed, keep=keep, log=lambda text, style: None)
            typer.echo(json.dumps(result, indent=2))
        else:
            console = Console()
            view = LiveView(duration)

            with Live(view.render(), console=console, refresh_per_second=4,
                      transient=False) as live:
                def tick(status: dict | None, received: list) -> None:
                    view.status, view.received = status, received
                    live.update(view.render())

                result, _ = runner.run(lora=buttons, wifi=wifi_buttons, duration_s=duration,
                                       seed=seed, keep=keep, log=view.log, tick=tick)
            print_summary(console, result)
            if keep:
                console.print(f"data kept in {result['workdir']}")
    except SetupError as e:
        err.print(f"[red]error:[/red] {e}")
        raise typer.Exit(EXIT_SETUP) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None
    sys.stdout.flush()
    raise typer.Exit(EXIT_OK if result["ok"] else EXIT_EXPECTATION)



# One command: `panicdemo [OPTIONS]` runs it (typer makes a single command the root).
app = typer.Typer(add_completion=False)
app.command()(demo)
