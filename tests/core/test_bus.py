"""The hook bus: kinds enforced at registration, dispatch semantics, isolation."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest

from hookcast import Amend, Refuse, SessionInfo, StreamInfo, hookimpl
from hookcast.bus import ADMIT_FAILURE, HookBus, PluginError

SESSION = SessionInfo(session_id="s1", app_key="defaultApp", status="PENDING", remote="127.0.0.1")
STREAM = StreamInfo(
    media_session_id="m1", name="cam", published=True, status="PENDING",
    session_id="s1", app_key="defaultApp",
)


def plugin(**functions: object) -> SimpleNamespace:
    """A plugin object whose attributes are the given hook implementations."""
    return SimpleNamespace(**{name: hookimpl(fn) for name, fn in functions.items()})  # type: ignore[arg-type]


async def test_async_notify_impl_is_awaited() -> None:
    bus = HookBus()
    seen: list[str] = []

    async def after_stream_status(stream: StreamInfo) -> None:
        await asyncio.sleep(0.01)
        seen.append(stream.status)

    bus.register(plugin(after_stream_status=after_stream_status), "p", "test")
    await bus.after_stream_status(STREAM, None)
    assert seen == ["PENDING"]
    assert bus.outcomes[("after_stream_status", "p", "ok")] == 1


async def test_raising_and_hanging_impls_do_not_stop_the_others() -> None:
    bus = HookBus(timeout=0.2)
    seen: list[str] = []

    def broken(stream: StreamInfo) -> None:
        raise RuntimeError("boom")

    async def hangs(stream: StreamInfo) -> None:
        await asyncio.sleep(30)

    async def works(stream: StreamInfo) -> None:
        seen.append(stream.name)

    bus.register(plugin(after_stream_status=broken), "broken", "test")
    bus.register(plugin(after_stream_status=hangs), "hangs", "test")
    bus.register(plugin(after_stream_status=works), "works", "test")
    started = time.monotonic()
    await bus.after_stream_status(STREAM, None)
    elapsed = time.monotonic() - started
    assert seen == ["cam"]
    assert 0.15 < elapsed < 2, "the hanging plugin is cut off at the timeout"
    assert bus.outcomes[("after_stream_status", "broken", "error")] == 1
    assert bus.outcomes[("after_stream_status", "hangs", "timeout")] == 1
    assert bus.outcomes[("after_stream_status", "works", "ok")] == 1


async def test_admit_refusal_carries_its_reason() -> None:
    bus = HookBus()
    bus.register(plugin(before_publish=lambda stream: None), "allows", "test")

    async def refuses(stream: StreamInfo) -> Refuse | None:
        return Refuse(f"{stream.name} is reserved")

    bus.register(plugin(before_publish=refuses), "refuses", "test")
    verdict = await bus.before_publish(SESSION, STREAM)
    assert not verdict.admitted
    assert verdict.reason == "cam is reserved"
    assert bus.outcomes[("before_publish", "refuses", "refused")] == 1


async def test_admit_amendments_merge_and_admit() -> None:
    bus = HookBus()
    bus.register(plugin(before_publish=lambda: Amend(name="renamed")), "a", "test")
    bus.register(plugin(before_publish=lambda: Amend({"custom": {"k": 1}})), "b", "test")
    verdict = await bus.before_publish(SESSION, STREAM)
    assert verdict.admitted
    assert verdict.fields["name"] == "renamed"
    assert verdict.fields["custom"]["k"] == 1


async def test_admit_with_no_plugins_admits() -> None:
    verdict = await HookBus().before_play(SESSION, STREAM)
    assert verdict.admitted and verdict.reason == ""


@pytest.mark.parametrize("failure", ["raises", "hangs", "bad-result"])
async def test_admit_fails_closed_when_a_plugin_fails(failure: str) -> None:
    async def impl(session: SessionInfo) -> object:
        if failure == "raises":
            raise ValueError("bug")
        if failure == "hangs":
            await asyncio.sleep(30)
        return "yes"

    bus = HookBus(timeout=0.1)
    bus.register(plugin(before_connect=impl), "p", "test")
    verdict = await bus.before_connect(SESSION)
    assert not verdict.admitted
    assert verdict.reason == ADMIT_FAILURE


def test_decide_first_result_wins_and_raising_impl_is_skipped() -> None:
    bus = HookBus()
    bus.register(plugin(record_file_name=lambda: "first-registered"), "first", "test")
    bus.register(plugin(record_file_name=lambda: None), "abstains", "test")

    def broken() -> str:
        raise KeyError("x")

    bus.register(plugin(record_file_name=broken), "broken", "test")
    # pluggy calls the last registered first: broken (skipped), abstains (None), first.
    assert bus.record_file_name(STREAM, "{streamName}", {}) == "first-registered"
    assert bus.outcomes[("record_file_name", "broken", "error")] == 1


def test_decide_stops_at_first_non_none() -> None:
    bus = HookBus()
    calls: list[str] = []
    bus.register(plugin(record_file_name=lambda: calls.append("a") or "a"), "a", "test")
    bus.register(plugin(record_file_name=lambda: calls.append("b") or "b"), "b", "test")
    assert bus.record_file_name(STREAM, "t", {}) == "b"
    assert calls == ["b"]


def test_async_impl_on_decide_hook_is_refused_at_registration() -> None:
    async def record_file_name(stream: StreamInfo) -> str:
        return "x"

    bus = HookBus()
    with pytest.raises(PluginError, match=r"record_file_name is a decide hook and must be a plain function, not async def"):
        bus.register(plugin(record_file_name=record_file_name), "asyncdecide", "test")
    assert bus.plugins() == []


def test_async_impl_on_collect_hook_is_refused() -> None:
    async def register_rest_routes() -> list[object]:
        return []

    with pytest.raises(PluginError, match="collect hook"):
        HookBus().register(plugin(register_rest_routes=register_rest_routes), "p", "test")


def test_unknown_hook_is_refused_with_nearest_name_and_location() -> None:
    def before_publsh() -> None: ...

    with pytest.raises(PluginError) as caught:
        HookBus().register(plugin(before_publsh=before_publsh), "typo", "test")
    message = str(caught.value)
    assert "plugin typo (" in message and "test_bus.py:" in message
    assert "before_publsh is not a hookcast hook; did you mean before_publish?" in message


def test_wrong_argument_name_is_refused() -> None:
    def before_publish(strem: StreamInfo) -> None: ...

    with pytest.raises(PluginError, match="strem"):
        HookBus().register(plugin(before_publish=before_publish), "p", "test")


def test_duplicate_plugin_name_is_refused() -> None:
    bus = HookBus()
    bus.register(plugin(), "same", "test")
    with pytest.raises(PluginError, match="a plugin of that name is loaded"):
        bus.register(plugin(), "same", "other")


async def test_unregister_stops_calls() -> None:
    bus = HookBus()
    seen: list[str] = []
    bus.register(plugin(after_stream_status=lambda: seen.append("x")), "p", "test")
    await bus.after_stream_status(STREAM, None)
    assert seen == ["x"]
    record = bus.unregister("p")
    assert record is not None and (record.name, record.source) == ("p", "test")
    await bus.after_stream_status(STREAM, None)
    assert seen == ["x"]
    assert bus.unregister("p") is None
