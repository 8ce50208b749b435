"""Tell: send what the outbox holds, one message per recipient, and record every attempt.

The outbox row exists before anything is sent (the plan wrote it). Then, for each notice to send:
1. `attempt`: the attempt is recorded first (試行回数 + 1, 送信日時 = the attempt's time, 状態 失敗 →
   未送信), in one write. A notice whose record could not be written (a person changed the row,
   or another run took it) is not sent by this run.
2. `deliver`: one message per recipient and batch, urgent notices first, with an idempotency key
   derived from the batch's notice ids.
3. `marks`: 状態 送信済, or 失敗 with the error (retried by the next run while 試行回数 is below
   `max_send_attempts`; then `failed_notices` tells 運営, once per notice).

A crash between 2 and 3 leaves notices 未送信 with 送信日時 set: "sent, outcome unknown". The next
run re-sends exactly that batch (its notices share 送信日時) as it was, with the same key, before and
apart from anything new: a transport that honours the key (LINE's X-Line-Retry-Key) drops the
repeat; any other one delivers it at most once more. Such a batch goes even in quiet hours (it
was already let through), and whole or not at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace

import pandas as pd

from tasks.frames import Frames
from tasks.mapping import Mapping
from tasks.outbox import FAILED, PENDING, SENT, is_urgent, notice
from tasks.plan import Edit, Plan
from tasks.rules.common import none_if_na
from tasks.write import same

Send = Callable[[str, str, str, str], None]  # recipient, title, body, idempotency key; raises on failure

FIELDS = ("recipient", "kind", "body", "state", "attempts", "created_at", "sent_at", "error")
MARKED = ("state", "sent_at", "attempts", "error")  # the cells tell writes; `raw_<field>`: as in the sheet now
SEND_FAILED = "send_failed"
REASON = "送信結果"


@dataclass(frozen=True)
class Delivery:
    recipient: str
    notice_ids: tuple[str, ...]
    ok: bool
    error: str = ""


def due(frames: Frames, plan: Plan, now: pd.Timestamp, mapping: Mapping) -> pd.DataFrame:
    """Notices to send now: new ones, old unsent ones, failed ones with tries left.

    In quiet hours only urgent notices go (and batches already sent once, whose outcome is unknown);
    the rest wait in the outbox.
    """
    outbox = frames["outbox"]
    old = outbox.data[list(FIELDS)].copy()
    for f in ("kind", "body"):  # as written: check's NFKC would change what a resend says
        old[f] = outbox.raw[f].reindex(old.index).where(outbox.raw[f].reindex(old.index).notna(), old[f])
    for f in MARKED:
        old[f"raw_{f}"] = outbox.raw[f].reindex(old.index).map(none_if_na) if f in outbox.raw else None
    old["fresh"] = False
    fresh = [a for a in plan.appends if a.tab == "outbox"]
    new = pd.DataFrame(
        [dict(a.values) | {f"raw_{f}": a.get(f) for f in MARKED} | {"fresh": True} for a in fresh],
        columns=list(old.columns), index=pd.Index([a.key for a in fresh], dtype=object),
    )
    rows = pd.concat([old.astype(object), new.astype(object)]) if not new.empty else old
    rows["attempts"] = pd.to_numeric(rows["attempts"], errors="coerce").fillna(0).astype(int)
    rows["in_doubt"] = rows["state"].eq(PENDING) & rows["sent_at"].notna()
    ok = rows["state"].isin([PENDING, FAILED]) & rows["recipient"].notna() & (rows["attempts"] < mapping.max_send_attempts)
    if rows["in_doubt"].any():  # a batch whose outcome is unknown goes whole or not at all
        doubt = rows[rows["in_doubt"]]
        whole = ok[doubt.index].groupby([doubt["recipient"], doubt["sent_at"].astype(str)]).transform("all")
        ok.loc[whole.index] = whole
    rows = rows[ok]
    rows = rows.assign(urgent=[is_urgent(mapping, k) for k in rows["kind"]])
    if in_quiet_hours(now, mapping):
        rows = rows[rows["urgent"] | rows["in_doubt"]]
    return rows.sort_values(["recipient", "urgent", "created_at"], ascending=[True, False, True], kind="stable")


def in_quiet_hours(now: pd.Timestamp, mapping: Mapping) -> bool:
    start, end = mapping.quiet_hours.start, mapping.quiet_hours.end
    t = now.strftime("%H:%M")
    return (start <= t or t < end) if start > end else (start <= t < end)


def attempt(rows: pd.DataFrame, now: pd.Timestamp) -> tuple[Plan, pd.DataFrame]:
    """The record written before sending, and the rows as they will be once it is written.

    試行回数 + 1; 状態 未送信; 送信日時 = now, except for a batch in doubt, which keeps its time
    (that is what keeps it one batch, with one key, however many runs it takes).
    """
    rows = rows.copy()
    rows["attempts"] = rows["attempts"] + 1
    rows["sent_at"] = rows["sent_at"].where(rows["in_doubt"], now)
    rows["state"] = PENDING
    edits = []
    for nid, row in rows.iterrows():
        for f in ("attempts", "sent_at", "state"):
            if not same(row[f"raw_{f}"], row[f]):
                edits.append(Edit("outbox", str(nid), f, row[f"raw_{f}"], row[f], "送信開始"))
    for f in ("attempts", "sent_at", "state"):
        rows[f"raw_{f}"] = rows[f]
    return Plan(edits=tuple(edits)), rows


def with_attempts(plan: Plan, record: Plan) -> Plan:
    """The plan with the attempt record folded in: a new notice is appended already attempted."""
    fresh = {a.key: a for a in plan.appends if a.tab == "outbox"}
    changes: dict[str, dict] = {}
    for e in record.edits:
        if e.key in fresh:
            changes.setdefault(e.key, {})[e.field] = e.new
    appends = tuple(a.with_values(**changes[a.key]) if a.tab == "outbox" and a.key in changes else a for a in plan.appends)
    edits = tuple(e for e in record.edits if e.key not in fresh)
    return replace(plan, appends=appends) | Plan(edits=edits)


def recorded(rows: pd.DataFrame, skipped: list, mapping: Mapping) -> pd.DataFrame:
    """Only the notices whose attempt is on the sheet are sent (`skipped`: the writer's skips)."""
    title = mapping.tabs["outbox"].title
    lost = {s.key for s in skipped if s.tab == title}
    return rows[~rows.index.isin(list(lost))]


def deliver(rows: pd.DataFrame, send: Send) -> list[Delivery]:
    """One message per recipient and batch, urgent notices first; the key makes a resend recognisable.

    A recipient has one batch per run, plus (only after a crash) the batch whose outcome is unknown,
    sent first and as it was.
    """
    out = []
    batch = rows["sent_at"].astype(str) if "sent_at" in rows else pd.Series("", index=rows.index)
    for (recipient, _), group in rows.groupby([rows["recipient"], batch], sort=True):
        ids = tuple(group.index)
        title = group["kind"].iloc[0] if len(group) == 1 else f"{len(group)}件のお知らせ"
        body = "\n\n".join(f"【{k}】\n{b}" for k, b in zip(group["kind"], group["body"], strict=True))
        key = hashlib.sha1("|".join(ids).encode()).hexdigest()
        try:
            send(str(recipient), title, body, key)
            out.append(Delivery(str(recipient), ids, True))
        except Exception as exc:  # noqa: BLE001 - any transport failure is recorded, never fatal
            out.append(Delivery(str(recipient), ids, False, f"{type(exc).__name__}: {exc}"[:300]))
    return out


def marks(rows: pd.DataFrame, deliveries: list[Delivery]) -> Plan:
    """Edits that record each delivery's outcome (compare-and-set against the attempt's record;
    the attempt already wrote 送信日時 and 試行回数)."""
    edits = []
    for d in deliveries:
        new = {"state": SENT, "error": None} if d.ok else {"state": FAILED, "error": d.error}
        for nid in d.notice_ids:
            for field, value in new.items():
                old = none_if_na(rows.at[nid, f"raw_{field}"])
                if not same(old, value):
                    edits.append(Edit("outbox", nid, field, old, value, REASON))
    return Plan(edits=tuple(edits))


def failed_notices(frames: Frames, now: pd.Timestamp, mapping: Mapping) -> Plan:
    """A rule: a notice out of tries is told to 運営, once (通知ID `send_failed:<通知ID>`).

    A failed `send_failed` notice is not escalated again: that would loop on a broken channel.
    """
    outbox = frames["outbox"]
    o = outbox.data
    if o.empty:
        return Plan()
    attempts = pd.to_numeric(o["attempts"], errors="coerce").fillna(0)
    spent = o["state"].ne(SENT) & o["state"].notna() & (attempts >= mapping.max_send_attempts)
    spent &= o["kind"].ne(mapping.templates[SEND_FAILED].title) & ~o.index.str.startswith(f"{SEND_FAILED}:")
    appends = []
    for nid, row in o[spent].iterrows():
        cell = outbox.a1(nid, "state")
        a = notice(frames, mapping, f"{SEND_FAILED}:{nid}", mapping.alerts.ops_role, SEND_FAILED, now,
                   failed_id=nid, to=row["recipient"], about=row["kind"], attempts=int(attempts[nid]),
                   error=row["error"] or "（送信結果が記録されていません）", where=cell or f"通知ID {nid} の行")
        if a is not None:
            appends.append(a)
    return Plan(appends=tuple(appends))


def bind(send: Send, frames: Frames) -> Send:
    """A sender that needs the run's 担当者 (roles, 通知先) gets them; a plain callable is as it is."""
    binder = getattr(send, "bind", None)
    return binder(frames) if callable(binder) else send


def console(recipient: str, title: str, body: str, key: str) -> None:
    """The channel when none is configured: the run's own output."""
    del key
    print(f"── 通知 → {recipient}: {title}\n{body}\n")
