"""The housekeeper: due duties run on tick, each at its own period, and one failing stops no other."""

from __future__ import annotations

import logging

import pytest

from nbjobs.clock import ManualClock
from nbjobs.service.housekeeping import Duty, Housekeeper


def test_every_duty_runs_at_the_first_tick_then_at_its_period():
    clock = ManualClock()
    ran: list[str] = []
    keeper = Housekeeper(
        clock, [Duty("fast", 1, lambda: ran.append("fast")), Duty("slow", 10, lambda: ran.append("slow"))]
    )
    assert keeper.tick() == ["fast", "slow"]
    clock.advance(999)
    assert keeper.tick() == []
    clock.advance(1)
    assert keeper.tick() == ["fast"]
    assert keeper.tick(clock() + 9_000) == ["fast", "slow"]  # tick(now) steps without moving the clock
    assert ran == ["fast", "slow", "fast", "fast", "slow"]


def test_a_failing_duty_is_logged_and_retried_and_the_others_still_run(caplog):
    clock = ManualClock()
    calls = {"bad": 0, "good": 0}

    def bad() -> None:
        calls["bad"] += 1
        raise RuntimeError("database away")

    keeper = Housekeeper(clock, [Duty("bad", 1, bad), Duty("good", 1, lambda: calls.__setitem__("good", 1))])
    with caplog.at_level(logging.ERROR, logger="nbjobs.service.housekeeping"):
        assert keeper.tick() == ["bad", "good"]
    assert calls == {"bad": 1, "good": 1}
    assert "duty 'bad' failed" in caplog.text
    clock.advance(1000)
    keeper.tick()
    assert calls["bad"] == 2  # retried at its next period


def test_run_now_runs_one_duty_whatever_its_schedule():
    ran: list[str] = []
    keeper = Housekeeper(ManualClock(), [Duty("purge", 3600, lambda: ran.append("purge"))])
    keeper.run_now("purge")
    keeper.run_now("purge")
    assert ran == ["purge", "purge"]
    with pytest.raises(KeyError):
        keeper.run_now("unknown")


def test_a_duty_needs_a_positive_period():
    with pytest.raises(ValueError, match="positive period"):
        Housekeeper(ManualClock(), [Duty("never", 0, lambda: None)])


def test_start_ticks_in_the_background_until_stop():
    import threading

    ticked = threading.Event()
    keeper = Housekeeper(lambda: 0, [Duty("beat", 0.01, ticked.set)])
    keeper.start()
    try:
        assert ticked.wait(60)
    finally:
        keeper.stop()
    assert keeper._thread is not None and not keeper._thread.is_alive()
