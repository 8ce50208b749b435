"""What a person sees after a run: the plan as a diff (dry run) and a one-screen summary."""

from __future__ import annotations

from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table as RichTable

from flows.pipeline import RunSummary
from tasks.mapping import Mapping
from tasks.normalize import to_text
from tasks.plan import Plan


def shown(value: Any) -> str:
    if isinstance(value, pd.Timestamp) and value.tzinfo is not None:
        value = value.tz_convert("Asia/Tokyo").tz_localize(None)
    text = to_text(value).replace("\n", "⏎")
    return text if len(text) <= 60 else text[:57] + "…"


def diff_lines(plan: Plan, mapping: Mapping, limit: int | None = None) -> list[str]:
    lines = []
    for e in plan.edits:
        spec = mapping.tabs[e.tab]
        lines.append(f"~ {spec.title} {e.key} {spec.column(e.field).header}: "
                     f"{shown(e.old)!r} → {shown(e.new)!r}  ({e.reason})")
    for a in plan.appends:
        spec = mapping.tabs[a.tab]
        cells = ", ".join(f"{spec.column(f).header}={shown(v)}" for f, v in a.values if v not in (None, ""))
        lines.append(f"+ {spec.title} {a.key}: {cells}  ({a.reason})")
    for d in plan.deletes:
        lines.append(f"- {mapping.tabs[d.tab].title} {d.key}  ({d.reason})")
    return lines if limit is None else lines[:limit]


def print_summary(summary: RunSummary, mapping: Mapping, console: Console, *, show_diff: bool) -> None:
    if show_diff:
        lines = diff_lines(summary.plan, mapping)
        console.print(f"[bold]Plan[/] ({len(lines)} changes; nothing was written)")
        for line in lines:
            console.print(line, markup=False, highlight=False)
    t = RichTable(title=f"run {summary.run_id} · now {summary.now:%Y-%m-%d %H:%M} JST", show_header=False)
    t.add_row("source", summary.source)
    t.add_row("rows read", ", ".join(f"{k} {v}" for k, v in summary.rows_read.items()))
    t.add_row("planned", f"{len(summary.plan.edits)} cell edits, {len(summary.plan.appends)} new rows, "
                         f"{len(summary.plan.deletes)} row removals")
    if not summary.dry_run:
        r = summary.report
        t.add_row("written", f"{r.cells_written} cells, {r.rows_added} rows added, {r.rows_deleted} rows removed"
                             + (f", {len(r.structure)} tabs/columns created" if r.structure else ""))
        t.add_row("skipped", f"{len(r.skipped)} (changed by a person since the read, or row gone)")
        t.add_row("notifications", f"{summary.sent} sent, {summary.failed} failed")
    where = "the エラー tab" + ("; new ones are the + エラー lines above, not written yet" if show_diff else "")
    t.add_row("input problems", f"{len(summary.problems)} (see {where})")
    console.print(t)
    for line in summary.plan.log:  # what a rule chose not to do yet, and why (a merge waiting for staff)
        console.print(f"note: {line}", markup=False, highlight=False)
    for line in summary.notes:  # the workbook's own: a spreadsheet nearly full
        console.print(f"warning: {line}", markup=False, highlight=False, style="bold yellow")
