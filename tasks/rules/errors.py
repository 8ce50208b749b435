"""エラー: the input's open problems, one row each; a fixed problem leaves the tab.

最終検出 moves at most once a day, so an unchanged workbook rerun on the same day writes nothing.
運営 is told once about each batch of new problems.
"""

from __future__ import annotations

import hashlib

import pandas as pd

from tasks.frames import Frames, Problem
from tasks.mapping import Mapping
from tasks.outbox import notice
from tasks.plan import Delete, Plan
from tasks.rules.common import new_row, set_field

REASON = "入力チェック"
MAX_LISTED = 10


def error_rows(frames: Frames, now: pd.Timestamp, mapping: Mapping, found: tuple[Problem, ...] = ()) -> Plan:
    table = frames["errors"]
    problems = {p.problem_id: p for p in [*frames.problems, *found]}
    current = pd.DataFrame(
        [(p.tab, p.cell, p.key, p.field, p.value, p.message) for p in problems.values()],
        columns=["tab", "cell", "key", "field", "value", "message"],
        index=pd.Index(list(problems), name="problem_id"),
        dtype=object,
    )
    known = current.index.isin(table.data.index)
    fresh = current[~known]
    appends = [
        new_row(table, pid, {**row, "first_seen": now, "last_seen": now}, REASON)
        for pid, row in zip(fresh.index, fresh.to_dict("records"), strict=True)
    ]
    edits = []
    for name in ("tab", "cell", "key", "field", "value", "message"):
        edits += set_field(table, name, current.loc[known, name], REASON)
    seen = table.data.loc[current.index[known], "last_seen"]
    stale = seen.isna() | (seen.dt.date != now.date())
    edits += set_field(table, "last_seen", pd.Series(now, index=seen.index[stale]), REASON)
    deletes = [Delete("errors", str(k), "修正済み") for k in table.data.index.difference(current.index)]
    plan = Plan(edits=tuple(edits), appends=tuple(appends), deletes=tuple(deletes))
    return plan | _tell_ops(frames, mapping, now, current[~known])


def _tell_ops(frames: Frames, mapping: Mapping, now: pd.Timestamp, new: pd.DataFrame) -> Plan:
    if new.empty:
        return Plan()
    ids = sorted(new.index)
    digest = hashlib.sha1("\n".join(ids).encode()).hexdigest()[:12]
    items = "\n".join(f"・{new.at[i, 'tab']} {new.at[i, 'cell']}: {new.at[i, 'message']}" for i in ids[:MAX_LISTED])
    if len(ids) > MAX_LISTED:
        items += f"\n…ほか{len(ids) - MAX_LISTED}件"
    row = notice(frames, mapping, f"input_errors:{digest}", mapping.alerts.ops_role, "input_errors", now,
                 count=len(ids), items=items)
    return Plan(appends=(row,)) if row else Plan()
