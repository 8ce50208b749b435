"""リマインド (CONTRACT.md, リマインド and L-Step操作): series from the mappings, reschedules, cancels,
the blacklist, the chase, idempotence, and a property test over random booking histories.

Every test but the property runs the whole pipeline (flows.pipeline.run: read → check → reconcile → the
real compare-and-set writer → tell) on a real .xlsx through the local adapter; by default with this
concern's rules only (`plan_with=mine`), and with every registered rule where `full=True`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import openpyxl
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.pipeline import run
from tasks.check import check
from tasks.frames import DATETIME, ROW, Frames
from tasks.mapping import Mapping, MappingError, load_mapping
from tasks.normalize import normalize_value
from tasks.plan import Plan, combine
from tasks.reconcile import as_baseline, reconcile
from tasks.rules.alerts import booking_alerts, remembered_start_and_salesperson
from tasks.rules.bookings import end_times
from tasks.rules.errors import error_rows
from tasks.rules.reminders import reminders
from tasks.workbooks.local import LocalWorkbook
from tests.conftest import NOW, booking, customer, team_tabs, write_book

H = dt.timedelta(hours=1)
D = dt.timedelta(days=1)
MIN = dt.timedelta(minutes=1)
T0 = NOW.tz_localize(None).to_pydatetime()  # 2026-11-20 10:00, naive JST as a sheet cell holds it
START = dt.datetime(2026, 11, 27, 14, 0)  # a week ahead
PROTECTED = ("3日前", "前日", "1時間前")


# --------------------------------------------------------------------------- the workbook


class Sheet(LocalWorkbook):
    """The real local adapter on a real .xlsx, plus what a person does to the file between runs."""

    def by_key(self, title: str) -> dict[str, dict]:
        wb = openpyxl.load_workbook(self.path)
        if title not in wb.sheetnames:
            return {}
        rows = [list(r) for r in wb[title].iter_rows(values_only=True)]
        return {str(r[0]): dict(zip(rows[0], r, strict=False)) for r in rows[1:] if r and r[0] not in (None, "")}

    def set(self, title: str, key: str, header: str, value: Any) -> None:
        def change(ws):
            _put(ws.cell(row=_row(ws, key), column=[c.value for c in ws[1]].index(header) + 1), value)
        self._edit(title, change)

    def delete(self, title: str, key: str) -> None:
        self._edit(title, lambda ws: ws.delete_rows(_row(ws, key)))

    def add(self, title: str, values: list) -> None:
        def append(ws):
            row = ws.max_row + 1
            for col, value in enumerate(values, start=1):
                _put(ws.cell(row=row, column=col), value)
        self._edit(title, append)

    def _edit(self, title: str, change) -> None:
        wb = openpyxl.load_workbook(self.path)
        change(wb[title])
        wb.save(self.path)


def _row(ws, key: str) -> int:
    return next(c.row for c in ws["A"][1:] if str(c.value) == key)


def _put(cell, value: Any) -> None:
    """As a person types it: text stays text, a date-time is a real one."""
    cell.value = None if value == "" else value
    if isinstance(cell.value, str):
        cell.data_type = "s"
    elif isinstance(value, dt.datetime):
        cell.number_format = "yyyy/mm/dd hh:mm"


# --------------------------------------------------------------------------- helpers


def mine(frames: Frames, now: pd.Timestamp, mapping: Mapping, baseline: bool = False) -> Plan:
    """This concern's rules (with 終了日時, which they read, and the エラー tab) for `run(plan_with=...)`:
    the real check, write and tell without the cost of the other concerns."""
    plan = combine([rule(frames, now, mapping) for rule in (end_times, *MINE)])
    plan = (plan | error_rows(frames, now, mapping, plan.problems)).sorted()
    return as_baseline(plan) if baseline else plan


class Outbox:
    """The send function: what was delivered, to whom (a notice sent twice shows up twice)."""

    def __init__(self):
        self.ids: list[str] = []
        self.to: list[tuple[str, str]] = []  # (notice id, recipient)
        self.messages: list[tuple[str, str, str]] = []  # (recipient, title, body) as delivered

    def __call__(self, recipient, title, body, key):
        self.messages.append((recipient, title, body))

    def record(self, summary) -> None:
        for d in summary.deliveries:
            if d.ok:
                self.ids += list(d.notice_ids)
                self.to += [(i, d.recipient) for i in d.notice_ids]


def team(tmp_path, customers=None, bookings=None) -> Sheet:
    customers = customers if customers is not None else [customer("C001")]
    bookings = bookings if bookings is not None else [booking("R001", "C001", START)]
    return Sheet(write_book(tmp_path / "team.xlsx", team_tabs(customers, bookings)))


def at(t: dt.datetime) -> pd.Timestamp:
    return pd.Timestamp(t, tz="Asia/Tokyo")


def step(book: Sheet, now: dt.datetime, mapping: Mapping, outbox: Outbox | None = None, full: bool = False, **kw):
    """One run of the pipeline; `full` runs every registered rule (to catch conflicts with other concerns)."""
    summary = run(book, mapping, at(now), outbox or Outbox(), plan_with=None if full else mine, **kw)
    if outbox is not None:
        outbox.record(summary)
    return summary


def plan_at(book: Sheet, now: dt.datetime, mapping: Mapping) -> Plan:
    return mine(check(book.read(), mapping), at(now), mapping)


def rems(book: Sheet) -> dict[str, dict]:
    return book.by_key("リマインド")


def states(book: Sheet, bid: str = "R001") -> dict[str, str]:
    return {k.split(":", 1)[1]: r["状態"] for k, r in rems(book).items() if r["予約ID"] == bid}


def ops(book: Sheet) -> dict[str, dict]:
    """The リマインド削除 rows of L-Step操作 (other rules list their own work there too)."""
    return {k: r for k, r in book.by_key("L-Step操作").items() if r["操作"] == "リマインド削除"}


def with_reminders(mapping: Mapping, **changes) -> Mapping:
    data = mapping.model_dump(mode="json")
    data["reminders"] = {**data["reminders"], **changes}
    return Mapping.model_validate(data)


# --------------------------------------------------------------------------- planning


def test_new_active_booking_plans_every_step_of_every_series(tmp_path, mapping):
    book = team(tmp_path)
    step(book, T0, mapping)
    r = rems(book)
    assert set(r) == {"R001:挨拶:即時", *(f"R001:個別相談設定中:{s}" for s in PROTECTED)}
    assert r["R001:挨拶:即時"]["送信予定日時"] == T0  # the moment the pipeline first sees it
    assert r["R001:個別相談設定中:3日前"]["送信予定日時"] == START - 72 * H
    assert r["R001:個別相談設定中:前日"]["送信予定日時"] == START - 24 * H
    assert r["R001:個別相談設定中:1時間前"]["送信予定日時"] == START - H
    for row in r.values():
        assert (row["状態"], row["理由"], row["更新日時"]) == ("予定", "新規予約", T0)
        assert (row["予約ID"], row["お客様番号"], row["営業担当"]) == ("R001", "C001", "佐藤")
    assert {row["系列"] for row in r.values()} == {"挨拶", "個別相談設定中"}


def test_a_step_already_past_when_planned_is_skipped(tmp_path, mapping):
    book = team(tmp_path, bookings=[booking("R001", "C001", T0 + 2 * D)])  # 3日前 was yesterday
    step(book, T0, mapping)
    r = rems(book)["R001:個別相談設定中:3日前"]
    assert (r["状態"], r["理由"]) == ("スキップ", "過去のため スキップ")
    assert states(book) == {"挨拶:即時": "予定", "個別相談設定中:3日前": "スキップ",
                            "個別相談設定中:前日": "予定", "個別相談設定中:1時間前": "予定"}


def test_only_active_bookings_are_planned(tmp_path, mapping):
    book = team(tmp_path, bookings=[booking("R001", "C001", START, "来店済み"), booking("R002", "C001", START, "キャンセル"),
                          booking("R003", "C001", START, "仮予約中")])
    step(book, T0, mapping)
    assert {r["予約ID"] for r in rems(book).values()} == {"R003"}


def test_a_past_planned_step_becomes_sent_before_anything_else_looks_at_it(tmp_path, mapping):
    book = team(tmp_path)
    step(book, T0, mapping)
    later = START - 30 * H  # 3日前 has gone out; 前日 and 1時間前 have not
    book.set("予約", "R001", "ステータス", "キャンセル")
    step(book, later, mapping)
    r = rems(book)
    assert (r["R001:挨拶:即時"]["状態"], r["R001:挨拶:即時"]["理由"]) == ("送信済", "送信時刻を過ぎたため 送信済")
    assert r["R001:個別相談設定中:3日前"]["状態"] == "送信済"  # sent, so never 取消
    assert r["R001:個別相談設定中:前日"]["状態"] == "取消"
    assert "リマインド削除:R001:個別相談設定中:3日前" not in ops(book)  # nothing left to delete
    assert r["R001:個別相談設定中:3日前"]["更新日時"] == later


def test_the_greeting_is_planned_at_first_sight_and_never_twice(tmp_path, mapping):
    book = team(tmp_path)
    step(book, T0, mapping)
    step(book, T0 + H, mapping)  # the greeting has gone out
    book.set("予約", "R001", "開始日時", START + 2 * D)
    step(book, T0 + 2 * H, mapping)
    greetings = [k for k in rems(book) if ":挨拶:" in k]
    assert greetings == ["R001:挨拶:即時"]
    g = rems(book)["R001:挨拶:即時"]
    assert (g["状態"], g["送信予定日時"]) == ("送信済", T0)


# --------------------------------------------------------------------------- reschedules


def test_reschedule_moves_pending_protected_steps_and_keeps_sent_ones(tmp_path, mapping):
    book = team(tmp_path)
    step(book, T0, mapping)
    book.set("予約", "R001", "開始日時", START + 3 * D)
    now = T0 + H
    step(book, now, mapping)
    r = rems(book)
    for s in PROTECTED:
        row = r[f"R001:個別相談設定中:{s}"]
        assert row["状態"] == "予定" and row["理由"] == "日程変更" and row["更新日時"] == now
    assert r["R001:個別相談設定中:前日"]["送信予定日時"] == START + 3 * D - 24 * H
    assert r["R001:挨拶:即時"]["状態"] == "送信済"  # sent stays sent, unmoved
    assert r["R001:挨拶:即時"]["送信予定日時"] == T0
    assert not ops(book)


def test_reschedule_to_an_earlier_time_skips_what_is_now_past_and_cancels_nothing(tmp_path, mapping):
    book = team(tmp_path)
    step(book, T0, mapping)
    soon = T0 + 20 * H  # tomorrow 06:00: 3日前 and 前日 are already past at the new time
    book.set("予約", "R001", "開始日時", soon)
    step(book, T0 + H, mapping)
    r = rems(book)
    assert (r["R001:個別相談設定中:3日前"]["状態"], r["R001:個別相談設定中:3日前"]["理由"]) == (
        "スキップ", "日程変更: 過去のため スキップ")
    assert r["R001:個別相談設定中:前日"]["状態"] == "スキップ"
    one_hour = r["R001:個別相談設定中:1時間前"]
    assert (one_hour["状態"], one_hour["送信予定日時"]) == ("予定", soon - H)
    assert "取消" not in {row["状態"] for row in r.values()}
    assert not ops(book)


def test_moved_earlier_then_back_the_skipped_steps_are_pending_again_and_a_cancel_lists_them(tmp_path, mapping):
    """The LINE tool times its reminders from the booking: moved back, it sends the steps the move
    had made past. Left スキップ, a cancel afterwards would not list them for deletion, and the
    cancelled customer would get them."""
    book = team(tmp_path)
    step(book, T0, mapping)
    book.set("予約", "R001", "開始日時", T0 + 20 * H)  # 3日前 and 前日 are past at this time: スキップ
    step(book, T0 + H, mapping)
    book.set("予約", "R001", "開始日時", START)  # back to a week ahead
    step(book, T0 + 2 * H, mapping)
    r = rems(book)
    for name, hours in (("3日前", 72), ("前日", 24), ("1時間前", 1)):
        row = r[f"R001:個別相談設定中:{name}"]
        assert (row["状態"], row["送信予定日時"], row["理由"]) == ("予定", START - hours * H, "日程変更")
    assert not plan_at(book, T0 + 2 * H, mapping)
    book.set("予約", "R001", "ステータス", "キャンセル")
    step(book, T0 + 3 * H, mapping)
    assert {op["内容"] for op in ops(book).values()} == {f"R001:個別相談設定中:{n}" for n in PROTECTED}


def test_reschedule_while_a_step_was_pending_and_the_greeting_pending(tmp_path, mapping):
    book = team(tmp_path)
    step(book, T0, mapping)
    book.set("予約", "R001", "開始日時", START + D)
    step(book, T0, mapping)  # same moment: the greeting is still pending, and stays pending
    g = rems(book)["R001:挨拶:即時"]
    assert (g["状態"], g["送信予定日時"], g["理由"]) == ("予定", T0, "新規予約")


def test_unreadable_start_is_an_error_and_changes_no_reminder(tmp_path, mapping):
    book = team(tmp_path, bookings=[booking("R001", "C001", START), booking("R002", "C001", "11/30 14:00")])
    step(book, T0, mapping)
    assert "予約!R002!開始日時" in book.by_key("エラー")
    assert {r["予約ID"] for r in rems(book).values()} == {"R001"}
    before = rems(book)
    book.set("予約", "R001", "開始日時", "来週のどこか")
    step(book, T0 + H, mapping)
    after = rems(book)
    assert "予約!R001!開始日時" in book.by_key("エラー")
    moved = {k for k in after if after[k]["送信予定日時"] != before[k]["送信予定日時"]}
    assert not moved
    assert {k for k in after if after[k]["状態"] != before[k]["状態"]} == {"R001:挨拶:即時"}  # only what was sent
    book.set("予約", "R001", "開始日時", START + D)  # fixed: the steps follow the new time
    step(book, T0 + 2 * H, mapping)
    assert rems(book)["R001:個別相談設定中:前日"]["送信予定日時"] == START


# --------------------------------------------------------------------------- cancels


@pytest.mark.parametrize("status", ["キャンセル", "事前決済店舗都合キャンセル", "キャンセル料未払い"])
def test_cancel_cancels_every_pending_step_and_lists_each_for_deletion(tmp_path, mapping, status):
    book = team(tmp_path)
    step(book, T0, mapping)
    now = T0 + H
    book.set("予約", "R001", "ステータス", status)
    step(book, now, mapping)
    r = rems(book)
    assert r["R001:挨拶:即時"]["状態"] == "送信済"
    for s in PROTECTED:
        row = r[f"R001:個別相談設定中:{s}"]
        assert (row["状態"], row["理由"], row["更新日時"]) == ("取消", "キャンセル", now)
    listed = ops(book)
    assert set(listed) == {f"リマインド削除:R001:個別相談設定中:{s}" for s in PROTECTED}
    for op_id, op in listed.items():
        rid = op_id.split(":", 1)[1]
        assert (op["操作"], op["内容"], op["期限"], op["営業担当"]) == ("リマインド削除", rid, r[rid]["送信予定日時"], "佐藤")
        assert op["お客様番号"] == "C001" and not op["対応済"]


def test_a_pending_greeting_is_cancelled_too(tmp_path, mapping):
    book = team(tmp_path)
    step(book, T0, mapping)
    book.set("予約", "R001", "ステータス", "キャンセル")
    step(book, T0, mapping)
    assert set(states(book).values()) == {"取消"}
    assert "リマインド削除:R001:挨拶:即時" in ops(book)


def test_a_deleted_booking_row_counts_as_cancelled(tmp_path, mapping):
    book = team(tmp_path, bookings=[booking("R001", "C001", START), booking("R002", "C001", START + D, 営業担当="鈴木")])
    step(book, T0, mapping)
    book.delete("予約", "R002")
    step(book, T0 + H, mapping)
    assert set(states(book, "R002").values()) == {"送信済", "取消"}
    assert {v for k, v in states(book, "R002").items() if k.startswith("個別相談設定中")} == {"取消"}
    assert set(states(book, "R001").values()) <= {"送信済", "予定"}
    listed = ops(book)
    assert len(listed) == 3 and {op["営業担当"] for op in listed.values()} == {"鈴木"}
    assert not plan_at(book, T0 + H, mapping)


def test_a_booking_moved_to_another_customer_is_cancelled_for_that_customer(tmp_path, mapping):
    """Pending steps follow お客様番号 as they follow 営業担当; sent ones keep who they went to. So the
    deletions and the cancel message of a row deleted later are listed for the customer who held it."""
    other = customer("C002", "佐々木", "次郎", LINEユーザーID="U" + "2" * 32)
    book = team(tmp_path, customers=[customer("C001", LINEユーザーID="U" + "1" * 32), other])
    step(book, T0, mapping)
    book.set("予約", "R001", "お客様番号", "C002")
    step(book, T0 + H, mapping)
    who = {k.split(":", 1)[1]: (r["状態"], r["お客様番号"]) for k, r in rems(book).items()}
    assert who["挨拶:即時"] == ("送信済", "C001")  # the greeting went to C001 at T0
    assert {who[f"個別相談設定中:{s}"] for s in PROTECTED} == {("予定", "C002")}
    book.delete("予約", "R001")
    step(book, T0 + 2 * H, mapping, full=True)
    listed = book.by_key("L-Step操作")
    assert {r["お客様番号"] for r in listed.values() if r["操作"] in ("リマインド削除", "メッセージ送信")} == {"C002"}
    assert not plan_at(book, T0 + 2 * H, mapping)


def test_a_booking_id_on_two_rows_is_not_a_deleted_booking(tmp_path, mapping):
    book = team(tmp_path)
    step(book, T0, mapping)
    book.add("予約", booking("R001", "C001", START))  # a copy-paste: the key is now ambiguous
    step(book, T0 + H, mapping)
    assert "取消" not in set(states(book).values())
    assert not ops(book)


def test_cancelled_steps_stay_cancelled_once_their_deletion_is_done(tmp_path, mapping):
    book = team(tmp_path)
    step(book, T0, mapping)
    book.set("予約", "R001", "ステータス", "キャンセル")
    step(book, T0 + H, mapping)
    for op_id in ops(book):
        book.set("L-Step操作", op_id, "対応済", "TRUE")  # staff deleted them in the LINE tool
    book.set("予約", "R001", "ステータス", "予約中来店前")
    book.set("予約", "R001", "開始日時", START + D)
    step(book, T0 + 2 * H, mapping)
    assert {v for k, v in states(book).items() if k.startswith("個別相談設定中")} == {"取消"}


def test_a_cancel_undone_before_its_deletions_were_done_gets_its_steps_back(tmp_path, mapping):
    """The LINE tool still holds them: pending again (and moved with the start), their deletions
    closed rather than chased, which would have staff delete an active booking's Zoom-link reminders."""
    book = team(tmp_path)
    step(book, T0, mapping)
    book.set("予約", "R001", "ステータス", "キャンセル")
    step(book, T0 + H, mapping)
    book.set("予約", "R001", "ステータス", "予約中来店前")  # the cancel was a mistake
    book.set("予約", "R001", "開始日時", START + D)
    outbox = Outbox()
    step(book, T0 + 2 * H, mapping, outbox, full=True)
    protected = {k: r for k, r in rems(book).items() if r["系列"] == "個別相談設定中"}
    assert {r["状態"] for r in protected.values()} == {"予定"}
    assert rems(book)["R001:個別相談設定中:前日"]["送信予定日時"] == START + D - D  # moved with the start
    assert all(op["対応済"] is True and op["理由"] == "不要になりました（予約 R001 はキャンセルではなくなりました）"
               for op in ops(book).values()) and len(ops(book)) == 3
    assert not plan_at(book, T0 + 2 * H, mapping)
    step(book, START, mapping, outbox, full=True)  # an hour before the 1時間前 step: nobody is chased
    assert not [m for m in outbox.messages if "未対応" in m[2]]


