"""The operational rules of the flows that need no server: lateness, business hours, the rate limit's shape, setup."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from flows.runs import parse_clock, why_skip
from flows.setup import rate_limit_shape

ROOT = Path(__file__).resolve().parent.parent
TEN = pd.Timestamp("2026-11-20T10:00+09:00")
WALL = dt.datetime(2026, 11, 20, 1, 0, tzinfo=dt.UTC)  # 10:00 Tokyo


def test_a_run_started_later_than_allowed_does_nothing_and_says_why():
    scheduled = WALL - dt.timedelta(minutes=40)
    reason = why_skip(TEN, None, 15, scheduled, WALL)
    assert reason is not None and "late by 40 min" in reason
    assert why_skip(TEN, None, 15, WALL - dt.timedelta(minutes=10), WALL) is None
    assert why_skip(TEN, None, None, scheduled, WALL) is None  # a run by hand has no lateness limit


def test_business_hours_are_tokyo_wall_clock_with_the_end_excluded():
    assert why_skip(TEN, "09:00-21:00", None, None, WALL) is None
    assert "outside business hours" in why_skip(pd.Timestamp("2026-11-20T21:00+09:00"), "09:00-21:00", None, None, WALL)
    assert why_skip(pd.Timestamp("2026-11-20T00:30Z"), "09:00-21:00", None, None, WALL) is None  # 09:30 JST
    assert why_skip(pd.Timestamp("2026-11-20T08:59+09:00"), "09:00-21:00", None, None, WALL) is not None

    night = "21:00-09:00"  # a range across midnight
    assert why_skip(pd.Timestamp("2026-11-20T23:30+09:00"), night, None, None, WALL) is None
    assert why_skip(pd.Timestamp("2026-11-20T08:00+09:00"), night, None, None, WALL) is None
    assert why_skip(TEN, night, None, None, WALL) is not None


@pytest.mark.parametrize("guess", ["11/20 10:00", "2026-13-01T10:00", "tomorrow", "46000", "46000.5", " ４６０００ "])
def test_a_clock_that_would_be_a_guess_is_refused(guess):
    """A bare number too: as a cell it may be an Excel serial date (46000 is 2025-12-09), never as a clock."""
    with pytest.raises(ValueError, match="now="):
        parse_clock(guess)


def test_a_clock_without_a_zone_is_tokyo_time():
    assert parse_clock("2026-11-20T10:00") == TEN
    assert parse_clock("2026-11-20T01:00Z") == TEN
    assert str(parse_clock("2026-11-20T01:00Z").tz) == "Asia/Tokyo"


@pytest.mark.parametrize("per_minute", [1, 30, 50, 60, 120])
def test_the_rate_limit_lets_through_one_request_per_refill(per_minute):
    slots, decay = rate_limit_shape(per_minute)
    assert slots == 1  # no burst: a minute's edge never sees two minutes' worth
    assert 60 * decay == pytest.approx(per_minute)


def test_a_rate_limit_of_nothing_is_refused():
    with pytest.raises(ValueError):
        rate_limit_shape(0)


def test_setup_without_a_server_says_so_instead_of_starting_a_temporary_one(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {"PREFECT_HOME": str(tmp_path), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    done = subprocess.run([sys.executable, "-c", "from flows.cli import main; main()", "setup"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "PREFECT_API_URL" in done.stderr
    assert not (tmp_path / "prefect.db").exists()

