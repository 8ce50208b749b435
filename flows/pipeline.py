"""One composition of a run's steps: read → check → reconcile → write → tell → report.

The same function runs in-process (the command line with no Prefect server: no 12-18 s of a
temporary server) and inside the Prefect flow, where `step` wraps each step as a task.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from tasks.check import check
from tasks.frames import Capacity, Frames, Problem
from tasks.mapping import Mapping
from tasks.normalize import DATETIME_BAD, normalize_value
from tasks.plan import Plan
from tasks.pure_step import pure_step, run_scope
from tasks.reconcile import reconcile
from tasks.tell import Delivery, attempt, bind, deliver, due, marks, recorded, with_attempts
from tasks.workbooks.port import ApplyReport, RunInfo, Workbook, apply_plan

Step = Callable[[Callable[..., Any]], Callable[..., Any]]


def in_process(fn: Callable[..., Any]) -> Callable[..., Any]:
    return fn


@dataclass
class RunSummary:
    run_id: str
    now: pd.Timestamp
    source: str
    dry_run: bool
    rows_read: dict[str, int]
    plan: Plan
    problems: list[Problem]
    report: ApplyReport = field(default_factory=ApplyReport)
    deliveries: list[Delivery] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # the workbook's own (a spreadsheet nearly full)

    @property
    def sent(self) -> int:
        return sum(len(d.notice_ids) for d in self.deliveries if d.ok)

    @property
    def failed(self) -> int:
        return sum(len(d.notice_ids) for d in self.deliveries if not d.ok)


def read_step(book: Workbook) -> dict[str, list[list[Any]]]:
    return book.read()


def check_step(raw: dict[str, list[list[Any]]], mapping: Mapping, capacity: tuple[Capacity, ...]) -> Frames:
    return check(raw, mapping, capacity)


def reconcile_step(frames: Frames, now: pd.Timestamp, mapping: Mapping, baseline: bool, plan_with=None) -> Plan:
    with pure_step():  # a planner that replaces reconcile (the digest, a merge) runs as reconcile does
        return (plan_with or reconcile)(frames, now, mapping, baseline=baseline)


def write_step(book: Workbook, frames: Frames, plan: Plan, mapping: Mapping, run: RunInfo) -> tuple[ApplyReport, pd.DataFrame]:
    """The plan and the attempt of every notice due, in one write: a notice is on the sheet before it is sent.

    Returns the report and the notices to send (those whose attempt the writer did not skip).
    """
    rows = due(frames, plan, run.now, mapping)
    record, rows = attempt(rows, run.now)
    report = apply_plan(book, with_attempts(plan, record), mapping, run)
    return report, recorded(rows, report.skipped, mapping)


def tell_step(book: Workbook, frames: Frames, rows: pd.DataFrame, mapping: Mapping, run: RunInfo, send) -> list[Delivery]:
    """Send, then mark each notice 送信済 or 失敗 (a second write, only when something was sent)."""
    if rows.empty:
        return []
    deliveries = deliver(rows, bind(send, frames))
    apply_plan(book, marks(rows, deliveries), mapping, run, structure=False, whole=False)  # sent is sent: mark it where we can
    return deliveries


def run(
    book: Workbook,
    mapping: Mapping,
    now: pd.Timestamp,
    send,
    *,
    dry_run: bool = False,
    baseline: bool = False,
    run_id: str | None = None,
    step: Step = in_process,
    plan_with: Callable[..., Plan] | None = None,
) -> RunSummary:
    """One run; `plan_with(frames, now, mapping, baseline=...)` replaces the reconcile (the merge flow)."""
    with run_scope():  # what the pure steps build stays frozen until the run ends (tasks/pure_step.py)
        info = RunInfo(run_id or f"{now:%Y%m%d-%H%M}-{uuid.uuid4().hex[:6]}", now)
        raw = step(read_step)(book)
        frames = step(check_step)(raw, mapping, tuple(book.capacity()))
        plan = step(reconcile_step)(frames, now, mapping, baseline, plan_with)
        summary = RunSummary(
            run_id=info.run_id, now=now, source=str(book), dry_run=dry_run,
            rows_read={t.spec.title: len(t.data) for t in frames.tables.values() if t.exists},
            plan=plan, problems=list({p.problem_id: p for p in [*frames.problems, *plan.problems]}.values()),
        )
        if not dry_run:
            summary.report, outgoing = step(write_step)(book, frames, plan, mapping, info)
            summary.deliveries = step(tell_step)(book, frames, outgoing, mapping, info, send)
        summary.notes = book.notes()
        return summary


def parse_clock(now: str | None, what: str = "now=") -> pd.Timestamp:
    """A run's clock, from a flow parameter or --now (a time without a zone is Tokyo's); none is the
    present second; a text that would be a guess is a ValueError naming `what`. A bare number is one:
    a cell's may be an Excel serial date, but nobody gives a clock as one (46000 would be 2025-12-09)."""
    if not now:
        return pd.Timestamp.now(tz="Asia/Tokyo").floor("s")
    stamp, problem = normalize_value("datetime", now)
    if problem or _is_number(now):
        raise ValueError(f"{what}{now!r}: {problem or DATETIME_BAD}")
    return stamp


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