def test_steps_back_after_an_undone_cancel_take_the_bookings_salesperson_and_customer(tmp_path, mapping):
    other = customer("C002", "佐々木", "次郎")
    book = team(tmp_path, customers=[customer("C001"), other])
    step(book, T0, mapping, full=True)
    book.set("予約", "R001", "ステータス", "キャンセル")
    step(book, T0 + H, mapping, full=True)
    book.set("予約", "R001", "ステータス", "予約中来店前")
    book.set("予約", "R001", "営業担当", "鈴木")
    book.set("予約", "R001", "お客様番号", "C002")
    step(book, T0 + 2 * H, mapping, full=True)
    back = {(r["状態"], r["営業担当"], r["お客様番号"]) for r in rems(book).values() if r["系列"] == "個別相談設定中"}
    assert back == {("予定", "鈴木", "C002")}
    assert not reconcile(check(book.read(), mapping), at(T0 + 2 * H), mapping)


def test_a_deletion_withdrawn_by_a_run_is_not_chased_by_it(tmp_path, mapping):
    """The cancel is undone in the hour before a step's send time: its deletion is closed, and the
    same run does not tell anyone to do it."""
    book = team(tmp_path)
    step(book, T0, mapping, full=True)
    book.set("予約", "R001", "ステータス", "キャンセル")
    step(book, T0 + H, mapping, full=True)
    for op_id in ops(book):
        if not op_id.endswith("1時間前"):
            book.set("L-Step操作", op_id, "対応済", "TRUE")
    book.set("予約", "R001", "ステータス", "予約中来店前")
    outbox = Outbox()
    step(book, START - 90 * MIN, mapping, outbox, full=True)  # 1時間前 is due at 13:00, chased from 12:00
    assert states(book)["個別相談設定中:1時間前"] == "予定"
    assert not [m for m in outbox.messages if "未対応" in m[2]]


