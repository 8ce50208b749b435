"""The digest flow: read → check → digest notices → write → tell, at the end of the day.

The same composition as a reconcile run (`flows.pipeline.run`) with the digest's plan in place of
the rules: it writes only its 通知 rows (通知ID `digest:<名前>:<date>`, so a rerun on the same day
sends nothing) and sends the outbox. Schedule it once a day before the quiet hours begin.
"""

from __future__ import annotations

import pandas as pd
from prefect import flow

from flows.pipeline import RunSummary, Step, in_process, run
from flows.reconcile import as_task
from tasks.mapping import Mapping, load_mapping
from tasks.notify import sender
from tasks.rules.digest import digest_plan
from tasks.tell import Send
from tasks.workbooks.port import Workbook


def run_digest(book: Workbook, mapping: Mapping, now: pd.Timestamp, send: Send, *, dry_run: bool = False,
               step: Step = in_process) -> RunSummary:
    return run(book, mapping, now, send, dry_run=dry_run, step=step, plan_with=digest_plan)


@flow(name="digest", log_prints=True)
def digest_flow(workbook: str, now: str | None = None, dry_run: bool = False, routes: str | None = None) -> RunSummary:
    from tasks.workbooks.local import LocalWorkbook

    stamp = pd.Timestamp(now).tz_convert("Asia/Tokyo") if now else pd.Timestamp.now(tz="Asia/Tokyo").floor("s")
    return run_digest(LocalWorkbook(workbook), load_mapping(), stamp, sender(routes), dry_run=dry_run, step=as_task)
