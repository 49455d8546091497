"""``[[sia]]`` in the gateway's config: checked at start like every other section, the key
named with its fix, unique names, the AES key never printed by ``run --check``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from panicgw import config
from panicgw.cli import app

KEY = "000102030405060708090A0B0C0D0E0F"
EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "gateway.toml.example"


def test_two_receivers_are_read_in_order() -> None:
    cfg = config.from_dict({"sia": [
        {"name": "polda", "host": "10.0.0.5", "port": 12000, "account": "12ab", "key": KEY},
        {"host": "arc.example", "port": 9000, "protocol": "udp", "account": "999"},
    ]}, "gw.toml")
    a, b = cfg.sia
    assert a.name == "polda" and a.account == "12AB" and a.key == bytes(range(16))
    assert b.name == "arc.example:9000" and b.primary.protocol == "udp" and b.key is None


def test_no_sia_tables_means_no_receivers() -> None:
    assert config.from_dict({}).sia == []


@pytest.mark.parametrize(("doc", "says"), [
    ({"sia": {"host": "h", "port": 1, "account": "123"}}, "[[sia]] (double brackets)"),
    ({"sia": [{"host": "h", "port": 1}]}, "[[sia]] #1 account is required"),
    ({"sia": [{"host": "h", "port": 1, "account": "123", "protocl": "udp"}]},
     "did you mean 'protocol'"),
    ({"sia": [{"host": "h", "port": 1, "account": "123"},
              {"host": "h", "port": 1, "account": "456"}]}, "[[sia]] #2 name 'h:1'"),
])
def test_errors_name_the_table_the_key_and_the_fix(doc: dict, says: str) -> None:
    with pytest.raises(config.ConfigError) as e:
        config.from_dict(doc, "gw.toml")
    assert says in str(e.value) and str(e.value).startswith("gw.toml: ")


def test_a_bad_key_is_never_echoed() -> None:
    with pytest.raises(config.ConfigError) as e:
        config.from_dict({"sia": [{"host": "h", "port": 1, "account": "123",
                                   "key": "0011223344556677889900112233445"}]})
    assert "[[sia]] #1 key" in str(e.value) and "00112233" not in str(e.value)


def test_run_check_hides_the_aes_key(tmp_path: Path) -> None:
    p = tmp_path / "gw.toml"
    p.write_text(f'[[sia]]\nname = "c"\nhost = "h"\nport = 1\naccount = "123"\nkey = "{KEY}"\n')
    r = CliRunner().invoke(app, ["run", "--config", str(p), "--check"])
    assert r.exit_code == 0, r.output
    assert KEY not in r.output and KEY.lower() not in r.output
    assert '"key": "***"' in r.output and "tcp://h:1" in r.output


def test_the_example_receiver_is_valid_once_uncommented(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    block = text[text.index("# [[sia]]"):]
    uncommented = re.sub(r"(?m)^# ", "", block)
    p = tmp_path / "gw.toml"
    p.write_text(text.replace(block, uncommented))
    (r,) = config.load(p).sia
    assert r.name == "centre" and r.account == "1234" and r.backup is None
