"""リマインド: what the LINE tool will send for each booking, kept in step with 予約.

The LINE tool sends a booking's reminders on its own at their time; this tab is the pipeline's
account of them (CONTRACT.md, リマインド). The series and steps come from the mappings
(`reminders:`), so a team adds a step or a series without code. One run gives the final state, in
this order, each step reasoning on the state the previous one left:

1. A 予定 step whose 送信予定日時 has passed becomes 送信済: the LINE tool has sent it. Nothing
   else looks at the row before this.
2. A 予定 step takes its booking's current 営業担当 and お客様番号 (so the work below reaches the
   right person, and a booking moved to another customer is cancelled for that customer).
3. A cancelled booking (a cancelled status, or a row gone from 予約) has every 予定 step 取消
   (理由 キャンセル), and each such step is listed once in L-Step操作 as リマインド削除 with 期限 =
   its send time, since the LINE tool is where it must really be deleted.
4. An active booking's 予定 steps that are timed from the start follow 開始日時 (a reschedule:
   理由 日程変更); one whose new time is already past becomes スキップ, and a スキップ one whose
   new time is to come is 予定 again (the LINE tool times them from the booking). Sent and
   cancelled steps never move, and a reschedule never cancels anything: the protected series
   (個別相談設定中, which carries the Zoom link) keeps every pending step. A 即時 (first-seen)
   step never moves, so the greeting is never planned twice.
5. An active booking gets every step it does not have yet (a new booking: all of them); a step
   whose time is already past is スキップ. A blacklisted customer gets nothing planned; a booking
   whose 開始日時, 予約ID, お客様番号 or メニュー cannot be read is left alone.

取消 is final, but for a cancel undone before its deletion was done: a booking that
comes back from a cancel gets back the steps still to come whose リマインド削除 is open (the LINE
tool still holds them; 理由 キャンセルが取り消されたため 予定, then 4. moves them with the start),
and nothing else is re-planned (the LINE tool deleted the rest; a rebooking is a new booking).
Times are compared half-open: a step is past when its time is before `now`, so the greeting,
planned at `now`, is 予定 until the next run after it.

Plus the chase: an L-Step操作 (any rule's) not ticked 対応済 an hour (mapping) before its 期限 is
one urgent notification to its salesperson and to 運営, looking back at most `lookback_days`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tasks.frames import DATETIME, Frames
from tasks.mapping import Mapping, Step
from tasks.outbox import notice
from tasks.plan import Append, Plan
from tasks.rules.bookings import PLANNED, booking_facts
from tasks.rules.common import new_rows, overlaid, set_field, shown_time
from tasks.rules.operations import DELETE, NewOperations, current_owners, nth_id, open_rows, withdrawn

SENT, CANCELLED, SKIPPED = "送信済", "取消", "スキップ"
WHY_NEW = "新規予約"
WHY_PAST = "過去のため スキップ"
WHY_SENT = "送信時刻を過ぎたため 送信済"
WHY_CANCEL = "キャンセル"
WHY_MOVED = "日程変更"
WHY_MOVED_PAST = "日程変更: 過去のため スキップ"
WHY_BACK = "キャンセルが取り消されたため 予定"
BACK_GROUP = "reminder-back:"  # + リマインドID: the step back and its deletion closed, both or neither
FIELDS = ["booking_id", "customer_id", "salesperson", "series", "step", "send_at", "state", "reason", "updated_at"]
WRITTEN = ["customer_id", "salesperson", "send_at", "state", "reason", "updated_at"]


def reminder_id(booking_ids: pd.Index, series: str, step: str) -> pd.Index:
    return booking_ids + f":{series}:{step}"


def delete_operation_id(rid: str, n: int = 1) -> str:
    """The n-th cancel's deletion of a step."""
    return nth_id(f"{DELETE}:{rid}", n)


@dataclass(frozen=True)
class ReminderState:
    """Every リマインド row as it is after this run: `rows` (existing and new, FIELDS columns),
    `changed` (existing rows that change) and `new` (rows to add)."""

    rows: pd.DataFrame
    changed: pd.Index
    new: pd.Index
    back: pd.Index  # cancelled steps pending again (3b), each one group with its closed deletion

    def cancelled_at(self) -> pd.Series:
        """When each booking's cancel was first seen: the time its steps became 取消 (キャンセル)."""
        r = self.rows
        gone = r[((r["state"] == CANCELLED) & (r["reason"] == WHY_CANCEL) & r["updated_at"].notna()).to_numpy()]
        return gone.groupby("booking_id")["updated_at"].min()


