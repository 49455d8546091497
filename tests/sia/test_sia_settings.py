"""A [[sia]] table checked key by key: defaults, the key and the fix in every error, the
encryption key never echoed."""

from __future__ import annotations

import pytest

from panicgw.forward.sia.settings import Endpoint, SiaConfigError, from_table

BASE = {"host": "receiver.centre.example", "port": 12000, "account": "1234"}


def test_defaults() -> None:
    s = from_table(BASE)
    assert s.primary == Endpoint("receiver.centre.example", 12000, "tcp")
    assert s.backup is None and s.key is None and not s.encrypted
    assert (s.name, s.receiver, s.line, s.format, s.xdata) == (
        "receiver.centre.example:12000", 0, 0, "SIA-DCS", ("X", "Y", "I"))
    assert (s.link_test_s, s.ack_timeout_s, s.tries) == (60.0, 10.0, 2)


def test_everything_set() -> None:
    s = from_table(BASE | {
        "name": "centre", "protocol": "UDP", "receiver": 0xABC, "line": 2, "account": "abcd",
        "key": "00112233445566778899aabbccddeeff", "format": "adm-cid", "xdata": ["X"],
        "link_test_s": 0, "ack_timeout_s": 5, "tries": 3,
        "backup_host": "backup.centre.example"})
    assert s.endpoints == (Endpoint("receiver.centre.example", 12000, "udp"),
                           Endpoint("backup.centre.example", 12000, "udp"))
    assert s.key == bytes.fromhex("00112233445566778899aabbccddeeff") and s.encrypted
    assert (s.account, s.format, s.xdata, s.link_test_s, s.tries) == (
        "ABCD", "ADM-CID", ("X",), 0.0, 3)
    assert "00112233" not in repr(s)


def test_text_key_and_backup_port() -> None:
    s = from_table(BASE | {"key": "AAAAAAAAAAAAAAAA", "key_format": "text",
                           "backup_host": "10.0.0.2", "backup_port": 12001})
    assert s.key == b"A" * 16 and s.backup == Endpoint("10.0.0.2", 12001, "tcp")


@pytest.mark.parametrize(("change", "says"), [
    ({"host": None}, "host is required: the centre's receiver"),
    ({"port": None}, "port is required"),
    ({"account": None}, "account is required: the account number the centre gave"),
    ({"account": "12"}, "account must be the account the centre gave this gateway"),
    ({"account": 1234}, 'as a string: account = "1234"'),
    ({"port": 0}, "port must be an integer 1..65535"),
    ({"protocol": "sctp"}, "protocol must be one of 'tcp', 'udp'"),
    ({"receiver": 0x1000000}, "6 hex digits on the wire"),
    ({"format": "contact-id"}, "format must be one of 'SIA-DCS', 'ADM-CID'"),
    ({"xdata": "XY"}, 'e.g. ["X", "Y", "I"]'),
    ({"link_test_s": 5}, "link_test_s must be a number 10..86400 or 0 (off)"),
    ({"ack_timeout_s": 0}, "ack_timeout_s must be a number 1..120"),
    ({"adress": "x"}, "unknown key 'adress'"),
    ({"acount": "x"}, "(did you mean 'account'?)"),
    ({"backup_port": 12001}, "backup_port is set without backup_host"),
])
def test_errors_name_the_key_and_the_fix(change: dict, says: str) -> None:
    table = {k: v for k, v in (BASE | change).items() if v is not None}
    with pytest.raises(SiaConfigError) as e:
        from_table(table, "panicgw.toml: [[sia]] #1")
    assert str(e.value).startswith("panicgw.toml: [[sia]] #1 ")
    assert says in str(e.value)


@pytest.mark.parametrize("key", ["not-a-key-at-all-secret", "SECRETSECRETSECRET", 12345])
def test_a_bad_key_is_never_echoed(key: object) -> None:
    with pytest.raises(SiaConfigError) as e:
        from_table(BASE | {"key": key})
    assert str(key) not in str(e.value)
    assert "key" in str(e.value)


def test_not_a_table() -> None:
    with pytest.raises(SiaConfigError, match="must be a table"):
        from_table(["host"])  # type: ignore[arg-type]
