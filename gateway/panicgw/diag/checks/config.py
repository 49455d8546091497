"""``config``: the gateway's TOML file is there, valid, and not readable by others when it
holds secrets."""

from __future__ import annotations

import stat

from panicgw.diag.context import FAIL, PASS, WARN, Context, Result
from panicgw.diag.redact import secrets_in_toml


def check_config(ctx: Context) -> list[Result]:
    where = str(ctx.config_path) if ctx.config_path else "built-in defaults (no --config)"
    if ctx.cfg is None:
        if ctx.config_path is not None and not ctx.config_path.is_file():
            return [Result("config", "Configuration", FAIL, ctx.config_error or "missing",
                           "Give the gateway's config: `panicgw diag --config FILE` (the file "
                           "in the unit's ExecStart, `systemctl cat panicgw`); a fresh Pi "
                           "gets /etc/panicgw/gateway.toml from `sudo panicgw setup`.")]
        return [Result("config", "Configuration", FAIL, ctx.config_error or "invalid",
                       "Fix the named key in the TOML file (docs/gateway.md lists every key), "
                       "then run `panicgw diag` again.")]
    out = [Result("config", "Configuration", PASS, f"valid: {where}")]
    p = ctx.config_path
    if p is not None and secrets_in_toml(p):
        mode = stat.S_IMODE(p.stat().st_mode)
        if mode & 0o077:
            out.append(Result(
                "config.permissions", "Config file permissions", WARN,
                f"{p} holds secrets (token/secret/password) and is mode {mode:04o}",
                f"chmod 600 {p} (and chown it to the gateway's service user)."))
        else:
            out.append(Result("config.permissions", "Config file permissions", PASS,
                              f"mode {mode:04o}"))
    return out
