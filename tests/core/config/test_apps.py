from __future__ import annotations

import json
from pathlib import Path

import pytest

from hookcast.config.apps import (
    REST_METHODS,
    default_applications,
    load_applications,
    parse_applications,
)
from hookcast.config.rest_client import MethodConfig
from hookcast.config.settings import ConfigError
from tests.served import REPO


def test_shipped_apps_json_is_the_default() -> None:
    shipped = load_applications(REPO / "conf" / "apps.json")
    assert shipped == default_applications()
    app = shipped.by_key("defaultApp")
    assert app is not None
    assert app.url == "/apps/EchoApp"
    assert app.method_url("connect", "http://127.0.0.1:9000") == "http://127.0.0.1:9000/apps/EchoApp/connect"
    assert "connect" in app.methods and "StreamKeepAliveEvent" not in app.methods


def test_missing_file_means_the_default_app(tmp_path: Path) -> None:
    assert load_applications(tmp_path / "apps.json") == default_applications()


def test_absolute_urls_are_kept() -> None:
    apps = parse_applications({"apps": [{"name": "a", "appKey": "k", "url": "https://b.example/api/"}]}, "x")
    assert apps.apps[0].method_url("connect", "http://127.0.0.1:1") == "https://b.example/api/connect"


def test_round_trip() -> None:
    apps = default_applications()
    assert parse_applications(json.loads(json.dumps(apps.to_json())), "x") == apps


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], 'x: expected an object {"apps": [...]}'),
        ({"apps": ["a"]}, "x: apps[0]: expected an object with name, appKey, url, methods"),
        ({"apps": [{"appKey": "k", "url": "http://h"}]}, "x: apps[0].name: expected a non-empty string"),
        ({"apps": [{"name": "a", "appKey": "k", "url": "ftp://h"}]}, "x: apps[0].url: expected an http:// or https:// URL (or /path on this server), got 'ftp://h'"),
        ({"apps": [{"name": "a", "appKey": "k", "url": "http://h", "methods": "connect"}]}, "x: apps[0].methods: expected a list of method names"),
        ({"apps": [{"name": "a", "appKey": "k", "url": "http://h", "methods": ["conect"]}]}, "x: apps[0].methods: unknown method 'conect'; valid: " + ", ".join(REST_METHODS)),
        ({"apps": [{"name": "a", "appKey": "k", "url": "http://h", "owner": "x"}]}, "x: apps[0]: unknown field 'owner'"),
        (
            {"apps": [{"name": "a", "appKey": "k", "url": "http://h"}, {"name": "a", "appKey": "k", "url": "http://h"}]},
            "x: application name 'a' is used twice",
        ),
    ],
)
def test_bad_apps_are_refused_naming_entry_and_field(document: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_applications(document, "x")
    assert caught.value.problems[0] == message


def test_invalid_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "apps.json"
    path.write_text('{\n  "apps": [,]\n}')
    with pytest.raises(ConfigError, match=r"apps.json:2: invalid JSON"):
        load_applications(path)


# --- an application's own restClientConfig (the defaults its sessions start from) ----------

FAIL_PUBLISH = {"name": "a", "appKey": "k", "url": "http://h", "methods": ["publishStream"],
                "restClientConfig": {"publishStream": {"restOnError": "fail"},
                                     "playStream": {"restExclude": "sdp, custom",
                                                    "restPolicy": "DISABLED"}}}


def test_an_apps_rest_client_config_is_read_over_wcs_defaults_and_round_trips() -> None:
    apps = parse_applications({"apps": [FAIL_PUBLISH]}, "x")
    config = apps.apps[0].rest_client_config
    assert config["publishStream"] == MethodConfig(on_error="FAIL")
    assert config["playStream"] == MethodConfig(rest_exclude=frozenset({"sdp", "custom"}),
                                                policy="DISABLE")
    written = apps.to_json()["apps"][0]["restClientConfig"]
    assert written["publishStream"] == {"restExclude": "", "clientExclude": "", "restOnError": "FAIL",
                                        "restPolicy": "NOTIFY", "restOverwrite": ""}
    assert parse_applications(json.loads(json.dumps(apps.to_json())), "x") == apps
    assert "restClientConfig" not in default_applications().to_json()["apps"][0]


@pytest.mark.parametrize(("config", "message"), [
    ([], "x: application 'a' (apps[0]).restClientConfig: expected an object of method name -> "
         "{restExclude, clientExclude, restOnError, restPolicy, restOverwrite}"),
    ({"publishStream": {"restOnError": "FIAL"}},
     "x: application 'a' (apps[0]).restClientConfig.publishStream.restOnError: expected LOG or FAIL, got 'FIAL'"),
    ({"publishStream": {"restPolicy": 1}},
     "x: application 'a' (apps[0]).restClientConfig.publishStream.restPolicy: expected NOTIFY or OVERWRITE or DISABLE, got 1"),
    ({"publishStream": {"restExclude": {"sdp": True}}},
     "x: application 'a' (apps[0]).restClientConfig.publishStream.restExclude: expected comma-separated "
     "field names (or a list of them), got {'sdp': True}"),
    ({"publishStream": {"restOnErorr": "FAIL"}},
     "x: application 'a' (apps[0]).restClientConfig.publishStream: unknown field 'restOnErorr'; did you mean restOnError?"),
    ({"publishstream": {"restOnError": "FAIL"}},
     "x: application 'a' (apps[0]).restClientConfig.publishstream: unknown method 'publishstream'; "
     f"did you mean publishStream?; valid: {', '.join(REST_METHODS)}"),
    ({"playStream": "FAIL"},
     "x: application 'a' (apps[0]).restClientConfig.playStream: expected an object with any of "
     "restExclude, clientExclude, restOnError, restPolicy, restOverwrite"),
])
def test_a_bad_rest_client_config_names_the_application_the_method_and_the_field(
    config: object, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_applications({"apps": [{"name": "a", "appKey": "k", "url": "http://h",
                                      "restClientConfig": config}]}, "x")
    assert caught.value.problems == [message]


def test_a_misspelt_application_field_gets_the_nearest_name() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_applications({"apps": [{"name": "a", "appKey": "k", "url": "http://h",
                                      "restClientconfig": {}}]}, "x")
    assert caught.value.problems == [
        "x: apps[0]: unknown field 'restClientconfig'; did you mean restClientConfig?"]