def test_cancelled_again_after_an_undone_cancel_its_steps_are_listed_for_deletion_again(tmp_path, mapping):
    book = team(tmp_path)
    step(book, T0, mapping, full=True)  # full: the queue rule withdraws the deletions of an undone cancel
    for hour, status in ((1, "キャンセル"), (2, "予約中来店前"), (3, "キャンセル")):
        book.set("予約", "R001", "ステータス", status)
        step(book, T0 + hour * H, mapping, full=True)
    listed = ops(book)
    open_now = {k for k, op in listed.items() if not op["対応済"]}
    assert open_now == {f"リマインド削除:R001:個別相談設定中:{n}#2" for n in PROTECTED} and len(listed) == 6
    assert not reconcile(check(book.read(), mapping), at(T0 + 4 * H), mapping)  # every rule: nothing more

# --------------------------------------------------------------------------- blacklist, menus, mapping


def test_a_blacklisted_customer_gets_nothing_planned(tmp_path, mapping):
    book = team(tmp_path, customers=[customer("C001", ブラックリストメモ="無断キャンセル3回"), customer("C002")],
                bookings=[booking("R001", "C001", START), booking("R002", "C002", START)])
    step(book, T0, mapping)
    assert {r["予約ID"] for r in rems(book).values()} == {"R002"}


