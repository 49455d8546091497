from panicbutton.settings import SettingsError, parse


def _bad(raw, key):
    try:
        parse(raw)
    except SettingsError as e:
        assert e.key == key, (e.key, key)
        assert key in str(e)
        return
    raise AssertionError("accepted " + repr(raw))


def test_defaults_for_region():
    s = parse({"PB_REGION": "AS923-2"})
    assert s.frequency_mhz == 921.4 and s.sf == 9 and s.sf_max == 10
    assert s.supervision_s == 3600 and s.alarm_hold_ms == 1500 and s.lora
    assert "wifi_password" not in s.public()


def test_full_settings():
    s = parse({"PB_REGION": "eu868", "PB_FREQUENCY_MHZ": "868.3", "PB_SF": "10",
               "PB_SF_MAX": 12, "PB_GATEWAY_URL": "http://10.0.0.2:8080/",
               "PB_WIFI_SSID": "shop", "PB_WIFI_PASSWORD": "secret123", "PB_CANCEL": 1})
    assert s.region.name == "EU868" and s.frequency_mhz == 868.3 and s.sf == 10
    assert s.gateway_url == "http://10.0.0.2:8080" and s.cancel


def test_malformed_settings_name_the_key():
    _bad({}, "PB_REGION")
    _bad({"PB_REGION": "MARS"}, "PB_REGION")
    _bad({"PB_REGION": 5}, "PB_REGION")
    _bad({"PB_REGION": "AS923-2", "PB_FREQUENCY_MHZ": "868.1"}, "PB_FREQUENCY_MHZ")
    _bad({"PB_REGION": "AS923-2", "PB_FREQUENCY_MHZ": "nine"}, "PB_FREQUENCY_MHZ")
    _bad({"PB_REGION": "AS923-2", "PB_SF": "11"}, "PB_SF")
    _bad({"PB_REGION": "AS923-2", "PB_SF": "x"}, "PB_SF")
    _bad({"PB_REGION": "AS923-2", "PB_SF": 3}, "PB_SF")
    _bad({"PB_REGION": "AS923-2", "PB_SF": 10, "PB_SF_MAX": 9}, "PB_SF_MAX")
    _bad({"PB_REGION": "AS923-2", "PB_SF_MAX": 12}, "PB_SF_MAX")
    _bad({"PB_REGION": "AS923-2", "PB_BANDWIDTH_HZ": 100000}, "PB_BANDWIDTH_HZ")
    _bad({"PB_REGION": "AS923-2", "PB_TX_POWER": 30}, "PB_TX_POWER")
    _bad({"PB_REGION": "AS923-2", "PB_WIFI_SSID": "shop"}, "PB_GATEWAY_URL")
    _bad({"PB_REGION": "AS923-2", "PB_GATEWAY_URL": "ftp://x"}, "PB_GATEWAY_URL")
    _bad({"PB_REGION": "AS923-2", "PB_GATEWAY_URL": "http://x", "PB_WIFI_SSID": "s",
          "PB_WIFI_PASSWORD": "short"}, "PB_WIFI_PASSWORD")
    _bad({"PB_REGION": "AS923-2", "PB_SUPERVISION_S": 5}, "PB_SUPERVISION_S")
    _bad({"PB_REGION": "AS923-2", "PB_ALARM_HOLD_MS": True}, "PB_ALARM_HOLD_MS")
    _bad({"PB_REGION": "AS923-2", "PB_LORA": 2}, "PB_LORA")


def test_zz_release():
    from mp_test_button_fakes import release

    release(globals())
