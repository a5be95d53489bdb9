"""Read windows and periods: whole periods since the start, matured past CloudWatch's delay, never earlier."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from squals_action.providers.cloudwatch_window import NotYet, Window, grain_for, period_for, read_window


def at(clock: str, day: int = 30) -> datetime:
    hours, minutes, seconds = (int(p) for p in clock.split(":"))
    return datetime(2026, 11, day, hours, minutes, seconds, tzinfo=UTC)


def test_the_bake_window_holds_whole_minutes_since_the_start_that_have_matured() -> None:
    window = read_window(at("12:05:30"), at("12:01:20"))
    # 12:01 began before the bake (it may hold GREEN-only traffic); 12:04 ended 30 s ago (< the 60 s delay).
    assert window == Window(at("12:02:00"), at("12:04:00"))
    assert period_for(window, at("12:05:30")) == 120  # one datapoint carries the whole window


def test_a_window_on_the_boundaries_keeps_the_minute_that_just_matured() -> None:
    assert read_window(at("12:04:00"), at("12:02:00")) == Window(at("12:02:00"), at("12:03:00"))


def test_before_one_whole_period_fits_it_is_no_data_yet_with_the_moment_it_will_be_readable() -> None:
    early = read_window(at("12:02:30"), at("12:01:20"))
    assert isinstance(early, NotYet)
    assert early.ready_at == at("12:04:00")
    assert early.reason.startswith("no data yet")
    assert "12:04:00" in early.reason
    # a longer delay moves the moment on
    later = read_window(at("12:03:30"), at("12:01:20"), delay=120)
    assert isinstance(later, NotYet) and later.ready_at == at("12:05:00")


def test_high_resolution_windows_use_the_metrics_resolution_within_three_hours() -> None:
    now = at("12:00:47")
    window = read_window(now, at("12:00:00"), delay=5, resolution=10)
    assert window == Window(at("12:00:00"), at("12:00:40"))
    # 40 s is no period CloudWatch accepts: ask for 10 s and combine the datapoints
    assert period_for(window, now, 10) == 10
    thirty = read_window(at("12:00:36"), at("12:00:00"), delay=5, resolution=10)
    assert isinstance(thirty, Window) and period_for(thirty, at("12:00:36"), 10) == 30


def test_older_data_is_read_at_the_grain_cloudwatch_keeps_it() -> None:
    now = at("12:00:00")
    assert grain_for(now - timedelta(hours=2), now, 1) == 1
    assert grain_for(now - timedelta(hours=4), now, 1) == 60
    assert grain_for(now - timedelta(days=14), now) == 60
    assert grain_for(now - timedelta(days=20), now) == 300
    assert grain_for(now - timedelta(days=70), now) == 3600
    window = read_window(now, now - timedelta(days=20, minutes=3))
    assert isinstance(window, Window)
    assert window.start == now - timedelta(days=20)  # rounded up to the 5-minute grain
    assert period_for(window, now) == window.seconds


def test_naive_datetimes_and_unknown_resolutions_are_refused() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        read_window(datetime(2026, 11, 30, 12, 0), at("12:00:00"))
    with pytest.raises(ValueError, match="resolution 7 s"):
        read_window(at("12:05:00"), at("12:00:00"), resolution=7)
