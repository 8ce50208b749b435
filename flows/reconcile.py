"""The Prefect flow: the same composition as the command line, each step a tracked task."""

from __future__ import annotations

import pandas as pd
from prefect import flow, task

from flows.pipeline import RunSummary, run
from tasks.mapping import load_mapping
from tasks.tell import console
from tasks.workbooks.local import LocalWorkbook


def as_task(fn):
    return task(fn, name=fn.__name__.removesuffix("_step"))


@flow(name="reconcile", log_prints=True)
def reconcile_flow(workbook: str, now: str | None = None, dry_run: bool = False, baseline: bool = False) -> RunSummary:
    stamp = pd.Timestamp(now).tz_convert("Asia/Tokyo") if now else pd.Timestamp.now(tz="Asia/Tokyo").floor("s")
    return run(LocalWorkbook(workbook), load_mapping(), stamp, console, dry_run=dry_run, baseline=baseline, step=as_task)
