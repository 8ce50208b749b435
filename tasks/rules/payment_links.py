"""決済リンク依頼: one request per won booking, told once to the link maker, followed to 送付済.

The rule (CONTRACT.md, 決済リンク依頼), per request `PL-<予約ID>`:
- 結果 成約 and no request → a row 依頼中 addressed to the link maker (the first active staff
  member, by name, whose 役割 is `payment_links.maker_role`), who is told. No maker → a problem
  row (担当者) and the request waits until there is one.
- 決済リンク filled with an https URL while 依頼中 → 作成済, and the salesperson is told, with the
  link (a corrected link while 作成済 is told again). Anything else in 決済リンク → a problem row
  (決済リンク依頼), the state stays.
- 送付済 ticked while 依頼中 or 作成済 → 送付済.
- 結果 no longer 成約 (or the booking row is gone) while 依頼中 → 取消, and the maker is told.
  成約 again later → the same row goes back to 依頼中 and the maker is told again.
- 依頼中 for over `overdue_hours` → 運営 is told, once a day (within `lookback_days` of 依頼日時).
- 不要 (typed by staff) ends the request: nothing more happens to it.
- While 依頼中 or 作成済, お客様番号, 顧客名 and 営業担当 follow the booking: the link is made for, and
  sent by, whoever has the customer now. プラン only while 依頼中: a link made is for its plan.

Memory that survives a deleted row: the 通知 outbox, which every run reads. A request's episodes
are its notices `payment_link_requested:PL-<予約ID>[#n]` and `payment_link_cancelled:PL-<予約ID>[#n]`
(n = 2, 3 … for a request reopened after a cancel). More requested than cancelled notices means
the maker was asked for the booking's current 成約: if the row is gone, staff deleted it, and it
is not re-created. When the booking then stops being 成約, the maker is told (a cancelled notice
closes the episode), so a later 成約 makes a new request. Clearing the outbox clears the memory.

A booking whose 結果 (or 予約ID) cannot be read is left alone (neither requested nor cancelled),
and a 成約 whose meeting ended more than `lookback_days` ago is history, not an event: no request
(a team adopting the pipeline does not ask for links of months-old deals).
"""

from __future__ import annotations

import hashlib
import re

import pandas as pd

from tasks.frames import Frames, Problem, Table
from tasks.mapping import Mapping
from tasks.normalize import normalize_series
from tasks.outbox import notice
from tasks.plan import Append, Edit, Plan
from tasks.rules.common import new_row, none_if_na, set_field, shown_time

REQUESTED, CREATED, CANCELLED, OVERDUE = (
    "payment_link_requested", "payment_link_created", "payment_link_cancelled", "payment_link_overdue",
)
PREFIX = "PL-"
_EPISODE = re.compile(rf"^({REQUESTED}|{CANCELLED}):(PL-.+?)(?:#(\d+))?$")
_LINK = "\x00LINK\x00"  # the link goes into a message after masking: masking would break its digits
NO_MAKER = "役割『{role}』の有効な担当者がいません。決済リンク依頼を作れません。担当者タブで役割と有効を確認してください。"
BAD_LINK = "決済リンクは https:// で始まるURLにしてください（状態は変わりません）。"
BAD_STATE = "状態は次のどれかにしてください: {}"


def episode_id(kind: str, rid: str, n: int) -> str:
    """The n-th requested/cancelled notice of a request: the first has no suffix."""
    return f"{kind}:{rid}" if n <= 1 else f"{kind}:{rid}#{n}"