def reminders(frames: Frames, now: pd.Timestamp, mapping: Mapping) -> Plan:
    """The rule: リマインド rows, their リマインド削除 operations, and the chase of every operation."""
    state = reminder_state(frames, now, mapping)
    table = frames["reminders"]
    edits = []
    changed = state.rows.loc[state.changed]
    for why, group in changed.groupby("reason", sort=True):
        for name in WRITTEN:
            back = group.index.isin(state.back)
            edits += set_field(table, name, group.loc[~back, name], f"リマインド: {why}")
            edits += set_field(table, name, group.loc[back, name], f"リマインド: {why}", group_prefix=BACK_GROUP)
    new = state.rows.loc[state.new, FIELDS]
    appends: list[Append] = new_rows(table, new, [f"リマインド: {why}" for why in new["reason"].tolist()])
    ops = deletion_operations(frames, now, state)
    appends += ops
    appends += chase(frames, now, mapping, ops, withdrawn_deletions(frames, state).index)
    return Plan(edits=tuple(edits), appends=tuple(appends))


def known_bookings(frames: Frames, mapping: Mapping) -> pd.DataFrame:
    """booking_facts, less a "deleted" booking whose 予約ID is only unreadable (on two rows)."""
    facts = booking_facts(frames, mapping)
    spec = frames["bookings"].spec
    header = spec.column(spec.key).header
    unsure = {p.key for p in frames.problems if p.tab == spec.title and p.field == header}
    return facts[~(facts["deleted"] & facts.index.isin(unsure)).to_numpy()]


def send_times(start: pd.Series, step: Step, now: pd.Timestamp) -> pd.Series:
    """A step's time for each start (the mapping's timing; 即時 is the time first seen: now)."""
    if step.at == "first_seen":
        return pd.Series(now, index=start.index).astype(DATETIME)
    if step.hours_before is not None:
        return (start - pd.Timedelta(hours=step.hours_before)).astype(DATETIME)
    hh, _, mm = (step.at_time or "0:00").partition(":")
    day = start.dt.normalize() - pd.Timedelta(days=step.days_before or 0)
    return (day + pd.Timedelta(hours=int(hh), minutes=int(mm))).astype(DATETIME)


def reminder_state(frames: Frames, now: pd.Timestamp, mapping: Mapping) -> ReminderState:
    """Computed once per frames and `now` (the reminders rule and alert 9 both need it)."""
    return frames.derived("reminder_state", now, mapping, lambda: _reminder_state(frames, now, mapping))


