"""A workbook nearly full is told to 運営: past its limit every write is refused, run after run.

Google holds 10M cells a spreadsheet (every tab's whole grid) and an .xlsx tab 1,048,576 rows, and
変更履歴 grows by a row per changed cell. The run's output says so from 80% (the adapters' notes);
運営, who can make room, may never read it: a notice goes to them at 80%, 90% and 95%, once a
month each (通知ID `workbook_nearly_full:<unit>:<name>:<step>:<YYYY-MM>`).
"""

from __future__ import annotations

import pandas as pd

from tasks.frames import Frames
from tasks.mapping import Mapping
from tasks.outbox import notice
from tasks.plan import Plan

KIND = "workbook_nearly_full"
STEPS = (95, 90, 80)  # percent of the limit; the highest one reached is told
_WHAT = {  # unit -> (where, unit in words, what to do)
    "cells": ("スプレッドシート『{name}』", "セル",
              "変更履歴タブを別のスプレッドシートに移してください（手順: README『Connect your Google Sheet』）。"),
    "rows": ("タブ『{name}』", "行",
             "古い行を別のファイルに移してください（見出しの行は残してください。変更履歴はどのルールも読みません）。"),
}


def workbook_capacity(frames: Frames, now: pd.Timestamp, mapping: Mapping) -> Plan:
    appends = []
    for c in frames.capacity:
        percent = 100 * c.used // c.limit
        step = next((s for s in STEPS if percent >= s), None)
        if step is None or c.unit not in _WHAT:
            continue
        where, unit, action = _WHAT[c.unit]
        a = notice(frames, mapping, f"{KIND}:{c.unit}:{c.name}:{step}:{now:%Y-%m}", mapping.alerts.ops_role, KIND, now,
                   where=where.format(name=c.name), percent=percent, used=f"{c.used:,}", limit=f"{c.limit:,}",
                   unit=unit, action=action)
        if a is not None:
            appends.append(a)
    return Plan(appends=tuple(appends))
