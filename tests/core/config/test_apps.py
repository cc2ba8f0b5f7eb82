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
