"""The digest flow: read → check → digest notices → write → tell, at the end of the day.

The same composition as a reconcile run (`flows.pipeline.run`) with the digest's plan in place of
the rules: it writes only its 通知 rows (通知ID `digest:<名前>:<date>`, so a rerun on the same day
sends nothing) and sends the outbox. Schedule it once a day before the quiet hours begin.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from flows.pipeline import RunSummary, Step, in_process, run
from flows.reconcile import as_task, parse_clock, publish, tell_ops, why_skip
from flows.sources import open_book, sender
from tasks.mapping import Mapping, load_mapping
from tasks.rules.digest import digest_plan
from tasks.tell import Send
from tasks.workbooks.port import Workbook


def run_digest(book: Workbook, mapping: Mapping, now: pd.Timestamp, send: Send, *, dry_run: bool = False,
               step: Step = in_process) -> RunSummary:
    return run(book, mapping, now, send, dry_run=dry_run, step=step, plan_with=digest_plan)


@flow(name="digest", log_prints=True, on_failure=[tell_ops], on_crashed=[tell_ops])
def digest_flow(
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
    """The sources as for `reconcile_flow`; `routes`: the routing file (default `$SALESOPS_ROUTES`).
    A scheduled run that starts too late does nothing: the next day's digest will say it all."""
    logger = get_run_logger()
    clock = parse_clock(now)
    reason = why_skip(clock, None, max_lateness_minutes, flow_run.scheduled_start_time, dt.datetime.now(dt.UTC))
    if reason:
        logger.info("Nothing done: %s", reason)
        create_markdown_artifact(key="digest-summary", markdown=f"# Skipped\n{reason}")
        return None
    mapping = load_mapping(mappings or None)
    book, link = open_book(workbook or None, spreadsheet or None, credentials=credentials or None,
                        endpoint=sheets_endpoint or None, mapping=mapping)
    summary = run_digest(book, mapping, clock, sender(routes or None), dry_run=dry_run, step=as_task)
    publish(summary, link, getattr(book, "tab_url", None), kind="digest")
    logger.info("digest: %s notices planned, %s sent, %s failed", len(summary.plan.appends), summary.sent, summary.failed)
    return summary
