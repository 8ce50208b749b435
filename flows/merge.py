"""The merge-approved flow: the pipeline's own composition (read → check → plan → write → tell →
report), with the merge of approved duplicates as the plan instead of the reconcile rules.

A merge is written one step per pass, in the contract's order (`tasks.rules.merge.STEPS`): each pass
reads the sheets afresh, plans, and writes the next step of every merge by compare-and-set. A run
that dies between passes has landed a prefix of the steps, and the next run finishes the rest. A
merge costs len(STEPS) + 1 passes (on Google Sheets 4 requests per spreadsheet a pass writes, 2 for
the last pass, which finds nothing left); a run with nothing to merge is that one pass.
"""

from __future__ import annotations

import uuid

import pandas as pd
from prefect import flow

from flows.pipeline import RunSummary, Step, in_process, run
from flows.runs import execute, tell_ops
from tasks.frames import Frames
from tasks.mapping import Mapping
from tasks.plan import Plan
from tasks.rules.merge import STEPS, merge_approved, next_step
from tasks.workbooks.port import ApplyReport, Workbook

MAX_PASSES = 2 * len(STEPS)  # a merge needs len(STEPS) + 1; the rest is room for passes that waited


def merge_plan(frames: Frames, now: pd.Timestamp, mapping: Mapping, *, baseline: bool = False) -> Plan:
    """The whole merge plan as a dry run prints it: without the guards, which write nothing (as `_total`)."""
    del baseline  # a merge is never part of an adoption run
    return merge_approved(frames, now, mapping).without_checks()


def step_plan(frames: Frames, now: pd.Timestamp, mapping: Mapping, *, baseline: bool = False) -> Plan:
    """What one pass writes: the next step of every merge, with its guards."""
    del baseline
    return next_step(merge_approved(frames, now, mapping))


def run_merge(
    book: Workbook, mapping: Mapping, now: pd.Timestamp, send, *, dry_run: bool = False,
    run_id: str | None = None, step: Step = in_process,
) -> RunSummary:
    """Passes until every merge is done or none can move on (a person's edit: the next run retries)."""
    if dry_run:
        return run(book, mapping, now, send, dry_run=True, run_id=run_id, step=step, plan_with=merge_plan)
    run_id = run_id or f"{now:%Y%m%d-%H%M}-merge-{uuid.uuid4().hex[:6]}"
    passes: list[RunSummary] = []
    while len(passes) < MAX_PASSES:
        passes.append(run(book, mapping, now, send, run_id=run_id, step=step, plan_with=step_plan))
        report = passes[-1].report
        if not passes[-1].plan or not (report.cells_written or report.rows_added or report.rows_deleted):
            break
    return _total(passes)


def _total(passes: list[RunSummary]) -> RunSummary:
    """One summary of a run's passes: everything planned (not the guards) and written, the last pass's problems."""
    last = passes[-1]
    plan = Plan(
        edits=tuple(e for p in passes for e in p.plan.edits),
        appends=tuple(a for p in passes for a in p.plan.appends),
        deletes=tuple(d for p in passes for d in p.plan.deletes),
        log=tuple(line for p in passes for line in p.plan.log),
    ).without_checks()
    reports = [p.report for p in passes]
    report = ApplyReport(
        cells_written=sum(r.cells_written for r in reports),
        rows_added=sum(r.rows_added for r in reports),
        rows_deleted=sum(r.rows_deleted for r in reports),
        skipped=[s for r in reports for s in r.skipped],
        structure=[c for r in reports for c in r.structure],
        changes=[c for r in reports for c in r.changes],
    )
    return RunSummary(run_id=last.run_id, now=last.now, source=last.source, dry_run=False,
                      rows_read=passes[0].rows_read, plan=plan, problems=last.problems, report=report,
                      deliveries=[d for p in passes for d in p.deliveries])


@flow(name="merge-approved", log_prints=True, on_failure=[tell_ops], on_crashed=[tell_ops])
def merge_flow(
    workbook: str | None = None,
    spreadsheet: str | None = None,
    dry_run: bool = False,
    now: str | None = None,
    max_lateness_minutes: float | None = None,
    credentials: str | None = None,
    sheets_endpoint: str | None = None,
    mappings: str | None = None,
    routes: str | None = None,
) -> RunSummary | None:
    """The sources as for `reconcile_flow`. A scheduled run that starts too late leaves it to the next one."""
    return execute(
        "merge", lambda book, mapping, clock, send, step: run_merge(book, mapping, clock, send, dry_run=dry_run, step=step),
        workbook=workbook, spreadsheet=spreadsheet, now=now, credentials=credentials, sheets_endpoint=sheets_endpoint,
        mappings=mappings, routes=routes, max_lateness_minutes=max_lateness_minutes)
