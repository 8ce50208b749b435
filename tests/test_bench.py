"""Smoke test of the benchmark entry point: it runs whole at a tiny size and prints the documented JSON.

No figure here is a time budget (benchmarks print numbers; bench/README.md holds them): the checks
are the shape of the output and what must hold at any size and load.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
WRITERS = ("ours", "naive", "gspread_dataframe")


@pytest.fixture(scope="module")
def figures() -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--size", "20", "--demo-customers", "20", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, "--json prints one JSON object and nothing else"
    return json.loads(lines[0])


def test_pure_figures(figures):
    assert figures["size"] == 20
    assert "error" not in figures["reconcile"], figures["reconcile"]
    assert 0 < figures["reconcile_s"] < 600
    assert 10 < figures["peak_mb"] < 2048
    assert figures["reconcile"]["rows"]["顧客"] == 20
    assert figures["reconcile"]["first"]["plan"]["appends"] > 0
    assert figures["reconcile"]["steady"]["total_s"] > 0


@pytest.mark.parametrize("writer", WRITERS)
def test_every_writer_has_the_documented_figures(figures, writer):
    row = figures[writer]
    assert "error" not in row, row.get("error")
    for key in ("requests", "cells_written", "staff_edits_lost"):
        assert isinstance(row[key], int) and row[key] >= 0, (key, row[key])
    assert row["requests"] > 0
    assert row["cells_written"] > 0
    assert 0 < row["wall_s"] < 600
    assert row["staff_edits"] > 0, "the person made no edit during the run: nothing was tested"
    assert row["staff_edits_lost"] <= row["staff_edits"]
    assert row["formulas_created"] == 0


def test_the_comparison_tells_the_writers_apart(figures):
    """Same sheet, same changes, same person: ours keeps every edit; writing tabs back whole does not."""
    assert figures["ours"]["staff_edits_lost"] == 0, figures["ours"]["lost"]
    assert figures["ours"]["cells_written_change_log"] > 0  # the log's appendCells count as written
    assert figures["ours"]["cells_read"] > 0
    assert figures["gspread_dataframe"]["staff_edits_lost"] > 0
    assert figures["e2e"]["plan"]["edits"] + figures["e2e"]["plan"]["appends"] > 0


def test_demo_figures(figures):
    demo = figures["demo"]
    assert "error" not in demo, demo.get("error")
    assert demo["customers"] == 20
    assert 0 < demo["imports_s"] <= demo["first_s"]
    assert demo["second_s"] > 0


def test_a_run_reads_no_more_as_the_change_log_grows():
    """変更履歴 is append-only: a steady run through the stand-in reads its header, not its history."""
    from bench.log_reads import measure

    short, long = measure(20, 0), measure(20, 300)
    assert long["log_rows"] == short["log_rows"] + 300 and short["changes"] > 0
    assert long["cells_read"] == short["cells_read"] and long["requests"] == short["requests"]


def test_the_plan_digest_is_the_same_for_the_same_plan_and_sees_any_change():
    """What the speed rounds' "same plans" rests on: equal instants agree, anything else differs."""
    from bench.plan_digest import digest, measure
    from bench.reconcile import NOW
    from tasks.check import check
    from tasks.demo_data import generate_frames
    from tasks.mapping import load_mapping
    from tasks.plan import Plan
    from tasks.reconcile import reconcile

    first = measure(20)
    assert first == measure(20) and first["edits"] > 0 and len(first["digest"]) == 64
    assert measure(20, steady=True)["digest"] != first["digest"]
    mapping = load_mapping()
    plan = reconcile(check(generate_frames(20, seed=7, now=NOW.to_pydatetime()), mapping), NOW, mapping)
    assert digest(plan) == first["digest"]
    edit = plan.edits[0]
    changed = Plan(edits=(edit._replace(new=f"{edit.new}!"), *plan.edits[1:]), appends=plan.appends)
    assert digest(changed) != digest(plan)
    moment = pd.Timestamp("2026-11-20T12:30", tz="Asia/Tokyo")
    as_timestamp = Plan(edits=(edit._replace(new=moment),))
    as_utc_datetime = Plan(edits=(edit._replace(new=moment.tz_convert("UTC").to_pydatetime()),))
    as_naive = Plan(edits=(edit._replace(new=moment.tz_localize(None).to_pydatetime()),))
    assert digest(as_timestamp) == digest(as_utc_datetime) != digest(as_naive)
