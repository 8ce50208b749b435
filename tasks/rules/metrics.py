"""Customer metrics over 予約: 予約回数, 来店回数, キャンセル回数, 直前キャンセル, 最終来店日."""

from __future__ import annotations

import pandas as pd

from tasks.frames import DATETIME, Frames
from tasks.mapping import Mapping
from tasks.plan import Plan
from tasks.rules.common import set_field

REASON = "予約から集計"


def customer_metrics(frames: Frames, now: pd.Timestamp, mapping: Mapping) -> Plan:
    """Counts per customer; a customer with an unreadable booking keeps the values it has."""
    del now
    customers = frames["customers"]
    bookings = frames["bookings"]
    b = bookings.data[bookings.data["customer_id"].notna()]
    unreadable = ~bookings.usable("status", "start").reindex(b.index)
    skip = set(b.loc[unreadable, "customer_id"])
    groups = mapping.status_groups
    by = b.assign(
        one=1,
        visit=b["status"].isin(groups.held).astype(int),
        cancel=b["status"].isin(groups.cancelled).astype(int),
        late=b["status"].isin(groups.late_cancel).astype(int),
        visit_date=b["start"].where(b["status"].isin(groups.held)),
    ).groupby("customer_id")
    ids = customers.data.index[~customers.data.index.isin(skip)]
    counts = pd.DataFrame(index=ids)
    counts["booking_count"] = by["one"].sum().reindex(ids, fill_value=0)
    counts["visit_count"] = by["visit"].sum().reindex(ids, fill_value=0)
    counts["cancel_count"] = by["cancel"].sum().reindex(ids, fill_value=0)
    late = by["late"].sum().reindex(ids, fill_value=0)
    counts["late_cancel"] = late.gt(0).map({True: "あり", False: "なし"})
    last = by["visit_date"].max().reindex(ids).astype(DATETIME)
    counts["last_visit_date"] = last.dt.date.astype(object).where(last.notna(), None)  # the Tokyo date
    edits = []
    for field in ("booking_count", "visit_count", "cancel_count"):
        edits += set_field(customers, field, counts[field].astype(object).map(int), REASON)
    edits += set_field(customers, "late_cancel", counts["late_cancel"].astype(object), REASON)
    edits += set_field(customers, "last_visit_date", counts["last_visit_date"], REASON)
    return Plan(edits=tuple(edits))