def _reminder_state(frames: Frames, now: pd.Timestamp, mapping: Mapping) -> ReminderState:
    table = frames["reminders"]
    rows = table.data[FIELDS].copy()
    rows["send_at"] = rows["send_at"].astype(DATETIME)
    rows["updated_at"] = rows["updated_at"].astype(DATETIME)
    changed = pd.Series(False, index=rows.index)
    facts = known_bookings(frames, mapping)

    def change(mask: pd.Series, reason: str | None = None, **values) -> None:
        nonlocal changed
        if not mask.any():
            return
        for name, value in values.items():
            rows.loc[mask, name] = value[mask] if isinstance(value, pd.Series) else value
        if reason is not None:
            rows.loc[mask, "reason"] = reason
        changed |= mask

    # 1. what the LINE tool has sent by now
    change((rows["state"] == PLANNED) & (rows["send_at"] < now), WHY_SENT, state=SENT)

    # 2. pending steps go with the booking's salesperson and customer (a booking moved to another
    # customer: a cancel later is then listed for, and told to, the customer who holds it)
    readable = frames["bookings"].usable("customer_id")
    in_sheet = facts[~facts["deleted"]]
    holders = [(name, in_sheet.loc[known.to_numpy(), name]) for name, known in (
        ("salesperson", in_sheet["salesperson"].notna()),
        ("customer_id", in_sheet["customer_id"].notna() & readable.reindex(in_sheet.index, fill_value=False)))]

    def follow() -> None:
        planned = rows["state"] == PLANNED
        for name, holder in holders:
            now_is = rows["booking_id"].map(holder)
            change(planned & now_is.notna() & now_is.ne(rows[name]), **{name: now_is})

    follow()

    # 3. a cancelled or deleted booking: every pending step is cancelled
    gone = facts.index[facts["cancelled"].astype(bool)]
    change((rows["state"] == PLANNED) & rows["booking_id"].isin(gone), WHY_CANCEL, state=CANCELLED)

    # 3b. a cancel undone: the booking's cancelled steps still to come whose リマインド削除 nobody has
    # done are still in the LINE tool, so they are pending again (tasks.rules.queue closes those
    # deletions; chased, they would have staff delete an active booking's Zoom-link reminders)
    active = facts.index[facts["active"].astype(bool)]
    undone = (rows["state"] == CANCELLED) & (rows["reason"] == WHY_CANCEL) & rows["booking_id"].isin(active)
    undone &= rows["send_at"] >= now
    if undone.any():
        undone &= rows.index.isin(open_deletions(frames))
        change(undone, WHY_BACK, state=PLANNED)
    back = rows.index[undone.to_numpy()]

    # 4. an active booking's pending steps follow its start (a reschedule; earlier or later), and a
    # skipped one whose new time is to come is pending again (the LINE tool times its reminders from
    # the booking: moved back, it sends it, and a cancel must then list it for deletion)
    live = facts[facts["active"].astype(bool) & facts["start_ok"].astype(bool)]
    of_live = rows["booking_id"].isin(live.index)
    pending, skipped = (rows["state"] == PLANNED) & of_live, (rows["state"] == SKIPPED) & of_live
    for series in mapping.reminders.series:
        for step in series.steps:
            if step.at == "first_seen":
                continue
            mask = (pending | skipped) & (rows["series"] == series.name) & (rows["step"] == step.name)
            if not mask.any():
                continue
            start = rows.loc[mask, "booking_id"].map(live["start"]).astype(DATETIME)
            desired = send_times(start, step, now).reindex(rows.index)
            moved = mask & desired.ne(rows["send_at"])
            future = desired >= now
            change(moved & future, WHY_MOVED, send_at=desired, state=PLANNED)
            change(moved & ~future & pending, WHY_MOVED_PAST, send_at=desired, state=SKIPPED)
    follow()  # the steps 3b and 4 made pending again, too

    rows.loc[changed, "updated_at"] = now
    new = _planned(frames, now, mapping, live, rows.index)
    all_rows = pd.concat([rows, new]) if not new.empty else rows
    return ReminderState(all_rows, rows.index[changed], new.index, back)


def _planned(
    frames: Frames, now: pd.Timestamp, mapping: Mapping, live: pd.DataFrame, existing: pd.Index
) -> pd.DataFrame:
    """5. the steps an active booking does not have yet."""
    customers = frames["customers"].data
    blacklisted = customers.index[customers["blacklist_memo"].map(_filled).astype(bool)]
    bookings = frames["bookings"]
    readable = bookings.usable("menu", "customer_id").reindex(live.index, fill_value=False)
    live = live[(readable & live["customer_id"].notna() & ~live["customer_id"].isin(blacklisted)).to_numpy()]
    parts = []
    for series in mapping.reminders.series:
        applies = live[(live["menu"].isna() | live["menu"].isin(series.menus)).to_numpy()]
        if applies.empty:
            continue
        for step in series.steps:
            ids = reminder_id(applies.index.astype(str), series.name, step.name)
            todo = ~ids.isin(existing)
            if not todo.any():
                continue
            chosen = applies[todo]
            at = send_times(chosen["start"], step, now)
            past = (at < now).to_numpy()
            part = pd.DataFrame({
                "booking_id": chosen.index.astype(object), "customer_id": chosen["customer_id"].to_numpy(),
                "salesperson": chosen["salesperson"].to_numpy(), "series": series.name, "step": step.name,
                # .array keeps the times' dtype: to_numpy() would box every tz-aware time as an object
                "send_at": at.array, "state": np.where(past, SKIPPED, PLANNED),
                "reason": np.where(past, WHY_PAST, WHY_NEW),
            }, index=ids[todo])
            part["updated_at"] = pd.Series(now, index=part.index).astype(DATETIME)
            parts.append(part[FIELDS])
    if not parts:
        return pd.DataFrame(columns=FIELDS)
    return pd.concat(parts)  # not sorted by id (0.25 s at 100k): combine sorts the whole plan anyway


