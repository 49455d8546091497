"""The cluster's settings: what a ``[cluster]`` config section holds, with its defaults.

One dataclass, so the daemon (``[cluster]`` in the gateway's TOML), the tests and the
benchmark build a node the same way. ``ClusterSettings.from_mapping`` takes the section as
the config loader produced it; the gateway id comes from ``[gateway] id``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from panicgw.cluster.election import DEFAULT_COLLECT_S, budget_ms
from panicgw.cluster.members import DEFAULT_STALE_S
from panicgw.cluster.messages import check_name
from panicgw.cluster.state import DEFAULT_COPY_WINDOW_S


@dataclass(frozen=True)
class ClusterSettings:
    gateway_id: str
    group: str
    secret_file: str = ""
    host: str = "127.0.0.1"
    port: int = 1883
    username: str = ""
    password: str = ""
    tls: bool = False
    ca_file: str = ""
    client_cert: str = ""
    client_key: str = ""
    keepalive_s: int = 30
    collect_s: float = DEFAULT_COLLECT_S
    copy_window_s: float = DEFAULT_COPY_WINDOW_S
    status_interval_s: float = 10.0
    digest_interval_s: float = 900.0  # digests are big; live reports carry the news
    stale_s: float = DEFAULT_STALE_S
    supervise: bool = True
    state_dir: str = ""  # where the message sequence survives restarts (the data dir)
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    publish_delay_s: float = 0.0  # tests and bench only: a simulated link delay

    def __post_init__(self) -> None:
        check_name(self.gateway_id, "gateway id")
        check_name(self.group, "cluster group")
        if not 1 <= self.port <= 65535:
            raise ValueError("cluster port must be 1-65535")
        if not 0.0 <= self.collect_s <= 1.0 or budget_ms(self.collect_s, sf=12) < 0:
            raise ValueError(f"collect_s must be 0-1 s: {self.collect_s} s would leave too "
                             "little of the button's receive window for the ACK")
        if self.copy_window_s <= 0 or self.status_interval_s <= 0 \
                or self.digest_interval_s <= 0 or self.stale_s <= self.status_interval_s:
            raise ValueError("cluster intervals must be positive, and stale_s above the "
                             "status interval")
        if bool(self.client_cert) != bool(self.client_key):
            raise ValueError("client_cert and client_key go together")

    @classmethod
    def from_mapping(cls, gateway_id: str, section: Mapping[str, Any]) -> ClusterSettings:
        """From a config section; unknown keys (``enabled``...) are ignored."""
        names = {f.name for f in fields(cls)} - {"gateway_id"}
        return cls(gateway_id=gateway_id, **{k: v for k, v in section.items() if k in names})

    def __repr__(self) -> str:  # the password stays out of logs
        return (f"ClusterSettings(gateway_id={self.gateway_id!r}, group={self.group!r}, "
                f"broker={self.host}:{self.port}, tls={self.tls})")
