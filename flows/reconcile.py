"""The reconcile flow on Prefect: the same composition as the command line, each step a task.

Scheduled runs that start late or outside business hours do nothing and say so; every run that
works publishes a summary and a table of its changes as artifacts; a failed or crashed run tells
運営 through the notification routing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from flows.pipeline import RunSummary, run
from flows.report import shown
from flows.sources import open_book, sender
from tasks.mapping import load_mapping
from tasks.tell import console

MAX_TABLE_ROWS = 200


def as_task(fn):
    """A step as a task; no input hashing for a cache key (a workbook holding a key cannot be hashed)."""
    return task(fn, name=fn.__name__.removesuffix("_step"), cache_policy=NO_CACHE)


def parse_clock(now: str | None) -> pd.Timestamp:
    if now:  # a time without a zone is Tokyo's
        stamp = pd.Timestamp(now)
        return stamp.tz_localize("Asia/Tokyo") if stamp.tzinfo is None else stamp.tz_convert("Asia/Tokyo")
    return pd.Timestamp.now(tz="Asia/Tokyo").floor("s")


def why_skip(clock: pd.Timestamp, business_hours: str | None, max_lateness_minutes: float | None,
             scheduled: dt.datetime | None, wall: dt.datetime) -> str | None:
    """A reason to do nothing, or None. Only scheduled runs carry these parameters."""
    if max_lateness_minutes is not None and scheduled is not None:
        late = (wall - scheduled).total_seconds() / 60
        if late > max_lateness_minutes:
            return f"late by {late:.0f} min (limit {max_lateness_minutes:g}): a newer run will do the work"
    if business_hours:
        start, end = business_hours.split("-")
        if not start <= clock.tz_convert("Asia/Tokyo").strftime("%H:%M") < end:
            return f"outside business hours {business_hours} (Asia/Tokyo)"
    return None


def publish(summary: RunSummary, source_link: str, tab_link: Callable[[str], str] | None = None,
            kind: str = "reconcile") -> None:
    """A markdown summary and a capped table of the changes, each linked to its tab (or the sheet)."""
    r = summary.report
    md = "\n".join([
        f"# {kind.capitalize()} {summary.run_id}",
        f"- source: {source_link}",
        f"- now: {summary.now:%Y-%m-%d %H:%M} JST{' (dry run)' if summary.dry_run else ''}",
        f"- read: {', '.join(f'{k} {v}' for k, v in summary.rows_read.items())}",
        f"- planned: {len(summary.plan.edits)} edits, {len(summary.plan.appends)} new rows, {len(summary.plan.deletes)} removals",
        f"- written: {r.cells_written} cells, {r.rows_added} rows added, {r.rows_deleted} rows removed",
        f"- skipped (changed by a person since the read): {len(r.skipped)}",
        f"- input problems: {len(summary.problems)}",
        f"- notifications: {summary.sent} sent, {summary.failed} failed",
    ])
    create_markdown_artifact(key=f"{kind}-summary", markdown=md, description="What this run read, wrote and sent")
    rows = [
        {"tab": tab, "key": key, "field": field, "old": shown(old), "new": shown(new), "reason": reason,
         "sheet": tab_link(tab) if tab_link else source_link}
        for tab, key, field, old, new, reason in r.changes[:MAX_TABLE_ROWS]
    ]
    if rows:
        create_table_artifact(key=f"{kind}-changes", table=rows,
                              description=f"First {len(rows)} of {len(r.changes)} changes")


def tell_ops(flow_obj, run_obj, state) -> None:
    """on_failure / on_crashed: 運営 hears about a run that did not finish."""
    from tasks.mapping import load_mapping as _load

    mapping = _load()
    template = mapping.templates["run_failed"]
    body = template.body.format(run=run_obj.name, error=str(state.message or state.name)[:300])
    args = (mapping.alerts.ops_role, template.title, f"{flow_obj.name}: {body}", f"run-failed:{run_obj.id}")
    try:
        sender()(*args)
    except Exception as exc:  # noqa: BLE001 - a hook that raises is lost in Prefect's logs: fall back to the run's output
        print(f"failure notice to {args[0]} could not be routed ({exc}); it reads:")
        console(*args)


@flow(name="reconcile", log_prints=True, on_failure=[tell_ops], on_crashed=[tell_ops])
def reconcile_flow(
    workbook: str | None = None,
    spreadsheet: str | None = None,
    dry_run: bool = False,
    now: str | None = None,
    baseline: bool = False,
    business_hours: str | None = None,
    max_lateness_minutes: float | None = None,
    credentials: str | None = None,
    sheets_endpoint: str | None = None,
    mappings: str | None = None,
    routes: str | None = None,
) -> RunSummary | None:
    """`spreadsheet`: an id, or `ID,links=ID2`; `credentials`: a key's source (a file, `env:VAR`,
    `prefect-secret:BLOCK`; default `$SALESOPS_GOOGLE_CREDENTIALS`), never the key itself."""
    logger = get_run_logger()
    clock = parse_clock(now)
    reason = why_skip(clock, business_hours, max_lateness_minutes, flow_run.scheduled_start_time,
                      dt.datetime.now(dt.UTC))
    if reason:
        logger.info("Nothing done: %s", reason)
        create_markdown_artifact(key="reconcile-summary", markdown=f"# Skipped\n{reason}")
        return None
    mapping = load_mapping(mappings or None)
    book, link = open_book(workbook or None, spreadsheet or None, credentials=credentials or None,
                           endpoint=sheets_endpoint or None, mapping=mapping)
    summary = run(book, mapping, clock, sender(routes or None), dry_run=dry_run, baseline=baseline, step=as_task)
    publish(summary, link, getattr(book, "tab_url", None))
    logger.info("written %s cells, skipped %s, sent %s", summary.report.cells_written,
                len(summary.report.skipped), summary.sent)
    return summary