def payment_links(frames: Frames, now: pd.Timestamp, mapping: Mapping) -> Plan:
    st = mapping.payment_links.states
    table = frames["payment_links"]
    s = _requests(frames, now, mapping)
    if s.empty:
        return Plan()
    exists, state = s["exists"], s["state"]
    open_episode = s["asked"] > s["closed"]
    to_sent = exists & s["sent"] & state.isin([st.requested, st.created])
    to_cancel = exists & ~to_sent & state.eq(st.requested) & ~s["want"] & s["readable"]
    to_created = exists & ~to_sent & ~to_cancel & state.eq(st.requested) & s["link_ok"]
    tell_created = (to_created | (exists & ~to_sent & state.eq(st.created) & s["link_ok"])) & ~s["created_told"]
    reopen = exists & state.eq(st.cancelled) & s["want"] & ~open_episode
    ask_again = exists & state.eq(st.requested) & s["want"] & ~open_episode & ~to_sent & ~to_created
    create = ~exists & s["want"] & s["recent"] & ~open_episode
    close_gone = ~exists & ~s["want"] & s["readable"] & open_episode

    problems = _link_problems(table, s, st) + _state_problems(table, s, st)
    maker = _maker(frames, mapping)
    needs_maker = create | reopen | ask_again
    if maker is None and needs_maker.any():
        problems.append(_no_maker(frames, mapping))
        create, reopen, ask_again = create & False, reopen & False, ask_again & False

    edits: list[Edit] = []
    appends: list[Append | None] = []
    ops = mapping.alerts.ops_role
    for rid, row in s[create].to_dict("index").items():  # rows as dicts: .loc per row costs ~100 µs
        appends.append(new_row(table, rid, {
            "requested_at": now, "booking_id": row["booking_id"], "customer_id": row["customer_id"],
            "customer_name": row["customer_name"], "salesperson": row["salesperson"], "plan": row["plan"],
            "maker": maker, "state": st.requested, "sent": False, "updated_at": now,
        }, "決済リンク依頼: 成約"))
        appends.append(_ask(frames, mapping, now, rid, row, maker, int(row["asked"]) + 1, _where(table, rid, "link")))
    for rid in s.index[reopen | ask_again]:
        row, group = s.loc[rid], f"payment_link:{rid}"
        values = {"state": st.requested, "maker": maker, "updated_at": now}
        if reopen[rid] or pd.isna(row["requested_at"]):
            values["requested_at"] = now
        edits += _edits(table, rid, values, "決済リンク依頼: 成約（再依頼）", group)
        appends.append(_ask(frames, mapping, now, rid, row, maker, int(row["asked"]) + 1,
                            _where(table, rid, "link"), group))
    for rid in s.index[to_sent]:
        edits += _edits(table, rid, {"state": st.sent, "updated_at": now}, "決済リンク依頼: 送付済", f"payment_link:{rid}")
    for rid in s.index[to_cancel]:
        row, group = s.loc[rid], f"payment_link:{rid}"
        edits += _edits(table, rid, {"state": st.cancelled, "updated_at": now}, "決済リンク依頼: 成約ではなくなった", group)
        if open_episode[rid]:  # a maker who was never asked is not told either
            appends.append(_cancelled(frames, mapping, now, rid, row, maker, ops, _where(table, rid, "state"), group))
    for rid in s.index[close_gone]:
        appends.append(_cancelled(frames, mapping, now, rid, s.loc[rid], maker, ops, f"依頼ID {rid}（行は削除済み）"))
    for rid in s.index[to_created]:
        edits += _edits(table, rid, {"state": st.created, "updated_at": now}, "決済リンク依頼: 決済リンク入力",
                        f"payment_link:{rid}")
    for rid in s.index[tell_created]:
        group = f"payment_link:{rid}" if to_created[rid] else None
        appends.append(_created(frames, mapping, now, rid, s.loc[rid], _where(table, rid, "sent"), group))

    still_requested = (exists & state.eq(st.requested) & ~to_sent & ~to_cancel & ~to_created & ~reopen & ~ask_again)
    appends += _overdue(frames, mapping, now, s[still_requested], table)
    still_open = exists & state.isin([st.requested, st.created]) & ~to_sent & ~to_cancel
    edits += _follow_booking(table, s[still_open], ("customer_id", "customer_name", "salesperson"))
    edits += _follow_booking(table, s[still_requested & s["want"]], ("plan",))
    return Plan(edits=tuple(edits), appends=tuple(a for a in appends if a is not None), problems=tuple(problems))


# --------------------------------------------------------------------------- the facts, one row per request


