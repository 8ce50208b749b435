"""The digest flow: read → check → digest notices → write → tell, at the end of the day.

The same composition as a reconcile run (`flows.pipeline.run`) with the digest's plan in place of
the rules: it writes only its 通知 rows (通知ID `digest:<名前>:<date>`, so a rerun on the same day
sends nothing) and sends the outbox. Schedule it once a day before the quiet hours begin.
"""

from __future__ import annotations

import pandas as pd
from prefect import flow

from flows.pipeline import RunSummary, Step, in_process, run
from flows.runs import execute, tell_ops
from tasks.mapping import Mapping
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
    return execute(
        "digest", lambda book, mapping, clock, send, step: run_digest(book, mapping, clock, send, dry_run=dry_run, step=step),
        workbook=workbook, spreadsheet=spreadsheet, now=now, credentials=credentials, sheets_endpoint=sheets_endpoint,
        mappings=mappings, routes=routes, max_lateness_minutes=max_lateness_minutes)
