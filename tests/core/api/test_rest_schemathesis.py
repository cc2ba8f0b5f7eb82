"""schemathesis drives every operation of /rest-api/openapi.json against a real
``hookcast serve`` process: no 5xx, and every response conforms to the document."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from hookcast.config.home import Home
from tests.served import Served, configure


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("home")
    for folder in ("conf", "plugins"):
        (root / folder).mkdir()
    home = Home(Path(root))
    ports = configure(home)
    process = subprocess.Popen(
        [sys.executable, "-m", "hookcast", "serve", "--home", str(root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    served = Served(process, ports["http.port"])
    served.wait_ready()
    yield served
    process.terminate()
    process.communicate(timeout=20)


def test_rest_api_conforms_to_its_openapi_document(served: Served) -> None:
    """Every operation, 40 generated requests each, all of schemathesis's checks."""
    schema = schemathesis.openapi.from_url(
        f"http://127.0.0.1:{served.http_port}/rest-api/openapi.json"
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate()

        check()
