"""The end-of-day digest: each person's open items in one message (`salesops digest`).

Pure: open items per person → one outbox notice each, 通知ID `digest:<名前>:<date>` (once a day).
Who gets one: active staff whose 役割 is in `digest.roles` and who have at least one item.
- a salesperson: their bookings' アラート (but a caution person's flag, never told), their L-Step操作
  not yet 対応済, and their payment-link requests still open (作成済: send the link and tick 送付済;
  依頼中: waiting for the link maker);
- a link maker: the requests 依頼中 addressed to them.
Each item says what and where (tab and cell). Like every notice, only the person's own
customers, masked. Urgent-first ordering is the outbox's; here alerts come first, then operations
by 期限, then requests.
"""

from __future__ import annotations

import pandas as pd
from openpyxl.utils import get_column_letter

from tasks.frames import ROW, Frames, Table
from tasks.mapping import Mapping
from tasks.outbox import notice
from tasks.plan import Plan
from tasks.rules.alerts import caution_texts
from tasks.rules.common import overlaid
from tasks.rules.operations import current_owners, open_rows
from tasks.rules.payment_links import request_owners

DIGEST = "digest"
ITEM_COLUMNS = ["person", "order", "sort", "text"]


def digest_plan(frames: Frames, now: pd.Timestamp, mapping: Mapping, *, baseline: bool = False) -> Plan:
    """`flows.pipeline.run(plan_with=...)`: the digest run plans its notices and nothing else."""
    del baseline  # a digest is never part of an adoption run
    return digest(frames, now, mapping).sorted()


def digest(frames: Frames, now: pd.Timestamp, mapping: Mapping) -> Plan:
    staff = frames["staff"].data
    people = staff.index[staff["role"].isin(mapping.digest.roles) & staff["active"].astype(bool)]
    items = open_items(frames, mapping)
    items = items[items["person"].isin(people)].sort_values(["person", "order", "sort"], kind="stable")
    limit = mapping.digest.max_items
    appends = []
    for person, group in items.groupby("person", sort=True):
        lines = list(group["text"][:limit])
        if len(group) > limit:
            lines.append(f"…ほか{len(group) - limit}件（シートで確認してください）")
        a = notice(frames, mapping, f"{DIGEST}:{person}:{now:%Y-%m-%d}", str(person), DIGEST, now,
                   salesperson=person, count=len(group), date=f"{now:%m/%d %H:%M}", items="\n".join(lines))
        if a is not None:
            appends.append(a)
    return Plan(appends=tuple(appends))


def open_items(frames: Frames, mapping: Mapping) -> pd.DataFrame:
    """One row per open item: whose it is, its order, and its line of text."""
    parts = [_alerts(frames, mapping), _operations(frames, mapping), *_requests(frames, mapping)]
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=ITEM_COLUMNS)


def _alerts(frames: Frames, mapping: Mapping) -> pd.DataFrame:
    """Each booking's アラート but alert 5's (a caution person is flagged on the booking, never told:
    the contract)."""
    table = frames["bookings"]
    b = table.data
    words = mapping.alerts
    start = words.caution.split("{", 1)[0]
    after = (words.second_meeting_other_salesperson, words.no_outcome, words.no_thanks_line, words.no_rebooking)
    caution = b["customer_id"].map(caution_texts(frames, mapping))
    alerts = pd.Series([_without_caution(cell, flag, start, after) if isinstance(cell, str) else "" for cell, flag in
                        zip(b["alerts"].tolist(), caution.tolist(), strict=True)], index=b.index, dtype=object)
    open_ = b[alerts.str.strip().ne("").to_numpy() & b["salesperson"].notna().to_numpy()]
    names = _names(frames, open_["customer_id"])
    text = ("・予約 " + open_.index.to_series() + "（" + names + " 様, " + _when(open_["start"]) + "）: "
            + alerts[open_.index] + " —『予約』" + _cells(table, open_.index, "alerts"))
    return _items(open_["salesperson"], 0, open_["start"], text)


