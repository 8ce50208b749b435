"""The merge-approved flow: the pipeline's own composition (read → check → plan → write → tell →
report), with the merge of approved duplicates as the plan instead of the reconcile rules."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.pipeline import RunSummary, Step, in_process, run
from flows.reconcile import as_task, parse_clock, tell_ops, why_skip
from flows.sources import open_book, sender
from tasks.frames import Frames
from tasks.mapping import Mapping, load_mapping
from tasks.plan import Plan
from tasks.rules.merge import merge_approved
from tasks.workbooks.port import Workbook


def merge_plan(frames: Frames, now: pd.Timestamp, mapping: Mapping, *, baseline: bool = False) -> Plan:
    del baseline  # a merge is never part of an adoption run
    return merge_approved(frames, now, mapping)


def run_merge(
    book: Workbook, mapping: Mapping, now: pd.Timestamp, send, *, dry_run: bool = False,
    run_id: str | None = None, step: Step = in_process,
) -> RunSummary:
    return run(book, mapping, now, send, dry_run=dry_run, run_id=run_id, step=step, plan_with=merge_plan)


@flow(name="merge-approved", log_prints=True, on_failure=[tell_ops], on_crashed=[tell_ops])
def merge_flow(
    workbook: str | None = None,
    spreadsheet: str | None = None,
    dry_run: bool = False,
    now: str | None = None,
    max_lateness_minutes: float | None = None,
) -> RunSummary | None:
    logger = get_run_logger()
    clock = parse_clock(now)
    reason = why_skip(clock, None, max_lateness_minutes, flow_run.scheduled_start_time, dt.datetime.now(dt.UTC))
    if reason:
        logger.info("Nothing done: %s", reason)
        return None
    book, _ = open_book(workbook or None, spreadsheet or None)
    summary = run_merge(book, load_mapping(), clock, sender(), dry_run=dry_run, step=as_task)
    logger.info("merge plan: %s edits, %s new rows, %s removals; written %s cells, skipped %s",
                len(summary.plan.edits), len(summary.plan.appends), len(summary.plan.deletes),
                summary.report.cells_written, len(summary.report.skipped))
    return summary