def _requests(frames: Frames, now: pd.Timestamp, mapping: Mapping) -> pd.DataFrame:
    """Every request id the rule must look at: won bookings, rows of the tab, ids the outbox remembers."""
    cfg = mapping.payment_links
    table, bookings = frames["payment_links"], frames["bookings"]
    b, r = bookings.data, table.data
    memory = _memory(frames["outbox"].data.index)
    won = b["outcome"].eq(cfg.won_outcome) & bookings.usable("outcome")
    ids = pd.Index(PREFIX + b.index[won].astype(str)).union(r.index).union(memory.index).unique()
    s = pd.DataFrame(index=ids)
    s.index.name = "request_id"
    booking_id = pd.Series(r["booking_id"].reindex(ids).to_numpy(), index=ids, dtype=object)
    s["booking_id"] = booking_id.where(booking_id.notna(), pd.Series(ids.str.removeprefix(PREFIX), index=ids))
    on_sheet = s["booking_id"].isin(b.index)
    bk = b.reindex(s["booking_id"].to_numpy())
    bk.index = ids
    unreadable = _unreadable_bookings(frames)
    s["readable"] = ~s["booking_id"].isin(unreadable) & (
        ~on_sheet | bookings.usable("outcome").reindex(s["booking_id"].to_numpy(), fill_value=True).to_numpy()
    )
    s["want"] = on_sheet & bk["outcome"].eq(cfg.won_outcome).to_numpy() & s["readable"]
    end = bk["start"] + pd.Timedelta(minutes=mapping.meeting_minutes)
    start_ok = bookings.usable("start").reindex(s["booking_id"].to_numpy(), fill_value=False).to_numpy()
    s["recent"] = start_ok & end.ge(now - pd.Timedelta(days=mapping.lookback_days)).fillna(False).to_numpy()
    customers = frames["customers"].data
    s["customer_id"] = bk["customer_id"].where(on_sheet.to_numpy(), r["customer_id"].reindex(ids))
    s["salesperson"] = _salespeople(bk, customers).where(on_sheet, r["salesperson"].reindex(ids))
    s["plan"] = bk["plan"].where(on_sheet, r["plan"].reindex(ids))
    names = (customers["family_name"].fillna("") + " " + customers["given_name"].fillna("")).str.strip()
    s["customer_name"] = s["customer_id"].map(names).fillna("")
    s["customer_name"] = s["customer_name"].where(s["customer_name"].ne(""), r["customer_name"].reindex(ids)).fillna("")
    s["exists"] = ids.isin(r.index)
    s["state"] = r["state"].reindex(ids)
    s["maker"] = r["maker"].reindex(ids)
    s["requested_at"] = r["requested_at"].reindex(ids)
    s["sent"] = (r["sent"] & table.usable("sent")).reindex(ids, fill_value=False).astype(bool)
    link = r["link"].reindex(ids)
    s["link"] = link
    _, issues = normalize_series("url", link.astype(object))
    s["link_ok"] = link.notna() & issues.isna()
    s["link_bad"] = link.notna() & issues.notna()
    told = frames["outbox"].data.index
    ok = s.index[s["link_ok"]]
    s["created_told"] = True
    s.loc[ok, "created_told"] = [_created_id(rid, v) in told for rid, v in link[ok].items()]
    s["asked"] = memory["asked"].reindex(ids, fill_value=0)
    s["closed"] = memory["closed"].reindex(ids, fill_value=0)
    return s


def _salespeople(bookings: pd.DataFrame, customers: pd.DataFrame) -> pd.Series:
    """Each booking's salesperson, else its customer's (as a request is addressed)."""
    return bookings["salesperson"].where(bookings["salesperson"].notna(),
                                         customers["salesperson"].reindex(bookings["customer_id"]).to_numpy())


def request_owners(frames: Frames) -> pd.Series:
    """Request id -> the salesperson who has its booking now, for requests whose booking is on the
    sheet: the digest tells them, not whoever the row names, before a reconcile rewrites it."""
    r, b = frames["payment_links"].data, frames["bookings"].data
    bid = r["booking_id"][r["booking_id"].isin(b.index).to_numpy()]
    bk = b.reindex(bid.to_numpy())
    owners = pd.Series(_salespeople(bk, frames["customers"].data).to_numpy(), index=bid.index, dtype=object)
    return owners[owners.map(type).eq(str).to_numpy()]


def _memory(outbox_ids: pd.Index) -> pd.DataFrame:
    """Per request: how many requested and cancelled notices the outbox holds."""
    found = pd.Series(outbox_ids, dtype=object).str.extract(_EPISODE).dropna(subset=[0])
    if found.empty:
        return pd.DataFrame({"asked": pd.Series(dtype=int), "closed": pd.Series(dtype=int)})
    counts = found.groupby([1, 0]).size().unstack(fill_value=0)
    return pd.DataFrame({
        "asked": counts.get(REQUESTED, pd.Series(0, index=counts.index)),
        "closed": counts.get(CANCELLED, pd.Series(0, index=counts.index)),
    }).astype(int)


def _unreadable_bookings(frames: Frames) -> set[str]:
    """予約IDs that are on the sheet but left the table (repeated): never read as "deleted"."""
    spec = frames["bookings"].spec
    header = spec.column(spec.key).header
    return {p.key for p in frames.problems if p.tab == spec.title and p.field == header}


def _maker(frames: Frames, mapping: Mapping) -> str | None:
    staff = frames["staff"].data
    makers = staff.index[staff["role"].eq(mapping.payment_links.maker_role) & staff["active"].astype(bool)]
    return str(sorted(makers)[0]) if len(makers) else None


