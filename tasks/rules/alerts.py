"""アラート: a booking's open problems, in its アラート cell and told once to the right person.

The nine alerts of CONTRACT.md ("Alerts on a booking"); each text starts with the mapping's words
(`alerts:` in mappings/rules.yaml) and may carry a detail. The cell holds the alerts that hold now,
`; `-joined in the contract's order, blank when none: an alert that no longer holds leaves it.
Each alert is told once (通知ID `alert:<予約ID>:<code>`): to the booking's salesperson (運営 when
the booking has none); a blacklisted customer's booking (urgent) to 運営; a caution person to
nobody. A booking whose 開始日時 or ステータス cannot be read keeps its cell as it is.

How the two alerts that depend on memory hold, and what the pipeline remembers:
- 前回開始日時 / 前回担当 are filled on first sight (neither a reschedule nor a change).
- Alert 1 (rescheduled while アクション実行 is not 実行する) holds until staff set 実行する (or
  move the booking back, or it stops being active): 前回開始日時 does not advance while it holds.
  Each new time is a new alert, told again.
- Alert 2 (salesperson changed) holds until the meeting starts (after that the Zoom link no
  longer matters) or the booking stops being active: 前回担当 does not advance while it holds,
  so the new salesperson sees it in the cell until then and is told once per new salesperson.
- Alert 9 counts from the moment the cancel was first seen: when the booking's reminders became
  取消 (リマインド 更新日時); a booking without any (first seen already cancelled) counts from
  its 開始日時, a cancel never being later than the meeting.

Alerts 7–9 look back at most `lookback_days` (from the end, the end + 24 h, the end of the cancel
day), in every run, so that a baseline run and the next one agree.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks.frames import Frames
from tasks.mapping import Mapping
from tasks.outbox import notice
from tasks.plan import Append, Plan
from tasks.rules.common import set_field, shown_times
from tasks.rules.operations import MESSAGE, cancel_titles, customer_names, message_targets
from tasks.rules.reminders import known_bookings, reminder_state

COLUMNS = ["booking_id", "order", "code", "text", "recipient", "template"]


def booking_alerts(frames: Frames, now: pd.Timestamp, mapping: Mapping) -> Plan:
    """The rule: アラート cells and one notification per alert."""
    table = frames["bookings"]
    b, readable = _bookings(frames, mapping)
    found = alert_rows(frames, now, mapping, (b, readable))
    desired = _joined(found).reindex(b.index[readable]).astype(object)
    desired = desired.where(desired.notna(), None)
    edits = set_field(table, "alerts", desired, "アラート")
    appends: list[Append] = []
    told = found[found["recipient"].notna()].sort_values(["booking_id", "order", "code"])
    # the booking's columns looked up once for all alerts (tens of thousands on a first run), not per row
    bids = told["booking_id"].tolist()
    cids = b["customer_id"].reindex(bids).tolist()
    starts = shown_times(b["start"].reindex(bids))
    cells = [a or k for a, k in zip(table.a1_many(bids, "alerts"), table.a1_many(bids, "booking_id"), strict=True)]
    names = customer_names(frames) if bids else {}
    for row, bid, cid, start, cell in zip(told.itertuples(index=False), bids, cids, starts, cells, strict=True):
        item = notice(
            frames, mapping, f"alert:{bid}:{row.code}", row.recipient, row.template, now,
            booking_id=bid, customer_id=cid, customer_name=names.get(cid, "") if isinstance(cid, str) else "",
            start=start, alert=row.text, cell=cell,
        )
        if item is not None:
            appends.append(item)
    return Plan(edits=tuple(edits), appends=tuple(appends))


def _joined(found: pd.DataFrame) -> pd.Series:
    """Each booking's alert texts in their order, joined by "; ": a dict of lists, where a groupby's
    join runs Python per group over pandas slices (tens of thousands of bookings on a first run)."""
    ordered = found.sort_values(["order", "code"], kind="stable")
    texts: dict[str, list[str]] = {}
    for bid, text in zip(ordered["booking_id"].tolist(), ordered["text"].tolist(), strict=True):
        texts.setdefault(bid, []).append(text)
    return pd.Series({bid: "; ".join(t) for bid, t in texts.items()}, dtype=object)


def remembered_start_and_salesperson(frames: Frames, now: pd.Timestamp, mapping: Mapping) -> Plan:
    """前回開始日時 / 前回担当: what the next run compares with; held while alert 1 / alert 2 hold."""
    table = frames["bookings"]
    b, readable = _bookings(frames, mapping)
    rescheduled, reassigned = _changes(b, now, mapping)
    start = b.loc[readable & ~rescheduled, "start"]
    salesperson = b.loc[readable & ~reassigned & b["salesperson"].notna(), "salesperson"]
    edits = set_field(table, "seen_start", start, "前回開始日時 = 開始日時")
    edits += set_field(table, "seen_salesperson", salesperson, "前回担当 = 営業担当")
    return Plan(edits=tuple(edits))


def _bookings(frames: Frames, mapping: Mapping) -> tuple[pd.DataFrame, pd.Series]:
    """The bookings in 予約 with their customer's memos, and which rows can be read for alerts
    (computed once a run: both rules of this module start from it)."""
    return frames.derived("alert_bookings", None, mapping, lambda: _alert_bookings(frames, mapping))


def _alert_bookings(frames: Frames, mapping: Mapping) -> tuple[pd.DataFrame, pd.Series]:
    facts = known_bookings(frames, mapping)
    b = facts[~facts["deleted"].astype(bool)].copy()
    for name in ("active", "held", "cancelled", "start_ok", "thanks_sent"):
        b[name] = b[name].fillna(False).astype(bool)
    customers = frames["customers"].data
    b["blacklist_memo"] = _memos(customers["blacklist_memo"])[customers.index.get_indexer(b["customer_id"])]
    readable = b["start_ok"] & frames["bookings"].usable("status").reindex(b.index, fill_value=False)
    return b, readable


def _changes(b: pd.DataFrame, now: pd.Timestamp, mapping: Mapping) -> tuple[pd.Series, pd.Series]:
    """Alert 1 and alert 2 as masks: they are what holds 前回開始日時 and 前回担当."""
    done_word = mapping.alerts.run_actions_done
    active = b["active"] & b["start_ok"]
    rescheduled = active & b["seen_start"].notna() & b["start"].ne(b["seen_start"]) & b["run_actions"].ne(done_word)
    reassigned = (
        active & (b["start"] > now) & b["seen_salesperson"].notna() & b["salesperson"].notna()
        & b["salesperson"].ne(b["seen_salesperson"])
    )
    return rescheduled, reassigned


def alert_rows(
    frames: Frames, now: pd.Timestamp, mapping: Mapping, bookings: tuple[pd.DataFrame, pd.Series] | None = None
) -> pd.DataFrame:
    """Every alert that holds now: one row each (booking, order, code, text, recipient, template)."""
    words = mapping.alerts
    b, readable = bookings or _bookings(frames, mapping)
    b = b[readable]
    ops = words.ops_role
    owner = b["salesperson"].where(b["salesperson"].notna(), ops)
    since = now - pd.Timedelta(days=mapping.lookback_days)
    active = b["active"]
    parts: list[pd.DataFrame] = []

    def add(mask: pd.Series, order: int, code, text, recipient, template: str = "alert") -> None:
        if not mask.any():
            return
        idx = b.index[mask.to_numpy()]
        part = pd.DataFrame(index=idx)
        for name, value in (("code", code), ("text", text), ("recipient", recipient)):
            part[name] = value.reindex(idx) if isinstance(value, pd.Series) else value
        part["order"], part["template"] = order, template
        parts.append(part.rename_axis("booking_id").reset_index())

    rescheduled, reassigned = _changes(b, now, mapping)
    moved = b[rescheduled.to_numpy()]  # formatted for these rows only: strftime costs ~2 µs a row
    add(rescheduled, 1, "reschedule:" + moved["start"].dt.strftime("%Y%m%d%H%M"),
        words.reschedule_without_actions + "（前回 " + moved["seen_start"].dt.strftime("%Y/%m/%d %H:%M") + "）", owner)
    handed = b[reassigned.to_numpy()]  # the same: a steady run's 300k texts took 0.8 s for a few rows
    add(reassigned, 2, "salesperson:" + handed["salesperson"].fillna(""),
        words.salesperson_changed + "（前回 " + handed["seen_salesperson"].fillna("") + "）", owner)
    pairs = _overlaps(b[(active & b["salesperson"].notna()).to_numpy()])
    if not pairs.empty:
        parts.append(pd.DataFrame({
            "booking_id": pairs["booking_id"], "order": 3, "code": "overlap:" + pairs["other"],
            "text": [words.overlap.format(other=o) for o in pairs["other"]],
            "recipient": pairs["booking_id"].map(owner).to_numpy(), "template": "alert",
        }))
    add(active & b["blacklist_memo"].notna(), 4, "blacklisted", words.blacklisted, ops, "blacklisted")
    caution = b["customer_id"].map(caution_texts(frames, mapping))  # one text, which the digest leaves out
    add(active & caution.notna(), 5, "caution", caution, None)
    add(active & _second_meeting_elsewhere(b, words), 6, "second_meeting", words.second_meeting_other_salesperson, owner)
    add(active & (b["end"] < now) & (b["end"] >= since), 7, "no_outcome", words.no_outcome, owner)
    thanks_due = b["end"] + pd.Timedelta(hours=words.thanks_line_hours)
    thanks_read = frames["bookings"].usable("thanks_sent").reindex(b.index, fill_value=False)  # unreadable: neither
    add(~b["cancelled"] & b["outcome"].isin(words.thanks_outcomes) & ~b["thanks_sent"] & thanks_read & (thanks_due <= now)
        & (thanks_due >= since), 8, "no_thanks", words.no_thanks_line, owner)
    add(_no_rebooking(frames, now, mapping, b, since), 9, "no_rebooking", words.no_rebooking, owner)
    if not parts:
        return pd.DataFrame(columns=COLUMNS)
    out = pd.concat(parts, ignore_index=True)[COLUMNS]
    out["recipient"] = out["recipient"].astype(object).where(out["recipient"].notna(), None)
    return out


def _overlaps(b: pd.DataFrame) -> pd.DataFrame:
    """Pairs of one salesperson's bookings whose [start, end) intersect, both ways.

    Sorted by salesperson and start, every meeting has the same length, so a booking overlaps the
    k-th one before it only if it overlaps the (k-1)-th: compare shifted columns until none does.
    """
    a = b.sort_values(["salesperson", "start"], kind="stable")
    ids = a.index.to_numpy()
    who = a["salesperson"].to_numpy()
    start = a["start"].to_numpy(dtype="datetime64[ns]")
    end = a["end"].to_numpy(dtype="datetime64[ns]")
    firsts, seconds = [], []
    for k in range(1, len(a)):
        hit = (who[k:] == who[:-k]) & (start[k:] < end[:-k]) & (start[:-k] < end[k:])
        if not hit.any():
            break
        firsts.append(ids[:-k][hit])
        seconds.append(ids[k:][hit])
    if not firsts:
        return pd.DataFrame(columns=["booking_id", "other"])
    one = pd.Index([x for part in firsts for x in part])
    two = pd.Index([x for part in seconds for x in part])
    pairs = pd.DataFrame({"booking_id": [*one, *two], "other": [*two, *one]})
    return pairs.sort_values(["booking_id", "other"], ignore_index=True)


def _second_meeting_elsewhere(b: pd.DataFrame, words) -> pd.Series:
    """Alert 6: a 2回目面談 whose salesperson differs from the customer's latest held 個別相談's."""
    held_first = (b["held"] & (b["menu"] == words.first_meeting_menu) & b["salesperson"].notna()).to_numpy()
    first = b.loc[held_first, ["customer_id", "start", "salesperson"]].sort_index()  # a tie of starts: by 予約ID
    by_customer = first.sort_values("start", kind="stable").groupby("customer_id", sort=False)["salesperson"].last()
    second = (b["menu"] == words.second_meeting_menu).to_numpy()
    rows = b.loc[second, ["customer_id", "salesperson"]]  # looked up for the 2回目面談 rows only
    earlier = rows["customer_id"].map(by_customer)
    out = np.zeros(len(b), dtype=bool)
    out[second] = (earlier.notna() & rows["salesperson"].ne(earlier)).to_numpy()
    return pd.Series(out, index=b.index)


def _cancel_messages_listed(frames: Frames, mapping: Mapping) -> pd.Series:
    """Booking id -> when its first cancel message (L-Step操作 メッセージ送信) was listed."""
    ops = frames["operations"].data
    targets = message_targets(ops.index[ops["action"].eq(MESSAGE).to_numpy()], cancel_titles(mapping))
    listed = pd.to_datetime(ops["created_at"].reindex(targets.index), errors="coerce")
    return listed.groupby(targets["booking_id"].to_numpy()).min().dropna()


def _no_rebooking(frames: Frames, now: pd.Timestamp, mapping: Mapping, b: pd.DataFrame, since) -> pd.Series:
    """Alert 9: cancelled wanting a new date, and the day the cancel was seen ended with no rebooking."""
    wants = b["cancelled"] & (b["cancel_kind"] == mapping.alerts.rebooking_cancel_kind) & b["customer_id"].notna()
    out = pd.Series(False, index=b.index)
    if not wants.any():
        return out
    seen = reminder_state(frames, now, mapping).cancelled_at()
    cases = b.loc[wants, ["customer_id", "start"]].copy()
    # a booking first seen already cancelled has no reminders to date it: the cancel message listed
    # when it was first seen does (or this run, the first sight), but never later than its start (a
    # team's history, or a meeting that never was, counts from the meeting)
    first = _cancel_messages_listed(frames, mapping).reindex(cases.index).astype(cases["start"].dtype).fillna(now)
    first = first.where(first <= cases["start"], cases["start"])
    cases["seen"] = seen.reindex(cases.index).astype(cases["start"].dtype).fillna(first)
    deadline = cases["seen"].dt.normalize() + pd.Timedelta(days=1)
    cases = cases[((deadline <= now) & (deadline >= since)).to_numpy()]
    if cases.empty:
        return out
    facts = known_bookings(frames, mapping)
    live = (facts["active"].astype(bool) | facts["held"].astype(bool)) & facts["start_ok"].astype(bool)
    others = facts.loc[live.to_numpy(), ["customer_id", "start"]]
    pairs = cases.reset_index(names="booking_id").merge(
        others.reset_index(names="other"), on="customer_id", suffixes=("", "_other"))
    rebooked = pairs[(pairs["other"] != pairs["booking_id"]) & (pairs["start_other"] > pairs["seen"])]["booking_id"]
    out[cases.index[~cases.index.isin(rebooked)]] = True
    return out


def caution_texts(frames: Frames, mapping: Mapping) -> pd.Series:
    """Customer id -> alert 5's text on their bookings (a caution person), as the rule writes it."""
    customers = frames["customers"].data
    memos = pd.Series(_memos(customers["caution_memo"])[:-1], index=customers.index, dtype=object).dropna()
    return memos.map(lambda m: mapping.alerts.caution.format(memo=m))


def _memos(values: pd.Series) -> np.ndarray:
    """Each memo with its whitespace collapsed (None where blank), worked out once per distinct
    memo; one None more at the end, for position -1 (a booking whose customer is not known)."""
    cells = values.tolist()
    distinct = {m: " ".join(m.split()) or None for m in {c for c in cells if type(c) is str}}
    return np.array([distinct.get(c) if type(c) is str else None for c in cells] + [None], dtype=object)