def test_an_unknown_customer_gets_nothing_planned(tmp_path, mapping):
    book = team(tmp_path, bookings=[booking("R001", "C999", START)])
    step(book, T0, mapping)
    assert rems(book) == {}


def test_a_team_adds_a_step_and_a_series_without_code(tmp_path, mapping):
    data = mapping.model_dump(mode="json")
    series = data["reminders"]["series"]
    series[1]["steps"].append({"name": "2日前朝", "days_before": 2, "at_time": "09:30"})
    series.append({"name": "2回目案内", "menus": ["2回目面談"], "steps": [{"name": "前日", "hours_before": 24}]})
    custom = with_reminders(mapping, series=series)
    book = team(tmp_path, bookings=[booking("R001", "C001", START), booking("R002", "C001", START + D, メニュー="2回目面談")])
    step(book, T0, custom)
    r = rems(book)
    assert r["R001:個別相談設定中:2日前朝"]["送信予定日時"] == dt.datetime(2026, 11, 25, 9, 30)
    assert "R001:2回目案内:前日" not in r  # that series is for another menu
    assert r["R002:2回目案内:前日"]["送信予定日時"] == START
    book.set("予約", "R001", "開始日時", START + D)
    step(book, T0 + H, custom)
    assert rems(book)["R001:個別相談設定中:2日前朝"]["送信予定日時"] == dt.datetime(2026, 11, 26, 9, 30)


