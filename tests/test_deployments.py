"""prefect.yaml is checked strictly: a misspelt key is caught here, not silently dropped."""

from __future__ import annotations

import datetime as dt
from itertools import pairwise
from pathlib import Path

import pandas as pd
import yaml
from cronsim import CronSim

from flows.deployments import check_prefect_yaml
from flows.runs import why_skip

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_prefect_yaml_is_clean():
    assert check_prefect_yaml(ROOT / "prefect.yaml") == []


def test_shipped_deployments_never_overlap_and_run_in_tokyo_time():
    data = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))
    for d in data["deployments"]:
        assert d["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}, d["name"]
        assert all(s["timezone"] == "Asia/Tokyo" for s in d["schedules"]), d["name"]
        assert {"dry_run", "now"} <= set(d["parameters"]), d["name"]


def test_reconcile_runs_at_every_hour_so_urgent_notices_go_in_quiet_hours_too():
    """The contract: in quiet hours ordinary notices wait, urgent ones (a cancelled customer about to
    get a reminder) go at once. So some scheduled run works at every hour of the day, its own guard
    letting it: never more than 30 minutes between two."""
    data = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))
    [deployment] = [d for d in data["deployments"] if d["entrypoint"] == "flows/reconcile.py:reconcile_flow"]
    day = dt.datetime(2026, 11, 20)
    working = []
    for schedule in deployment["schedules"]:
        for fire in CronSim(schedule["cron"], day - dt.timedelta(seconds=1)):
            if fire >= day + dt.timedelta(days=1):
                break
            clock = pd.Timestamp(fire, tz="Asia/Tokyo")
            assert why_skip(clock, schedule["parameters"]["business_hours"], None, None, fire) is None, fire
            working.append(fire)
    working = sorted([*working, day + dt.timedelta(days=1)])
    assert working[0] == day
    assert max(b - a for a, b in pairwise(working)) <= dt.timedelta(minutes=30)


def _with(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))
    mutate(data)
    for d in data["deployments"]:
        d.get("work_pool", {}).pop("<<", None)
    out = tmp_path / "prefect.yaml"
    out.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    for folder in ("flows", "tasks", "mappings"):
        (tmp_path / folder).symlink_to(ROOT / folder)
    return out


def test_misspelt_deployment_key_is_caught(tmp_path):
    def typo(data):
        d = data["deployments"][0]
        d["concurency_limit"] = d.pop("concurrency_limit")

    problems = check_prefect_yaml(_with(tmp_path, typo))
    assert any("concurency_limit" in p for p in problems), problems


def test_misspelt_work_pool_key_and_bad_entrypoint_are_caught(tmp_path):
    def typos(data):
        data["deployments"][0]["work_pool"]["work_queue"] = "x"
        data["deployments"][1]["entrypoint"] = "flows/reconcile.py:no_such_flow"

    problems = check_prefect_yaml(_with(tmp_path, typos))
    assert any("work_queue" in p for p in problems), problems
    assert any("no_such_flow" in p for p in problems), problems


def test_parameter_the_flow_does_not_take_is_caught(tmp_path):
    def typos(data):
        data["deployments"][0]["parameters"]["dryrun"] = True
        data["deployments"][2]["schedules"][0]["parameters"] = {"bussiness_hours": "09:00-18:00"}

    problems = check_prefect_yaml(_with(tmp_path, typos))
    assert any("'dryrun' is not a parameter of reconcile_flow" in p for p in problems), problems
    assert any("schedules[0]" in p and "bussiness_hours" in p for p in problems), problems
