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
    b = bookings.data.loc[bookings.data["customer_id"].notna().to_numpy(), ["customer_id", "status", "start"]]
    unreadable = ~bookings.usable("status", "start").reindex(b.index)
    skip = set(b.loc[unreadable.to_numpy(), "customer_id"])
    groups = mapping.status_groups
    by = b.assign(
        one=1,
        visit=b["status"].isin(groups.held).astype(int),
        cancel=b["status"].isin(groups.cancelled).astype(int),
        late=b["status"].isin(groups.late_cancel).astype(int),
        visit_date=b["start"].where(b["status"].isin(groups.held)),
    ).groupby("customer_id", sort=False)  # reindexed to the customers below: no sort of 100k ids
    ids = customers.data.index[~customers.data.index.isin(skip)]
    sums = by[["one", "visit", "cancel", "late"]].sum().reindex(ids, fill_value=0)
    last = by["visit_date"].max().reindex(ids).astype(DATETIME)
    edits = []
    for field, column in (("booking_count", "one"), ("visit_count", "visit"), ("cancel_count", "cancel")):
        ints = pd.Series(sums[column].tolist(), index=ids, dtype=object)  # Python ints, as a cell reads
        edits += set_field(customers, field, ints, REASON)
    late = sums["late"].gt(0).map({True: "あり", False: "なし"}).astype(object)
    edits += set_field(customers, "late_cancel", late, REASON)
    day = last.dt.date.astype(object).where(last.notna(), None)  # the Tokyo date
    edits += set_field(customers, "last_visit_date", day, REASON)
    return Plan(edits=tuple(edits))
