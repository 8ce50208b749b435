"""Booking facts every rule shares, and the rule 終了日時 (前回開始日時/前回担当: tasks/rules/alerts.py).

One place says what "active", "held" and "cancelled" mean, and that a booking row that vanished
from 予約 (the manual cancels by deleting) counts as cancelled.
"""

from __future__ import annotations

import pandas as pd

from tasks.frames import Frames
from tasks.mapping import Mapping
from tasks.plan import Plan
from tasks.rules.common import set_field

PLANNED = "予定"  # a リマインド step not sent yet (tasks.rules.reminders, which reads this module)


def booking_facts(frames: Frames, mapping: Mapping) -> pd.DataFrame:
    """One row per booking id, those in 予約 and those only the pipeline remembers (deleted).

    `start_ok` is False where 開始日時 could not be read: rules that need the time skip the row.
    Computed once per frames (four rules use it); callers must not change it.
    """
    return frames.derived("booking_facts", None, mapping, lambda: _booking_facts(frames, mapping))


def _booking_facts(frames: Frames, mapping: Mapping) -> pd.DataFrame:
    table = frames["bookings"]
    b = table.data
    groups = mapping.status_groups
    facts = pd.DataFrame(index=b.index)
    for name in ("customer_id", "salesperson", "menu", "status", "outcome", "run_actions", "cancel_kind",
                 "thanks_sent", "seen_start", "seen_salesperson", "start"):
        facts[name] = b[name]
    facts["end"] = b["start"] + pd.Timedelta(minutes=mapping.meeting_minutes)
    facts["active"] = b["status"].isin(groups.active)
    facts["held"] = b["status"].isin(groups.held)
    facts["cancelled"] = b["status"].isin(groups.cancelled)
    facts["deleted"] = False
    facts["start_ok"] = table.usable("start") & b["start"].notna()
    gone = _deleted(frames)
    if not gone.empty:
        facts = pd.concat([facts, gone])
    facts.index.name = "booking_id"
    return facts  # in the sheet's order, then the deleted: no rule reads an order (tests/test_plan.py shuffles)


def _deleted(frames: Frames) -> pd.DataFrame:
    """Bookings the pipeline has seen (they have reminders) whose row left 予約."""
    r = frames["reminders"].data
    gone_rows = (r["booking_id"].notna() & ~r["booking_id"].isin(frames["bookings"].data.index)).to_numpy()
    # its last word: a pending step (it followed the booking's 営業担当 and お客様番号 until the row
    # left; a sent one keeps who it went to), else the step updated last, ties by リマインドID; not the
    # first row, which the tab's order would decide
    rows = r.loc[gone_rows, ["booking_id", "customer_id", "salesperson", "updated_at"]]
    rows = rows.assign(rid=rows.index, pending=r.loc[gone_rows, "state"].eq(PLANNED))
    gone = (rows.sort_values(["pending", "updated_at", "rid"], na_position="first")
            .drop_duplicates("booking_id", keep="last").set_index("booking_id"))
    out = pd.DataFrame(index=gone.index)
    out["customer_id"] = gone["customer_id"]
    out["salesperson"] = gone["salesperson"]
    out["cancelled"] = True
    out["deleted"] = True
    out["active"] = False
    out["held"] = False
    out["start_ok"] = False
    return out


def end_times(frames: Frames, now: pd.Timestamp, mapping: Mapping) -> Plan:
    """終了日時 is always 開始日時 + the meeting length."""
    del now
    table = frames["bookings"]
    ok = table.usable("start") & table.data["start"].notna()
    desired = table.data.loc[ok, "start"] + pd.Timedelta(minutes=mapping.meeting_minutes)
    return Plan(edits=tuple(set_field(table, "end", desired, "終了日時 = 開始日時 + 面談時間")))
