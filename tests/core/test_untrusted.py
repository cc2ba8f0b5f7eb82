"""LogBudget: what a client or remote causes is logged at a bounded rate."""

from __future__ import annotations

import logging

import pytest

from hookcast.untrusted import LogBudget


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_flood_writes_the_burst_then_the_rate_and_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    budget = LogBudget(logging.getLogger("t.budget"), "link x", burst=3, per_second=1.0,
                       clock=clock)
    with caplog.at_level(logging.INFO, "t.budget"):
        for _ in range(1000):
            budget.info("remote said %s", "fail")
        assert [r.getMessage() for r in caplog.records] == ["remote said fail"] * 3
        assert budget.suppressed == 997
        clock.now = 1.0  # one more line a second, preceded by the count
        budget.warning("remote said %s", "fail")
        messages = [r.getMessage() for r in caplog.records]
        assert messages[3:] == ["link x: 997 similar lines suppressed", "remote said fail"]
        assert caplog.records[3].levelno == logging.WARNING
        budget.info("again")  # no token left
        budget.close()
        assert caplog.records[-1].getMessage() == "link x: 1 similar lines suppressed"
        budget.close()  # nothing more to say
        assert len(caplog.records) == 6


def test_ten_seconds_of_flood_stay_small(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    budget = LogBudget(logging.getLogger("t.budget"), "session s", clock=clock)
    with caplog.at_level(logging.INFO, "t.budget"):
        for i in range(600_000):
            clock.now = i / 60_000  # 600,000 lines in 10 s
            budget.info("x" * 200)
    assert len(caplog.records) <= budget.burst + 2 * 10 + 1


def test_a_disabled_level_costs_nothing_and_counts_nothing() -> None:
    logger = logging.getLogger("t.budget.quiet")
    logger.setLevel(logging.WARNING)
    budget = LogBudget(logger, "o", burst=1)
    for _ in range(10):
        budget.debug("x")
    assert budget.suppressed == 0
