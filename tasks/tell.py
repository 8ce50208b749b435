"""Tell: send what the outbox holds, one message per recipient, then mark each notice.

The outbox row exists before anything is sent (the plan wrote it); a crash between sending and
marking leaves it 未送信, so a transport that takes an idempotency key (LINE's X-Line-Retry-Key)
drops the repeat and any other sends it at most once more.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from tasks.frames import Frames
from tasks.mapping import Mapping
from tasks.outbox import FAILED, PENDING, SENT, is_urgent
from tasks.plan import Edit, Plan

Send = Callable[[str, str, str, str], None]  # recipient, title, body, idempotency key; raises on failure

FIELDS = ("recipient", "kind", "body", "state", "attempts", "created_at", "sent_at", "error")


@dataclass(frozen=True)
class Delivery:
    recipient: str
    notice_ids: tuple[str, ...]
    ok: bool
    error: str = ""


def due(frames: Frames, plan: Plan, now: pd.Timestamp, mapping: Mapping) -> pd.DataFrame:
    """Notices to send now: new ones, old unsent ones, failed ones with tries left.

    In quiet hours only urgent notices go; the rest wait in the outbox.
    """
    outbox = frames["outbox"]
    old = outbox.data[list(FIELDS)].copy()
    old["fresh"] = False
    new_rows = [dict(a.values) | {"fresh": True} for a in plan.appends if a.tab == "outbox"]
    new = pd.DataFrame(new_rows, columns=[*FIELDS, "fresh"], index=pd.Index([a.key for a in plan.appends if a.tab == "outbox"]))
    rows = pd.concat([old, new]) if not new.empty else old
    attempts = pd.to_numeric(rows["attempts"], errors="coerce").fillna(0)
    waiting = (rows["state"] == PENDING) | ((rows["state"] == FAILED) & (attempts < mapping.max_send_attempts))
    rows = rows[waiting & rows["recipient"].notna()]
    rows = rows.assign(urgent=[is_urgent(mapping, k) for k in rows["kind"]])
    if in_quiet_hours(now, mapping):
        rows = rows[rows["urgent"]]
    return rows.sort_values(["recipient", "urgent", "created_at"], ascending=[True, False, True], kind="stable")


def in_quiet_hours(now: pd.Timestamp, mapping: Mapping) -> bool:
    start, end = mapping.quiet_hours.start, mapping.quiet_hours.end
    t = now.strftime("%H:%M")
    return (start <= t or t < end) if start > end else (start <= t < end)


def deliver(rows: pd.DataFrame, send: Send) -> list[Delivery]:
    """One message per recipient, urgent notices first; the key makes a resend recognisable."""
    out = []
    for recipient, group in rows.groupby("recipient", sort=True):
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


def marks(rows: pd.DataFrame, deliveries: list[Delivery], frames: Frames, now: pd.Timestamp) -> Plan:
    """Edits that record each delivery (compare-and-set against what the run wrote or read)."""
    outbox = frames["outbox"]
    edits = []
    for d in deliveries:
        for nid in d.notice_ids:
            fresh = bool(rows.at[nid, "fresh"])
            old = {f: (rows.at[nid, f] if fresh else outbox.raw_value(nid, f)) for f in ("state", "sent_at", "attempts", "error")}
            attempts = int(pd.to_numeric(rows.at[nid, "attempts"], errors="coerce") or 0) + 1
            new = {"state": SENT if d.ok else FAILED, "attempts": attempts, "error": None if d.ok else d.error}
            if d.ok:
                new["sent_at"] = now
            for field, value in new.items():
                edits.append(Edit("outbox", nid, field, old[field], value, "送信結果"))
    return Plan(edits=tuple(edits))


def console(recipient: str, title: str, body: str, key: str) -> None:
    """The channel when none is configured: the run's own output."""
    del key
    print(f"── 通知 → {recipient}: {title}\n{body}\n")
