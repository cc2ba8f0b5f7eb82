from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hookcast.config.home import Home
from hookcast.config.properties import Rotation
from hookcast.config.settings import (
    ConfigError,
    Settings,
    known_properties,
    load_settings,
    parse_properties,
    read_settings,
    render_default_properties,
)
from tests.conftest import builtin_properties
from tests.served import REPO


def test_defaults_match_wcs() -> None:
    settings, _ = parse_properties({}, "defaults", builtin_properties())
    assert settings.ws_port == 8080
    assert settings.http_port == 8081
    assert settings.wss_port == 8443
    assert settings.https_port == 8444
    assert settings.value("rest_request_timeout") == 15
    assert settings.value("ws.port") == 8080
    assert settings.streaming_sessions_keep_alive_interval == 10000
    assert settings.streaming_sessions_keep_alive_app_keys == ("defaultApp",)
    assert settings.record_formats == ("h264-mp4", "vp8-webm")
    assert settings.record_rotation is None
    assert settings.stun_server == ""


def test_missing_file_means_defaults(tmp_path: Path) -> None:
    assert load_settings(tmp_path / "absent.properties") == Settings()


def test_read_settings_returns_the_warnings_without_logging_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``hookcast config --check`` prints them itself; the server logs them once it knows
    its plugins' properties: until then what is not the core's is kept, unwarned."""
    path = tmp_path / "server.properties"
    path.write_text("ws.prot=9000\nhttp.port=9001\npull_max=7\n")
    settings, warnings = read_settings(path, builtin_properties())
    assert settings.http_port == 9001 and settings.value("pull_max") == 7
    assert warnings == [f"{path}: unknown property ws.prot; did you mean ws.port? (ignored)"]
    assert caplog.records == []
    assert read_settings(tmp_path / "absent.properties") == (Settings(), [])
    core, deferred = read_settings(path)
    assert deferred == [] and dict(core.others) == {"ws.prot": "9000", "pull_max": "7"}
    assert load_settings(path) == core and caplog.records == []


def test_shipped_file_lists_every_property_with_its_default() -> None:
    shipped = REPO / "conf" / "server.properties"
    declared = builtin_properties()
    assert shipped.read_text() == render_default_properties(declared)
    settings, warnings = read_settings(shipped, declared)
    assert settings == Settings() and warnings == []
    text = shipped.read_text()
    for info in known_properties():
        assert f"\n{info.name}=" in text
        assert info.description
    for plugin, declaration in declared:
        assert f"\n{declaration.name}=" in text and declaration.description, plugin
        assert settings.value(declaration.name) == declaration.default


def test_every_property_has_type_default_and_description() -> None:
    names = [info.name for info in known_properties()]
    assert len(names) == len(set(names))
    for info in known_properties():
        assert info.type.parse(info.default_text) == info.default, info.name


def test_real_properties_syntax(tmp_path: Path) -> None:
    path = tmp_path / "server.properties"
    path.write_text(
        "# comment\n! also a comment\n"
        "ws.port : 9090\n"
        "record_rotation=20M\n"
        "disabled_plugins = a, \\\n    b\n"
        "stream_record_policy_template={streamName}\\u00e9\n"
    )
    settings = load_settings(path)
    assert settings.ws_port == 9090
    assert settings.record_rotation == Rotation(megabytes=20)
    assert settings.disabled_plugins == ("a", "b")
    assert settings.stream_record_policy_template == "{streamName}\u00e9"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("record_rotation", "abc", "record_rotation=abc: expected seconds (20) or megabytes (20M)"),
        ("record_rotation", "0", "record_rotation=0: expected seconds (20) or megabytes (20M)"),
        ("record_rotation", "10G", "record_rotation=10G: expected seconds (20) or megabytes (20M)"),
        ("ws.port", "abc", "ws.port=abc: expected a whole number from 0 to 65535"),
        ("http.port", "70000", "http.port=70000: expected a whole number from 0 to 65535"),
        ("ip", "my-host", "ip=my-host: expected an IPv4 or IPv6 address such as 127.0.0.1"),
        ("bind_address", "300.1.1.1", "bind_address=300.1.1.1: expected an IPv4 or IPv6 address"),
        ("disable_rest_requests", "yes", "disable_rest_requests=yes: expected true or false"),
        ("record_streams", "1", "record_streams=1: expected true or false"),
        ("plugin_hook_timeout", "-1", "plugin_hook_timeout=-1: expected a number of seconds >= 0.001"),
        ("plugin_hook_timeout", "soon", "plugin_hook_timeout=soon: expected a number of seconds"),
        ("rest_request_timeout", "-5", "rest_request_timeout=-5: expected a whole number of at least 0 (s)"),
        (
            "streaming_sessions_keep_alive_interval", "50",
            "streaming_sessions_keep_alive_interval=50: expected a whole number of at least 100 (ms)",
        ),
        ("record_formats", "h264-avi", "record_formats=h264-avi: 'h264-avi' is not one of h264-mp4, h264-mkv, vp8-webm, vp8-mkv"),
        ("keep_alive.probes", "0", "keep_alive.probes=0: expected a whole number of at least 1"),
        ("pull_allowed_hosts", "media.example.com,10.0.0.*",
         "pull_allowed_hosts=media.example.com,10.0.0.*: '10.0.0.*': write addresses as "
         "networks, such as 10.0.0.0/24"),
        ("pull_allowed_hosts", "a_b.example.com", "pull_allowed_hosts=a_b.example.com: "
         "'a_b.example.com' is neither a host name pattern"),
    ],
)
def test_bad_value_names_file_property_and_expectation(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_properties({name: value}, "conf/server.properties", builtin_properties())
    assert str(caught.value).startswith(f"conf/server.properties: {message}")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"tls_certificate": "cert.pem"}, "tls_certificate and tls_private_key must be set together"),
        ({"rest_hook_send_hash": "true"}, "rest_hook_secret_key: required when rest_hook_send_hash=true"),
        ({"ws.port": "9000", "http.port": "9000"}, "http.port=9000: already used by ws.port"),
    ],
)
def test_inconsistent_properties(raw: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=rf"^s: {message}"):
        parse_properties(raw, "s", builtin_properties())


def test_all_problems_are_reported_together() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_properties({"ws.port": "x", "record_rotation": "y"}, "f")
    assert len(caught.value.problems) == 2


def test_unknown_property_warns_with_nearest_name() -> None:
    settings, warnings = parse_properties({"ws.prot": "1", "zzzz": "2"}, "f",
                                          builtin_properties())
    assert settings == Settings()
    assert warnings == [
        "f: unknown property ws.prot; did you mean ws.port? (ignored)",
        "f: unknown property zzzz (ignored)",
    ]


async def test_unknown_property_is_logged_at_start(
    home: Home, start_server: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Once the plugins' properties are known: a plugin's is no unknown one."""
    await start_server(home, record_rotaton="20", pull_mx="3", pull_max="3")
    assert "unknown property record_rotaton; did you mean record_rotation?" in caplog.text
    assert "unknown property pull_mx; did you mean pull_max?" in caplog.text
    assert "unknown property pull_max" not in caplog.text


def test_settings_are_immutable() -> None:
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.ws_port = 1  # type: ignore[misc]
