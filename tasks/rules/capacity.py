"""A workbook nearly full is told to 運営: past its limit every write is refused, run after run.

Google holds 10M cells a spreadsheet (every tab's whole grid) and an .xlsx tab 1,048,576 rows, and
変更履歴 grows by a row per changed cell. The run's output says so from 80% (the adapters' notes);
運営, who can have room made, may never read it: a notice goes to them at 80%, 90% and 95%, once
a month each (通知ID `workbook_nearly_full:<unit>:<name>:<step>:<YYYY-MM>`). The advice depends on
what fills it: a log that can move out, a log already on its own, or the team's own rows.
"""

from __future__ import annotations

import pandas as pd

from tasks.frames import NEARLY_FULL, Capacity, Frames
from tasks.mapping import CHANGELOG, Mapping
from tasks.outbox import notice
from tasks.plan import Plan

KIND = "workbook_nearly_full"
STEPS = (95, 90, round(100 * NEARLY_FULL))  # percent of the limit; the highest one reached is told
MOVE_LOG = ("管理者に、変更履歴タブを別のスプレッドシートに移すこと（README『Connect your Google Sheet』）と、"
            "各タブの右端・下端の使っていない列や行を削除することを依頼してください。")
NEW_LOG = "管理者に、変更履歴用の新しいスプレッドシートを用意して切り替えるよう依頼してください。"
TRIM = "各タブの右端・下端の使っていない列や行を削除するよう、管理者に依頼してください。"
OLD_LOG_ROWS = "変更履歴の古い行を別のファイルに移してください（見出しの行は残してください。変更履歴は読み返されません）。"
OLD_ROWS = "不要になった行を別のファイルに移すか、管理者に相談してください。"


def workbook_capacity(frames: Frames, now: pd.Timestamp, mapping: Mapping) -> Plan:
    appends = []
    for c in frames.capacity:
        step = next((s for s in STEPS if c.percent >= s), None)
        if step is None:
            continue
        where, unit, action = _words(c, mapping)
        a = notice(frames, mapping, f"{KIND}:{c.unit}:{c.name}:{step}:{now:%Y-%m}", mapping.alerts.ops_role, KIND, now,
                   where=where, percent=c.percent, used=f"{c.used:,}", limit=f"{c.limit:,}", unit=unit, action=action)
        if a is not None:
            appends.append(a)
    return Plan(appends=tuple(appends))


def _words(c: Capacity, mapping: Mapping) -> tuple[str, str, str]:
    """Where (as staff know it), the unit, and what to do."""
    log = mapping.tabs[CHANGELOG]
    if c.unit == "rows":
        return (f"ファイル『{c.label or c.name}』のタブ『{c.name}』", "行",
                OLD_LOG_ROWS if c.name == log.title else OLD_ROWS)
    holds = [t for t in mapping.tabs.values() if t.spreadsheet == c.name]
    action = TRIM if log not in holds else NEW_LOG if holds == [log] else MOVE_LOG
    return f"スプレッドシート『{c.label or c.name}』", "セル", action