def test_bad_reminder_mappings_are_refused(mapping):
    with pytest.raises(MappingError, match="protected_series"):
        _validated(mapping, protected_series="ない系列")
    series = mapping.model_dump(mode="json")["reminders"]["series"]
    series[1]["steps"].append({"name": "朝", "days_before": 1, "at_time": "9時"})
    with pytest.raises(MappingError, match="HH:MM"):
        _validated(mapping, series=series)


def _validated(mapping: Mapping, **changes) -> Mapping:
    from pydantic import ValidationError

    from tasks.mapping import _explain

    try:
        return with_reminders(mapping, **changes)
    except ValidationError as exc:
        raise MappingError(_explain(exc)) from None


# --------------------------------------------------------------------------- the chase


def test_an_operation_not_done_an_hour_before_its_due_is_chased_once_to_salesperson_and_ops(tmp_path, mapping):
    book = team(tmp_path)
    step(book, T0, mapping)
    book.set("予約", "R001", "ステータス", "キャンセル")
    step(book, T0 + H, mapping)
    op_id = "リマインド削除:R001:個別相談設定中:3日前"
    due = START - 72 * H
    outbox = Outbox()
    step(book, due - 2 * H, mapping, outbox)
    assert not [i for i in outbox.ids if i.startswith("chase:")]
    step(book, due - H, mapping, outbox)
    chased = sorted(i for i in outbox.ids if i.startswith("chase:"))
    assert chased == [f"chase:{op_id}:佐藤", f"chase:{op_id}:運営"]
    notices = book.by_key("通知")
    assert notices[f"chase:{op_id}:佐藤"]["種別"] == mapping.templates["operation_due"].title
    assert mapping.templates["operation_due"].urgent
    assert "山田 太郎" in notices[f"chase:{op_id}:佐藤"]["本文"]
    step(book, due - H / 2, mapping, outbox)
    assert sorted(i for i in outbox.ids if i.startswith("chase:")) == chased  # once


