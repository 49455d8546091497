"""The demo's gateway process: the production ``panicgw.daemon.Gateway`` with supervision time
compressed, so a silent button is reported within a 30-second run.

Why a subclass and not ``panicgw run``: the supervision rule (lost after 2 x interval + 300 s
grace, interval >= 60 s) cannot fire inside a short demo. Everything else (config, ingest,
pipeline, store, forwarder, MQTT) is the production code path, in its own process.
Run: ``python -m panicgw.demo.gateway --config gateway.toml --time-scale 42``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from typing import Any

from panicgw import config as config_mod
from panicgw.daemon import Gateway
from panicgw.supervise.rule import Supervisor
from panicgw.systemd import setup_logging


@dataclass
class ScaledSupervisor(Supervisor):
    """Supervision limits divided by ``time_scale`` (the rest of the policy is unchanged)."""

    time_scale: float = 1.0

    def limit_s(self, supervision_s: int) -> float:
        return super().limit_s(supervision_s) / self.time_scale


class DemoGateway(Gateway):
    """Gateway whose supervision runs ``time_scale`` times faster, evaluated every ``tick_s``."""

    def __init__(self, cfg: config_mod.Config, time_scale: float, tick_s: float = 1.0) -> None:
        super().__init__(cfg)
        self.time_scale = time_scale
        self.supervise_every_s = tick_s

    def make_supervisor(self, **state: Any) -> Supervisor:
        return ScaledSupervisor(
            started_at=self.started_at,
            checkin_interval_s=self.cfg.dispatch["checkin_interval_s"],
            bridge_missing_s=self.cfg.serial["missing_trouble_s"],
            time_scale=self.time_scale,
            **state,
        )


async def _run(cfg: config_mod.Config, time_scale: float) -> int:
    gw = DemoGateway(cfg, time_scale)
    await gw.start()
    await gw.serve_forever()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m panicgw.demo.gateway", description=__doc__)
    p.add_argument("--config", required=True, help="gateway TOML written by the demo")
    p.add_argument("--time-scale", type=float, default=1.0,
                   help="supervision runs this many times faster (>= 1)")
    a = p.parse_args(argv)
    if not a.time_scale >= 1.0:
        print("error: --time-scale must be >= 1", file=sys.stderr)
        return 2
    try:
        cfg = config_mod.load(a.config)
    except config_mod.ConfigError as e:
        print(f"error: bad config: {e}", file=sys.stderr)
        return 2
    setup_logging(cfg.gateway["log_level"], cfg.gateway["log_format"])
    return asyncio.run(_run(cfg, a.time_scale))


if __name__ == "__main__":
    sys.exit(main())