def _without_caution(alerts: str, flag: object, start: str, after: tuple[str, ...]) -> str:
    """The "; "-joined alerts without alert 5. The alerts are in the contract's order, so alert 5
    begins at its fixed `start`; it is the memo's text in 顧客 now (`flag`: a memo may hold "; " and
    an alert's words) when exactly that is followed by nothing but alerts 6–9 (`after`). Else the
    memo was edited or cleared since the reconcile wrote the cell, and alert 5 runs to where the
    fixed texts of alerts 6–9 begin, or to the end."""
    at = 0 if alerts.startswith(start) else alerts.find("; " + start) + 2
    if at == 1:  # not found
        return alerts
    head, rest = alerts[: max(at - 2, 0)], alerts[at:]
    if isinstance(flag, str) and (rest == flag or rest.startswith(flag + "; ")):
        tail = rest[len(flag) + 2:].split("; ") if rest != flag else []
        if all(text in after for text in tail):
            return "; ".join(part for part in (head, *tail) if part)
    tail = []
    for text in reversed(after):
        if rest.endswith("; " + text) and len(rest) - len(text) - 2 > len(start):
            tail.insert(0, text)
            rest = rest[: -len(text) - 2]
    return "; ".join(part for part in (head, *tail) if part)


def _operations(frames: Frames, mapping: Mapping) -> pd.DataFrame:
    table = frames["operations"]
    # as the reconcile will write it: a reassignment moves the work
    o = table.data.assign(salesperson=overlaid(table.data["salesperson"], current_owners(frames, mapping)))
    open_ = o[open_rows(table) & o["salesperson"].notna()]
    text = ("・L-Step操作 " + open_["action"].fillna("") + "『" + open_["content"].fillna("").astype(str) + "』（"
            + open_["customer_name"].fillna("").astype(str) + " 様）期限 " + _when(open_["due"]).replace("", "なし")
            + " —『L-Step操作』" + _cells(table, open_.index, "done") + " 対応後に対応済へチェック")
    return _items(open_["salesperson"], 1, open_["due"], text)


def _requests(frames: Frames, mapping: Mapping) -> list[pd.DataFrame]:
    st = mapping.payment_links.states
    table = frames["payment_links"]
    # as the reconcile will write it: the work moves with the booking
    r = table.data.assign(salesperson=overlaid(table.data["salesperson"], request_owners(frames)))
    rid = r.index.to_series()
    name = r["customer_name"].fillna("").astype(str)
    made = r[r["state"].eq(st.created) & r["salesperson"].notna()]
    waiting = r[r["state"].eq(st.requested)]
    to_send = ("・決済リンク送付 " + rid[made.index] + "（" + name[made.index] + " 様）— お客様に送付し『決済リンク依頼』"
               + _cells(table, made.index, "sent") + " の送付済にチェック")
    pending = waiting[waiting["salesperson"].notna()]
    not_yet = ("・決済リンク作成待ち " + rid[pending.index] + "（" + name[pending.index] + " 様、作成担当 "
               + pending["maker"].fillna("未設定").astype(str) + "）")
    mine = waiting[waiting["maker"].notna()]
    to_make = ("・決済リンク作成 " + rid[mine.index] + "（" + name[mine.index] + " 様、営業担当 "
               + mine["salesperson"].fillna("未設定").astype(str) + "）—『決済リンク依頼』"
               + _cells(table, mine.index, "link") + " にURLを入力")
    return [
        _items(made["salesperson"], 2, made["requested_at"], to_send),
        _items(pending["salesperson"], 3, pending["requested_at"], not_yet),
        _items(mine["maker"], 2, mine["requested_at"], to_make),
    ]


def _items(person: pd.Series, order: int, when: pd.Series, text: pd.Series) -> pd.DataFrame:
    """Sorted on the moment itself (its '%m/%d' text would put January before December); undated last."""
    sort = pd.to_datetime(when, errors="coerce", utc=True)
    return pd.DataFrame({"person": person.astype(str), "order": order, "sort": sort, "text": text},
                        index=person.index).reset_index(drop=True)[ITEM_COLUMNS]


def _names(frames: Frames, customer_ids: pd.Series) -> pd.Series:
    c = frames["customers"].data
    full = (c["family_name"].fillna("") + " " + c["given_name"].fillna("")).str.strip()
    return customer_ids.map(full).fillna("")


def _when(ts: pd.Series) -> pd.Series:
    out = pd.to_datetime(ts).dt.tz_convert("Asia/Tokyo").dt.strftime("%m/%d %H:%M") if len(ts) else ts.astype(str)
    return out.fillna("").astype(str)


def _cells(table: Table, keys: pd.Index, field: str) -> pd.Series:
    """The A1 address of `field` in each row (one column operation: a digest may list 100k rows)."""
    col = table.col_of.get(field)
    if col is None or ROW not in table.data:
        return pd.Series("", index=keys, dtype=object)
    rows = table.data[ROW].reindex(keys)
    return (get_column_letter(col) + rows.astype("Int64").astype(str)).where(rows.notna(), "").astype(object)