def test_open_operations_follow_a_reassignment_and_the_chase_goes_to_the_new_salesperson(tmp_path, mapping):
    """A salesperson is told only about their own customers: when the customer and the booking pass
    from 佐藤 to 鈴木, the open L-Step操作 rows go too (営業担当, and the chase of that same run);
    rows already done or closed keep 佐藤."""
    book = team(tmp_path)
    step(book, T0, mapping, full=True)
    book.set("予約", "R001", "ステータス", "キャンセル")
    book.set("予約", "R001", "キャンセル区分", "日程変更希望")
    step(book, T0 + H, mapping, full=True)
    done = "リマインド削除:R001:個別相談設定中:3日前"
    book.set("L-Step操作", done, "対応済", "TRUE")
    before = book.by_key("L-Step操作")
    assert {o["操作"] for o in before.values() if not o["対応済"]} == {"リマインド削除", "メッセージ送信", "タグ削除"}
    assert {o["営業担当"] for o in before.values()} == {"佐藤"}
    book.set("予約", "R001", "営業担当", "鈴木")
    book.set("顧客", "C001", "営業担当", "鈴木")
    chased = "リマインド削除:R001:個別相談設定中:前日"
    outbox = Outbox()
    step(book, START - 24 * H - H, mapping, outbox, full=True)  # 前日 is due in an hour
    after = book.by_key("L-Step操作")
    assert {k: o["営業担当"] for k, o in after.items() if not o["対応済"]} == dict.fromkeys(
        [k for k, o in before.items() if not o["対応済"]], "鈴木")
    assert {k: o["営業担当"] for k, o in after.items() if o["対応済"]} == dict.fromkeys(
        [k for k, o in before.items() if o["対応済"]], "佐藤")
    assert sorted(t for t in outbox.to if t[0].startswith("chase:")) == [(f"chase:{chased}:運営", "運営"),
                                                                        (f"chase:{chased}:鈴木", "鈴木")]
    assert not plan_at(book, START - 24 * H - H, mapping) and not reconcile(
        check(book.read(), mapping), at(START - 24 * H - H), mapping)


def test_deletions_follow_a_reassignment_even_when_their_reminder_rows_are_gone(tmp_path, mapping):
    """The リマインドID names the booking: a person who cleared リマインド does not leave the
    deletions, and their chase, with the salesperson who no longer has the customer."""
    book = team(tmp_path)
    step(book, T0, mapping, full=True)
    book.set("予約", "R001", "ステータス", "キャンセル")
    step(book, T0 + H, mapping, full=True)
    for rid in list(book.by_key("リマインド")):
        book.delete("リマインド", rid)
    book.set("予約", "R001", "営業担当", "鈴木")
    book.set("顧客", "C001", "営業担当", "鈴木")
    outbox = Outbox()
    step(book, START - 24 * H - H, mapping, outbox, full=True)
    owners = {k: o["営業担当"] for k, o in book.by_key("L-Step操作").items() if not o["対応済"]}
    assert [k for k in owners if k.startswith("リマインド削除")] and set(owners.values()) == {"鈴木"}
    assert {to for i, to in outbox.to if i.startswith("chase:")} == {"鈴木", "運営"}


