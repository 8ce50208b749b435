"""The reconcile flow on Prefect: the same composition as the command line, each step a task."""

from __future__ import annotations

from prefect import flow

from flows.pipeline import RunSummary, run
from flows.runs import execute, tell_ops


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
    return execute(
        "reconcile",
        lambda book, mapping, clock, send, step: run(book, mapping, clock, send, dry_run=dry_run, baseline=baseline,
                                                     step=step),
        workbook=workbook, spreadsheet=spreadsheet, now=now, credentials=credentials, sheets_endpoint=sheets_endpoint,
        mappings=mappings, routes=routes, business_hours=business_hours, max_lateness_minutes=max_lateness_minutes)