def open_deletions(frames: Frames) -> pd.Series:
    """The リマインド削除 rows not done yet: 操作ID (the index) -> the リマインドID they delete (内容)."""
    ops = frames["operations"]
    rows = ops.data[(open_rows(ops) & ops.data["action"].eq(DELETE) & ops.data["content"].notna()).to_numpy()]
    return rows["content"].astype(str)


def withdrawn_deletions(frames: Frames, state: ReminderState) -> pd.Series:
    """The open deletions of the steps pending again (3b): 操作ID -> リマインドID. tasks.rules.queue
    closes them in the same plan, so the chase leaves them out."""
    deletions = open_deletions(frames)
    return deletions[deletions.isin(state.back)]


def deletion_operations(frames: Frames, now: pd.Timestamp, state: ReminderState) -> list[Append]:
    """One リマインド削除 per cancelled step the LINE tool could still send, listed once per cancel:
    a step whose earlier deletions were all withdrawn (its cancel was undone, tasks.rules.queue)
    gets a new one, `#2`, `#3`…"""
    r = state.rows
    due = r[((r["state"] == CANCELLED) & (r["reason"] == WHY_CANCEL) & (r["send_at"] >= now)).to_numpy()]
    ops = frames["operations"].data
    listed = ops[(ops["action"].eq(DELETE) & ops["content"].notna()).to_numpy()]
    per_step = (~withdrawn(listed)).groupby(listed["content"].astype(str).to_numpy()).agg(["size", "any"])
    due = due[~due.index.isin(per_step.index[per_step["any"]])]  # one stands (open, or done): listed
    rids = due.index.astype(str).tolist()
    before = per_step["size"].reindex(rids, fill_value=0).tolist()
    return NewOperations(frames, now).rows(
        DELETE, [delete_operation_id(rid, n + 1) for rid, n in zip(rids, before, strict=True)],
        due["customer_id"].tolist(), rids,
        [f"予約 {bid} のキャンセル" for bid in due["booking_id"].tolist()], dues=due["send_at"].tolist(),
        salespeople=due["salesperson"].tolist(),
    )


def chase(frames: Frames, now: pd.Timestamp, mapping: Mapping, new_ops: list[Append],
          withdrawn: pd.Index) -> list[Append]:
    """An operation not done an hour before its 期限: one urgent notice to its salesperson and 運営.

    Operations listed by this very run count too, so that a rerun at the same moment adds nothing;
    `withdrawn` ones, closed by this run, do not.
    """
    table = frames["operations"]
    cols = ["customer_name", "salesperson", "action", "content", "due", "done"]
    ops = table.data[cols].drop(index=withdrawn)
    ops["salesperson"] = overlaid(ops["salesperson"], current_owners(frames, mapping))
    if new_ops:
        fresh = pd.DataFrame([{c: a.get(c) for c in cols} for a in new_ops], index=[a.key for a in new_ops])
        ops = pd.concat([ops.astype(object), fresh.astype(object)])
    if ops.empty:
        return []
    due = pd.to_datetime(ops["due"], errors="coerce")
    lead = pd.Timedelta(hours=mapping.reminders.chase_hours_before_due)
    since = now - pd.Timedelta(days=mapping.lookback_days)
    done = ops["done"].fillna(False).astype(bool)
    chasing = (~done & due.notna() & (due - lead <= now) & (due >= since)).to_numpy()
    chased = ops[chasing]
    out = []
    ops_role = mapping.alerts.ops_role
    for op_id, row, when in zip(chased.index, chased.to_dict("records"), due[chasing], strict=True):
        salesperson = row["salesperson"] if isinstance(row["salesperson"], str) and row["salesperson"] else None
        cell = table.a1(str(op_id), "done") or str(op_id)
        for recipient in dict.fromkeys(r for r in (salesperson, ops_role) if r):
            item = notice(
                frames, mapping, f"chase:{op_id}:{recipient}", recipient, "operation_due", now,
                action=row["action"], content=row["content"], customer_name=row["customer_name"],
                due=shown_time(when), cell=cell,
            )
            if item is not None:
                out.append(item)
    return out


def _filled(value: object) -> bool:
    return isinstance(value, str) and value.strip() != ""