def test_a_done_operation_is_not_chased_and_urgent_ones_go_in_quiet_hours(tmp_path, mapping):
    book = team(tmp_path, bookings=[booking("R001", "C001", dt.datetime(2026, 11, 23, 23, 0))])
    step(book, T0, mapping)
    book.set("予約", "R001", "ステータス", "キャンセル")
    step(book, T0 + H, mapping)
    book.set("L-Step操作", "リマインド削除:R001:個別相談設定中:3日前", "対応済", "TRUE")
    outbox = Outbox()
    night = dt.datetime(2026, 11, 22, 22, 30)  # quiet hours; 前日 (22:59 tonight) is due within the hour
    step(book, night, mapping, outbox)
    assert sorted(outbox.ids) == [f"chase:リマインド削除:R001:個別相談設定中:前日:{r}" for r in ("佐藤", "運営")]


def test_a_cancel_within_the_hour_before_a_send_is_chased_in_the_same_run(tmp_path, mapping):
    book = team(tmp_path)
    step(book, T0, mapping)
    now = START - H - dt.timedelta(minutes=20)  # 1時間前 goes out in 20 minutes
    book.set("予約", "R001", "ステータス", "キャンセル")
    outbox = Outbox()
    step(book, now, mapping, outbox)
    assert sorted(outbox.ids) == [f"chase:リマインド削除:R001:個別相談設定中:1時間前:{r}" for r in ("佐藤", "運営")]
    again = step(book, now, mapping, outbox)
    assert not again.plan and len(outbox.ids) == 2


def test_the_chase_looks_back_at_most_the_lookback(tmp_path, mapping):
    book = team(tmp_path)
    step(book, T0, mapping)
    book.set("予約", "R001", "ステータス", "キャンセル")
    step(book, T0 + H, mapping)
    outbox = Outbox()
    step(book, START + (mapping.lookback_days + 1) * D, mapping, outbox)
    assert not outbox.ids


# --------------------------------------------------------------------------- whole runs


def test_two_runs_at_the_same_moment_send_each_notice_once_with_every_rule(tmp_path, mapping):
    book = team(tmp_path, [customer("C001"), customer("C002", "鈴木", "花子", ブラックリストメモ="出禁")],
                [booking("R001", "C001", START), booking("R002", "C001", T0 + 90 * MIN), booking("R003", "C002", START)])
    outbox = Outbox()
    first = step(book, T0, mapping, outbox, full=True)
    assert first.plan and "alert:R003:blacklisted" in outbox.ids
    # R002 starts at 11:30: its 1時間前 (10:30) is pending; cancel it, and run twice at one moment
    assert rems(book)["R002:個別相談設定中:1時間前"]["状態"] == "予定"
    book.set("予約", "R002", "ステータス", "キャンセル")
    sent_before = len(outbox.ids)
    step(book, T0, mapping, outbox, full=True)
    assert {f"chase:リマインド削除:R002:個別相談設定中:1時間前:{r}" for r in ("佐藤", "運営")} <= set(outbox.ids[sent_before:])
    again = step(book, T0, mapping, outbox, full=True)
    assert not again.plan and not again.deliveries
    assert len(outbox.ids) == len(set(outbox.ids))
    assert rems(book)["R002:個別相談設定中:1時間前"]["状態"] == "取消"


def test_baseline_records_deletions_as_done_and_the_next_run_is_quiet(tmp_path, mapping):
    book = team(tmp_path)
    step(book, T0, mapping, full=True)
    book.set("予約", "R001", "ステータス", "キャンセル")
    outbox = Outbox()
    step(book, T0 + H, mapping, outbox, full=True, baseline=True)
    assert len(ops(book)) == 3 and not outbox.ids and all(op["対応済"] for op in ops(book).values())
    assert not step(book, T0 + H, mapping, outbox, full=True).plan and not outbox.ids


# --------------------------------------------------------------------------- the property
#
# Histories are long and many, so the property runs the rules on frames and applies each plan to
# them as check would read it back (the round trip through a real sheet is covered above).


HOURS = st.integers(-24, 240)  # a start relative to now; or time passing (in half hours: up to five days)
HISTORIES = st.tuples(
    st.lists(HOURS, min_size=1, max_size=3),  # the bookings there are at first, by start
    st.lists(st.tuples(st.sampled_from(["create", "move", "salesperson", "actions", "cancel", "delete", "pass"]),
                       st.integers(0, 2), HOURS),  # what happens, to which booking
             min_size=1, max_size=10),
)


