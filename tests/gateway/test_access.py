import pytest

from panicgw import access
from panicgw.store import Store


def test_tools_open_only_an_existing_gateway_db(tmp_path):
    with pytest.raises(access.AccessError, match="no gateway DB"):
        access.open_db(tmp_path / "nope.db")
    assert not (tmp_path / "nope.db").exists()
    (tmp_path / "junk.db").write_bytes(b"")
    with pytest.raises(access.AccessError, match="not a gateway DB"):
        access.open_db(tmp_path / "junk.db")
    Store(tmp_path / "gateway.db").close()
    s = access.open_db(tmp_path / "gateway.db", readonly=True)
    assert s.list_devices() == []
    s.close()
    cfg = tmp_path / "gw.toml"
    cfg.write_text('[gateway]\ndata_dir = "data"\n')
    assert access.locate_db(config=cfg) == tmp_path / "data" / "gateway.db"
    with pytest.raises(access.AccessError, match="no gateway config"):
        access.locate_db(config=tmp_path / "x.toml")
