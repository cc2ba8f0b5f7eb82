"""The contract is documented and tested: every hook has a docstring naming each of
its arguments and its kind, and a test named ``test_hook_<name>``."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from hookcast import hookspecs
from tests import hook_coverage

TESTS = Path(__file__).resolve().parents[1]
SPECS = sorted(hookspecs.KINDS)


def _test_names() -> set[str]:
    names: set[str] = set()
    for path in TESTS.rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names.add(node.name)
    return names


def test_there_are_hooks_for_every_lifecycle_object() -> None:
    assert {
        "after_server_start", "before_server_stop", "after_server_stop", "register_rest_routes",
        "before_connect", "after_session_connect", "after_session_disconnect",
        "before_publish", "before_play", "after_stream_status", "on_stream_keep_alive",
        "record_file_name", "record_rotation_policy", "on_record_started",
        "on_record_finished", "media_source_for_uri",
    } <= set(SPECS)


@pytest.mark.parametrize("name", SPECS)
def test_hookspec_docstring_is_a_contract(name: str) -> None:
    spec = getattr(hookspecs, name)
    doc = inspect.getdoc(spec) or ""
    assert doc, f"{name} has no docstring"
    for argument in inspect.signature(spec).parameters:
        assert f":param {argument}:" in doc, f"{name}: argument {argument} is not documented"
    assert f"Kind: {hookspecs.KINDS[name]}" in doc, f"{name}: docstring does not state its kind"


@pytest.mark.parametrize("name", SPECS)
def test_every_hook_has_a_test(name: str) -> None:
    assert f"test_hook_{name}" in _test_names(), f"no test_hook_{name} in tests/"


#: hooks the core does not call yet (strict: this fails as soon as one is called)
NOT_YET_CALLED: set[str] = set()


@pytest.mark.after_all
@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(strict=True, reason="the core does not call it yet"))
    if n in NOT_YET_CALLED else n for n in SPECS
])
def test_the_core_calls_every_hook_in_a_real_server_test(
    name: str, request: pytest.FixtureRequest
) -> None:
    """Calling the bus from a test proves the plugin side only: some test must drive a
    real server so that the core itself calls the hook."""
    config = request.config
    here = config.invocation_params.dir
    narrowed = config.option.keyword or config.option.markexpr or any(
        (here / arg).resolve() != TESTS for arg in config.args)
    if narrowed:
        pytest.skip("a narrowed run (files, -k or -m given): run the whole suite to check")
    assert name in hook_coverage.CALLED_BY_CORE, f"no real-server test made the core call {name}"


def test_the_fields_an_admission_may_amend_are_the_ones_its_hookspec_names() -> None:
    """before_publish/before_play say which fields an Amend may change: exactly the ones
    the engine applies (hookcast.engine.admission.AMENDABLE)."""
    from hookcast import hookspecs
    from hookcast.engine.admission import AMENDABLE

    for spec in (hookspecs.before_publish, hookspecs.before_play):
        documented = set(re.findall(r"``(\w+)``", spec.__doc__ or ""))
        assert set(AMENDABLE) <= documented, (spec.__name__, set(AMENDABLE) - documented)