@settings(max_examples=40, deadline=None)
@given(history=HISTORIES)
def test_property_random_booking_histories(history):
    """A protected step is 取消 only when its booking is cancelled, a sent step never changes, a
    booking never has two greetings, and reconciling again right after applying changes nothing."""
    mapping = _base_mapping()
    frames = _base_frames(mapping)
    now = at(T0)
    cancelled: set[str] = set()
    created: set[str] = set()
    sent: dict[str, tuple] = {}
    starts, events = history
    for action, which, hours in [("create", i, h) for i, h in enumerate(starts)] + events:
        bid = f"R{which}"
        if action == "create":
            if bid in created:
                continue
            frames = _with_booking(frames, mapping, bid, f"C00{1 + which % 2}", now + hours * pd.Timedelta(hours=1))
            created.add(bid)
        elif action == "pass":
            now += abs(hours) * pd.Timedelta(minutes=30)
        elif bid in created and bid not in cancelled:
            if action == "delete":
                frames = _edited(frames, "bookings", drop=bid)
                cancelled.add(bid)
            else:
                field, value = {
                    "move": ("start", now + hours * pd.Timedelta(hours=1)),
                    "salesperson": ("salesperson", "鈴木" if hours % 2 else "佐藤"),
                    "actions": ("run_actions", "実行しない" if hours % 2 else "実行する"),
                    "cancel": ("status", "キャンセル"),
                }[action]
                frames = _edited(frames, "bookings", sets=[(bid, field, value)], mapping=mapping)
                cancelled |= {bid} if action == "cancel" else set()
        frames = _applied(frames, _mine(frames, now, mapping), mapping)
        assert not _mine(frames, now, mapping), "a second reconcile changed something"
        r = frames["reminders"].data
        for rid, old in sent.items():
            assert _kept(r.loc[rid]) == old, rid
        for rid, row in r[r["state"] == "送信済"].iterrows():
            sent.setdefault(rid, _kept(row))
        protected = r[(r["series"] == mapping.reminders.protected_series) & (r["state"] == "取消")]
        assert set(protected["booking_id"]) <= cancelled
        greetings = r.loc[r["series"] == "挨拶", "booking_id"]
        assert not greetings.duplicated().any()
        assert set(r["booking_id"]) <= created


def _kept(row) -> tuple:
    return tuple(str(row[f]) for f in ("state", "send_at", "reason", "updated_at", "salesperson"))


MINE = (reminders, booking_alerts, remembered_start_and_salesperson)


def _mine(frames, now, mapping) -> Plan:
    return combine([rule(frames, now, mapping) for rule in MINE])


_BASE: dict = {}


def _base_mapping() -> Mapping:
    if "mapping" not in _BASE:
        _BASE["mapping"] = load_mapping()
    return _BASE["mapping"]


def _base_frames(mapping):
    if "frames" not in _BASE:
        _BASE["frames"] = check(team_tabs([customer("C001"), customer("C002", 営業担当="鈴木")], []), mapping)
    return _BASE["frames"]


def _as_read(table, field: str, value, mapping):
    column = table.spec.column(field)
    vocab = tuple(mapping.vocab.get(column.vocab or "", ()))
    return normalize_value(column.type, value, vocab=vocab, truths=mapping.check_truths)[0]


def _edited(frames, name, *, sets=(), rows=(), drop=None, mapping=None) -> Frames:
    """A copy of `frames` with cells set, rows added (key -> {field: value}) or a row dropped."""
    t = frames[name]
    data, raw, bad = t.data.copy(), t.raw.copy(), t.bad.copy()
    for key, field, value in sets:
        data.at[key, field] = _as_read(t, field, value, mapping)
        raw.at[key, field] = value
    if rows:
        keys = pd.Index([k for k, _ in rows], name=data.index.name)
        new = pd.DataFrame([{f: _as_read(t, f, v.get(f), mapping) for f in t.spec.fields} for _, v in rows], index=keys)
        new[ROW] = range(len(data) + 2, len(data) + 2 + len(new))
        data = pd.concat([data, new.astype(object)]) if len(data) else new
        for f in t.spec.fields:
            kind = t.spec.column(f).type
            if kind == "datetime":
                data[f] = pd.to_datetime(data[f], utc=True).dt.tz_convert("Asia/Tokyo").astype(DATETIME)
            elif kind == "check":
                data[f] = data[f].fillna(False).astype(bool)
        raw = pd.concat([raw, pd.DataFrame([{f: v.get(f) for f in t.spec.fields} for _, v in rows], index=keys)])
        bad = pd.concat([bad, pd.DataFrame(False, index=keys, columns=bad.columns)])
    if drop is not None:
        data, raw, bad = data.drop(index=drop), raw.drop(index=drop), bad.drop(index=drop)
    tables = dict(frames.tables)
    tables[name] = replace(t, data=data, raw=raw, bad=bad)
    return Frames(tables, frames.problems)


def _applied(frames, plan: Plan, mapping) -> Frames:
    for name in plan.tabs:
        sets = [(e.key, e.field, e.new) for e in plan.edits if e.tab == name]
        rows = [(a.key, dict(a.values)) for a in plan.appends if a.tab == name]
        frames = _edited(frames, name, sets=sets, rows=rows, mapping=mapping)
    return frames


def _with_booking(frames, mapping, bid, cid, start) -> Frames:
    values = {"booking_id": bid, "customer_id": cid, "salesperson": "佐藤", "menu": "個別相談", "start": start,
              "status": "予約中来店前", "run_actions": "実行する"}
    return _edited(frames, "bookings", rows=[(bid, values)], mapping=mapping)