def _no_maker(frames: Frames, mapping: Mapping) -> Problem:
    spec = frames["staff"].spec
    role = mapping.payment_links.maker_role
    return Problem(spec.title, "", role, spec.column("role").header, "", NO_MAKER.format(role=role))


# --------------------------------------------------------------------------- problems


def _link_problems(table: Table, s: pd.DataFrame, st) -> list[Problem]:
    bad = s[s["exists"] & s["link_bad"] & s["state"].isin([st.requested, st.created])]
    header = table.spec.column("link").header
    return [Problem(table.spec.title, table.a1(rid, "link"), rid, header, str(v), BAD_LINK) for rid, v in bad["link"].items()]


def _state_problems(table: Table, s: pd.DataFrame, st) -> list[Problem]:
    words = list(st.model_dump().values())
    bad = s[s["exists"] & s["state"].notna() & ~s["state"].isin(words)]
    header = table.spec.column("state").header
    message = BAD_STATE.format("・".join(words))
    return [Problem(table.spec.title, table.a1(rid, "state"), rid, header, str(v), message) for rid, v in bad["state"].items()]


# --------------------------------------------------------------------------- edits and notices


def _edits(table: Table, rid: str, values: dict, reason: str, group: str | None) -> list[Edit]:
    """Edits of one row that go together (a state and its notice: both or neither)."""
    current = table.data.loc[rid]
    out = []
    for field, new in values.items():
        old = none_if_na(current[field])
        if old == new or (old is None and new is None):
            continue
        out.append(Edit(table.name, rid, field, table.raw_value(rid, field), new, reason, group))
    return out


def _follow_booking(table: Table, s: pd.DataFrame, fields: tuple[str, ...]) -> list[Edit]:
    edits = []
    for field in fields:
        desired = s[field].dropna()
        edits += set_field(table, field, desired.astype(object), "決済リンク依頼: 予約に合わせる")
    return edits


def _where(table: Table, rid: str, field: str) -> str:
    cell = table.a1(rid, field) if rid in table.data.index else ""
    return f"{cell}（依頼ID {rid}）" if cell else f"依頼ID {rid} の行"


def _ask(frames, mapping, now, rid, row, maker, n, where, group=None) -> Append | None:
    a = notice(frames, mapping, episode_id(REQUESTED, rid, n), maker, REQUESTED, now,
               customer_name=row["customer_name"], booking_id=row["booking_id"],
               salesperson=_text(row["salesperson"]) or "（未設定）", plan=_text(row["plan"]) or "（未入力: 営業担当に確認）",
               where=where)
    return _grouped(a, group)


def _cancelled(frames, mapping, now, rid, row, maker, ops, where, group=None) -> Append | None:
    to = _text(row["maker"]) or maker or ops
    a = notice(frames, mapping, episode_id(CANCELLED, rid, int(row["asked"])), to, CANCELLED, now,
               customer_name=row["customer_name"], booking_id=row["booking_id"], request_id=rid, where=where)
    return _grouped(a, group)


def _created_id(rid: str, link: str) -> str:
    return f"{CREATED}:{rid}:{hashlib.sha1(str(link).encode()).hexdigest()[:8]}"


def _created(frames, mapping, now, rid, row, where, group) -> Append | None:
    to = _text(row["salesperson"]) or mapping.alerts.ops_role
    a = notice(frames, mapping, _created_id(rid, row["link"]), to, CREATED, now,
               customer_name=row["customer_name"], booking_id=row["booking_id"], link=_LINK, where=where)
    if a is None:
        return None
    return _grouped(a.with_values(body=a.get("body").replace(_LINK, str(row["link"]))), group)


def _overdue(frames, mapping, now, s: pd.DataFrame, table: Table) -> list[Append | None]:
    cfg = mapping.payment_links
    at = pd.to_datetime(s["requested_at"])
    late = at.notna() & (at < now - pd.Timedelta(hours=cfg.overdue_hours)) & (  # over, as the contract says
        at >= now - pd.Timedelta(days=mapping.lookback_days))
    hours = f"{cfg.overdue_hours:g}"
    return [
        notice(frames, mapping, f"{OVERDUE}:{rid}:{now:%Y-%m-%d}", mapping.alerts.ops_role, OVERDUE, now,
               request_id=rid, customer_name=row["customer_name"], maker=_text(row["maker"]) or "（未設定）",
               hours=hours, requested_at=shown_time(row["requested_at"]),
               where=_where(table, rid, "link"))
        for rid, row in s[late].iterrows()
    ]


def _grouped(a: Append | None, group: str | None) -> Append | None:
    if a is None or group is None:
        return a
    return a._replace(group=group)


def _text(value) -> str:
    value = none_if_na(value)
    return "" if value is None else str(value)
