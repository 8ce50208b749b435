"""What every flow shares: the guards of scheduled runs, the sources, the steps as tasks, the artifacts,
and the failure hook that tells 運営.

Scheduled runs that start late or outside business hours do nothing and say so; every run that works
publishes a summary and a table of its changes as artifacts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from flows.pipeline import RunSummary, Step, parse_clock
from flows.report import shown
from flows.sources import open_book, sender
from tasks.mapping import Mapping, load_mapping
from tasks.tell import Send
from tasks.workbooks.port import Workbook

Runner = Callable[[Workbook, Mapping, pd.Timestamp, Send, Step], RunSummary]

MAX_TABLE_ROWS = 200


def as_task(fn):
    """A step as a task; no input hashing for a cache key (a workbook holding a key cannot be hashed)."""
    return task(fn, name=fn.__name__.removesuffix("_step"), cache_policy=NO_CACHE)


def why_skip(clock: pd.Timestamp, business_hours: str | None, max_lateness_minutes: float | None,
             scheduled: dt.datetime | None, wall: dt.datetime) -> str | None:
    """A reason to do nothing, or None. Business hours ride on the schedule only (prefect.yaml), and a run
    by hand is scheduled for the moment it is asked: neither guard ever stops one."""
    if max_lateness_minutes is not None and scheduled is not None:
        late = (wall - scheduled).total_seconds() / 60
        if late > max_lateness_minutes:
            return f"late by {late:.0f} min (limit {max_lateness_minutes:g}): a newer run will do the work"
    if business_hours:
        start, end = business_hours.split("-")
        t = clock.tz_convert("Asia/Tokyo").strftime("%H:%M")
        if not (start <= t < end if start <= end else start <= t or t < end):  # "21:00-09:00" spans midnight
            return f"outside business hours {business_hours} (Asia/Tokyo)"
    return None


def publish(summary: RunSummary, source_link: str, tab_link: Callable[[str], str] | None = None,
            kind: str = "reconcile") -> None:
    """A markdown summary and a capped table of the changes, each linked to its tab (or the sheet)."""
    r = summary.report
    create_markdown_artifact(key=f"{kind}-summary", markdown=summary_markdown(summary, source_link, kind),
                             description="What this run read, wrote and sent")
    rows = [
        {"tab": tab, "key": key, "field": field, "old": shown(old), "new": shown(new), "reason": reason,
         "sheet": tab_link(tab) if tab_link else source_link}
        for tab, key, field, old, new, reason in r.changes[:MAX_TABLE_ROWS]
    ]
    if rows:
        create_table_artifact(key=f"{kind}-changes", table=rows,
                              description=f"First {len(rows)} of {len(r.changes)} changes")


def summary_markdown(summary: RunSummary, source_link: str, kind: str = "reconcile") -> str:
    """The run's summary artifact: what it read, wrote and sent, and what a person should know."""
    r = summary.report
    return "\n".join([
        f"# {kind.capitalize()} {summary.run_id}",
        f"- source: {source_link}",
        f"- now: {summary.now:%Y-%m-%d %H:%M} JST{' (dry run)' if summary.dry_run else ''}",
        f"- read: {', '.join(f'{k} {v}' for k, v in summary.rows_read.items())}",
        f"- planned: {len(summary.plan.edits)} edits, {len(summary.plan.appends)} new rows, {len(summary.plan.deletes)} removals",
        f"- written: {r.cells_written} cells, {r.rows_added} rows added, {r.rows_deleted} rows removed",
        f"- skipped (changed by a person since the read): {len(r.skipped)}",
        f"- input problems: {len(summary.problems)}",
        f"- notifications: {summary.sent} sent, {summary.failed} failed",
        *(f"- note: {line}" for line in summary.plan.log),
        *(f"- **warning**: {line}" for line in summary.notes),
    ])


def tell_ops(flow_obj, run_obj, state) -> None:
    """on_failure / on_crashed: 運営 hears about a run that did not finish, through the run's own routing."""
    params = run_obj.parameters or {}
    error = str(state.message or state.name)[:300]
    try:
        mapping = load_mapping(params.get("mappings") or None)
        template = mapping.templates["run_failed"]
        body = template.body.format(run=run_obj.name, error=error)
        sender(params.get("routes") or None)(mapping.alerts.ops_role, template.title, f"{flow_obj.name}: {body}",
                                             f"run-failed:{run_obj.id}")
    except Exception as exc:  # noqa: BLE001 - a hook that raises is lost in Prefect's logs: say it in the run's output
        print(f"run {run_obj.name} failed ({error}); telling 運営 failed too: {exc}")


def execute(kind: str, runner: Runner, *, workbook: str | None, spreadsheet: str | None, now: str | None,
            credentials: str | None, sheets_endpoint: str | None, mappings: str | None, routes: str | None,
            business_hours: str | None = None, max_lateness_minutes: float | None = None) -> RunSummary | None:
    """One flow run: the guards, the sources, `runner` with each step a task, the artifacts."""
    logger = get_run_logger()
    clock = parse_clock(now)
    reason = why_skip(clock, business_hours, max_lateness_minutes, flow_run.scheduled_start_time,
                      dt.datetime.now(dt.UTC))
    if reason:
        logger.info("Nothing done: %s", reason)
        create_markdown_artifact(key=f"{kind}-summary", markdown=f"# Skipped\n{reason}")
        return None
    mapping = load_mapping(mappings or None)
    book, link = open_book(workbook or None, spreadsheet or None, credentials=credentials or None,
                           endpoint=sheets_endpoint or None, mapping=mapping)
    summary = runner(book, mapping, clock, sender(routes or None), as_task)
    publish(summary, link, getattr(book, "tab_url", None), kind=kind)
    r = summary.report
    logger.info("%s: planned %s edits, %s new rows, %s removals; written %s cells, skipped %s; sent %s, failed %s",
                kind, len(summary.plan.edits), len(summary.plan.appends), len(summary.plan.deletes),
                r.cells_written, len(r.skipped), summary.sent, summary.failed)
    for line in summary.notes:
        logger.warning(line)
    return summary
