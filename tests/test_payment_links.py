"""決済リンク依頼, rule by rule (CONTRACT.md), on real .xlsx workbooks through whole runs."""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
import yaml

from flows.pipeline import run
from tasks.a1 import a1
from tasks.check import check
from tasks.mapping import load_mapping
from tasks.reconcile import reconcile
from tasks.rules.errors import error_rows
from tasks.rules.payment_links import payment_links
from tasks.tell import failed_notices
from tasks.workbooks.google import Backoff, GoogleWorkbook
from tasks.workbooks.local import LocalWorkbook
from tests.conftest import NOW, STAFF_HEADERS, booking, customer, set_cell, tab_records, team_tabs, write_book
from tests.sheets_standin import SheetsStandin, service_account_info

HELD = dt.datetime(2026, 11, 19, 14, 0)  # yesterday's meeting
LINK = "https://pay.example.com/l/09012345678"  # digits a phone mask would eat


class Outbox:
    """A Send that records what was sent."""

    def __init__(self):
        self.sent: list[tuple[str, str, str, str]] = []

    def __call__(self, recipient, title, body, key):
        self.sent.append((recipient, title, body, key))

    def to(self, recipient: str) -> list[str]:
        return [body for r, _, body, _ in self.sent if r == recipient]

    def clear(self):
        self.sent.clear()


@pytest.fixture
def outbox():
    return Outbox()


def won(bid="R001", cid="C001", **kw):
    fields = {"結果": "成約", "プラン": "スタンダード", "お礼LINE": "TRUE", **kw}
    return booking(bid, cid, HELD, "来店済み", **fields)


def book(tmp_path, bookings, customers=None, staff=None) -> Path:
    tabs = team_tabs(customers or [customer("C001"), customer("C002", "鈴木", "花子", 営業担当="鈴木")], bookings)
    if staff is not None:
        tabs["担当者"] = [STAFF_HEADERS, *staff]
    return write_book(tmp_path / "team.xlsx", tabs)


def requests(path) -> dict[str, dict]:
    return {r["依頼ID"]: r for r in tab_records(path, "決済リンク依頼")}


def notices(path) -> dict[str, dict]:
    return {r["通知ID"]: r for r in tab_records(path, "通知")}


def delete_row(path, title, key):
    wb = openpyxl.load_workbook(path)
    ws = wb[title]
    for r in range(2, ws.max_row + 1):
        if ws.cell(row=r, column=1).value == key:
            ws.delete_rows(r)
            break
    else:
        raise KeyError(key)
    wb.save(path)


def append_row(path, title, values):
    wb = openpyxl.load_workbook(path)
    wb[title].append(values)
    wb.save(path)


def reverse_rows(path, title):
    wb = openpyxl.load_workbook(path)
    ws = wb[title]
    rows = [list(r) for r in ws.iter_rows(min_row=2, values_only=True)]
    ws.delete_rows(2, ws.max_row)
    for row in reversed(rows):
        ws.append(row)
    wb.save(path)


def links_only(frames, now, mapping, baseline=False):
    """The rule under test, the エラー tab it feeds and the outbox's escalation: the real write and tell,
    without the cost of the other rules."""
    del baseline
    plan = payment_links(frames, now, mapping) | failed_notices(frames, now, mapping)
    return (plan | error_rows(frames, now, mapping, plan.problems)).sorted()


def go(path, mapping, send, now=NOW, full=False, **kw):
    return run(LocalWorkbook(path), mapping, now, send, plan_with=None if full else links_only, **kw)


# --------------------------------------------------------------------------- 成約 → one request


def test_won_booking_makes_one_request_to_the_link_maker(tmp_path, mapping, outbox):
    path = book(tmp_path, [won(), booking("R002", "C002", HELD, "来店済み", 結果="保留", お礼LINE="TRUE")])
    go(path, mapping, outbox)
    reqs = requests(path)
    assert list(reqs) == ["PL-R001"]
    r = reqs["PL-R001"]
    assert (r["予約ID"], r["お客様番号"], r["顧客名"], r["営業担当"], r["プラン"], r["作成担当"], r["状態"]) == (
        "R001", "C001", "山田 太郎", "佐藤", "スタンダード", "高橋", "依頼中")
    assert r["依頼日時"] == dt.datetime(2026, 11, 20, 10, 0) and r["送付済"] is False
    [told] = outbox.to("高橋")
    assert "山田 太郎 様" in told and "R001" in told and "スタンダード" in told and "『決済リンク依頼』タブ" in told
    assert notices(path)["payment_link_requested:PL-R001"]["状態"] == "送信済"


class DiesAfterTheWrite:
    """A workbook whose process dies right after the plan is written: the tell step never starts."""

    def __init__(self, path: Path):
        self.book = LocalWorkbook(path)

    def read(self):
        return self.book.read()

    def capacity(self):
        return self.book.capacity()

    @contextlib.contextmanager
    def transaction(self, titles):
        with self.book.transaction(titles) as tx:
            yield tx
        raise SystemExit("killed")  # the write landed; nothing is sent


def test_never_two_across_reruns_sorts_and_a_crash_before_telling(tmp_path, mapping, outbox):
    path = book(tmp_path, [won("R001"), won("R002", "C002", 営業担当="鈴木")])
    with pytest.raises(SystemExit):
        run(DiesAfterTheWrite(path), mapping, NOW, outbox, plan_with=links_only)
    assert set(requests(path)) == {"PL-R001", "PL-R002"} and outbox.sent == []
    assert {n["状態"] for n in notices(path).values()} == {"未送信"}  # recorded, not yet sent
    reverse_rows(path, "予約")
    reverse_rows(path, "決済リンク依頼")
    go(path, mapping, outbox, full=True)
    go(path, mapping, outbox, full=True)
    assert len(tab_records(path, "決済リンク依頼")) == 2
    assert len(outbox.to("高橋")) == 1  # both requests, one message, once
    assert "R001" in outbox.to("高橋")[0] and "R002" in outbox.to("高橋")[0]
    summary = go(path, mapping, outbox, full=True)
    assert not summary.plan


def test_a_deleted_request_is_not_recreated_while_the_booking_is_unchanged(tmp_path, mapping, outbox):
    path = book(tmp_path, [won()])
    go(path, mapping, outbox)
    delete_row(path, "決済リンク依頼", "PL-R001")
    summary = go(path, mapping, outbox)
    assert requests(path) == {} and not summary.plan
    assert len(outbox.to("高橋")) == 1
    # the booking changes: no longer 成約 → the maker is told (the episode closes) …
    set_cell(path, "予約", "R001", "結果", "保留")
    go(path, mapping, outbox)
    assert requests(path) == {}
    assert "取り消しました" in outbox.to("高橋")[-1]
    # … and a new 成約 is a new request
    set_cell(path, "予約", "R001", "結果", "成約")
    go(path, mapping, outbox)
    assert requests(path)["PL-R001"]["状態"] == "依頼中"
    assert "payment_link_requested:PL-R001#2" in notices(path)
    assert "決済リンクを作成してください" in outbox.to("高橋")[-1]


def test_not_needed_stops_everything(tmp_path, mapping, outbox):
    path = book(tmp_path, [won()])
    go(path, mapping, outbox)
    set_cell(path, "決済リンク依頼", "PL-R001", "状態", "不要")
    outbox.clear()
    assert not go(path, mapping, outbox).plan
    set_cell(path, "予約", "R001", "結果", "失注")  # not while 依頼中: stays 不要, nobody told
    later = NOW + pd.Timedelta(hours=30)
    go(path, mapping, outbox, now=later)
    assert requests(path)["PL-R001"]["状態"] == "不要"
    assert not any("決済リンク" in body for _, _, body, _ in outbox.sent)


# --------------------------------------------------------------------------- 決済リンク, 送付済


def test_https_link_makes_it_created_and_tells_the_salesperson_with_the_link(tmp_path, mapping, outbox):
    path = book(tmp_path, [won()])
    go(path, mapping, outbox)
    set_cell(path, "決済リンク依頼", "PL-R001", "決済リンク", LINK)
    go(path, mapping, outbox)
    r = requests(path)["PL-R001"]
    assert r["状態"] == "作成済" and r["更新日時"] == dt.datetime(2026, 11, 20, 10, 0)
    [told] = [b for b in outbox.to("佐藤") if "決済リンクができました" in b]
    assert LINK in told  # the link itself, not masked
    assert "「送付済」" in told and "K2" in told  # where: the 送付済 cell
    assert not go(path, mapping, outbox).plan


def test_invalid_link_is_an_error_row_and_the_state_stays(tmp_path, mapping, outbox):
    path = book(tmp_path, [won()])
    go(path, mapping, outbox)
    set_cell(path, "決済リンク依頼", "PL-R001", "決済リンク", "http://pay.example.com/x")
    go(path, mapping, outbox)
    assert requests(path)["PL-R001"]["状態"] == "依頼中"
    errors = {r["問題ID"]: r for r in tab_records(path, "エラー")}
    err = errors["決済リンク依頼!PL-R001!決済リンク"]
    assert err["タブ"] == "決済リンク依頼" and err["セル"] == "I2" and err["値"] == "http://pay.example.com/x"
    assert not [b for b in outbox.to("佐藤") if "決済リンクができました" in b]
    set_cell(path, "決済リンク依頼", "PL-R001", "決済リンク", LINK)  # fixed: the error leaves, the state moves
    go(path, mapping, outbox)
    assert requests(path)["PL-R001"]["状態"] == "作成済"
    assert "決済リンク依頼!PL-R001!決済リンク" not in {r["問題ID"] for r in tab_records(path, "エラー")}


def test_sent_ticked_makes_it_sent(tmp_path, mapping, outbox):
    path = book(tmp_path, [won()])
    go(path, mapping, outbox)
    set_cell(path, "決済リンク依頼", "PL-R001", "決済リンク", LINK)
    go(path, mapping, outbox)
    set_cell(path, "決済リンク依頼", "PL-R001", "送付済", "✓")
    go(path, mapping, outbox)
    assert requests(path)["PL-R001"]["状態"] == "送付済"
    set_cell(path, "予約", "R001", "結果", "保留")  # too late to cancel: sent is sent
    assert "payment_links" not in go(path, mapping, outbox).plan.tabs


# --------------------------------------------------------------------------- 取消, overdue


def test_outcome_moving_away_cancels_and_tells_the_maker_and_a_new_won_reopens(tmp_path, mapping, outbox):
    path = book(tmp_path, [won()])
    go(path, mapping, outbox)
    set_cell(path, "予約", "R001", "結果", "保留")
    go(path, mapping, outbox)
    assert requests(path)["PL-R001"]["状態"] == "取消"
    assert "PL-R001 を取り消しました" in outbox.to("高橋")[-1]
    assert not go(path, mapping, outbox).plan
    set_cell(path, "予約", "R001", "結果", "成約")
    go(path, mapping, outbox)
    assert requests(path)["PL-R001"]["状態"] == "依頼中"
    assert len(outbox.to("高橋")) == 3
    assert not go(path, mapping, outbox).plan


def test_deleted_booking_row_cancels_a_pending_request(tmp_path, mapping, outbox):
    path = book(tmp_path, [won(), booking("R009", "C001", dt.datetime(2026, 12, 1, 10, 0))])
    go(path, mapping, outbox)
    delete_row(path, "予約", "R001")
    go(path, mapping, outbox)
    assert requests(path)["PL-R001"]["状態"] == "取消"
    assert "取り消しました" in outbox.to("高橋")[-1]


def test_unreadable_outcome_or_repeated_booking_id_cancels_nothing(tmp_path, mapping, outbox):
    path = book(tmp_path, [won()])
    go(path, mapping, outbox)
    set_cell(path, "予約", "R001", "結果", "せいやく?")  # not a word of the vocabulary
    assert "payment_links" not in go(path, mapping, outbox).plan.tabs
    set_cell(path, "予約", "R001", "結果", "成約")
    wb = openpyxl.load_workbook(path)
    ws = wb["予約"]
    ws.append([c.value for c in ws[2]])  # the row twice: 予約ID repeated, the booking unreadable
    wb.save(path)
    assert "payment_links" not in go(path, mapping, outbox).plan.tabs
    assert requests(path)["PL-R001"]["状態"] == "依頼中"


def test_pending_over_24_hours_tells_ops_once_a_day(tmp_path, mapping, outbox):
    path = book(tmp_path, [won()])
    go(path, mapping, outbox)
    go(path, mapping, outbox, now=NOW + pd.Timedelta(hours=24))  # over 24 hours, not at 24
    assert not outbox.to("運営")
    day2 = NOW + pd.Timedelta(hours=25)
    go(path, mapping, outbox, now=day2)
    go(path, mapping, outbox, now=day2 + pd.Timedelta(hours=2))
    [told] = outbox.to("運営")
    assert "PL-R001" in told and "24時間を超えて" in told and "作成担当 高橋" in told
    go(path, mapping, outbox, now=NOW + pd.Timedelta(days=2))
    assert len(outbox.to("運営")) == 2
    assert {"payment_link_overdue:PL-R001:2026-11-21", "payment_link_overdue:PL-R001:2026-11-22"} <= set(notices(path))


# --------------------------------------------------------------------------- the maker, history, vocabulary


def test_no_active_link_maker_is_a_problem_and_the_request_waits(tmp_path, mapping, outbox):
    staff = [["佐藤", "営業", "sato", "TRUE"], ["高橋", "決済リンク作成", "links", "FALSE"], ["田中", "運営", "ops", "TRUE"]]
    path = book(tmp_path, [won()], staff=staff)
    go(path, mapping, outbox)
    assert requests(path) == {}
    assert "担当者!決済リンク作成!役割" in {r["問題ID"] for r in tab_records(path, "エラー")}
    set_cell(path, "担当者", "高橋", "有効", "TRUE")
    go(path, mapping, outbox)
    assert requests(path)["PL-R001"]["作成担当"] == "高橋"
    assert "担当者!決済リンク作成!役割" not in {r["問題ID"] for r in tab_records(path, "エラー")}


def test_first_active_maker_by_name(tmp_path, mapping, outbox):
    staff = [["佐藤", "営業", "sato", "TRUE"], ["渡辺", "決済リンク作成", "w", "TRUE"], ["伊藤", "決済リンク作成", "i", "TRUE"]]
    path = book(tmp_path, [won()], staff=staff)
    go(path, mapping, outbox)
    assert requests(path)["PL-R001"]["作成担当"] == min("渡辺", "伊藤")


def test_old_won_bookings_are_history_not_requests(tmp_path, mapping, outbox):
    old = booking("R001", "C001", dt.datetime(2026, 9, 1, 14, 0), "来店済み", 結果="成約", お礼LINE="TRUE")
    path = book(tmp_path, [old])
    go(path, mapping, outbox)
    assert requests(path) == {}


def test_unknown_state_word_is_a_problem(tmp_path, mapping, outbox):
    path = book(tmp_path, [won()])
    go(path, mapping, outbox)
    set_cell(path, "決済リンク依頼", "PL-R001", "状態", "完了")
    frames = check(LocalWorkbook(path).read(), mapping)
    plan = payment_links(frames, NOW, mapping)
    [p] = plan.problems
    assert p.problem_id == "決済リンク依頼!PL-R001!状態" and "不要" in p.message and not plan


def test_plan_follows_the_booking_while_pending(tmp_path, mapping, outbox):
    path = book(tmp_path, [won()])
    go(path, mapping, outbox)
    set_cell(path, "予約", "R001", "プラン", "プレミアム")
    go(path, mapping, outbox)
    assert requests(path)["PL-R001"]["プラン"] == "プレミアム"


def test_a_made_link_follows_its_booking_to_the_new_salesperson_but_keeps_its_plan(tmp_path, mapping, outbox):
    """The link is made; then the customer passes from 佐藤 to 鈴木 and the plan is edited. 鈴木 must
    send it (the row and the digest say so), 佐藤 hears no more of a customer no longer theirs, and the
    row keeps the plan the link was made for."""
    from tasks.rules.digest import digest

    path = book(tmp_path, [won()])
    go(path, mapping, outbox)
    set_cell(path, "決済リンク依頼", "PL-R001", "決済リンク", LINK)
    go(path, mapping, outbox)
    set_cell(path, "予約", "R001", "営業担当", "鈴木")
    set_cell(path, "予約", "R001", "プラン", "プレミアム")
    evening = pd.Timestamp("2026-11-20T18:00", tz="Asia/Tokyo")
    told = {a.get("recipient"): a.get("body") for a in digest(check(LocalWorkbook(path).read(), mapping), evening,
                                                               mapping).appends}
    assert "決済リンク送付 PL-R001" in told["鈴木"] and "佐藤" not in told  # before any reconcile saw it
    go(path, mapping, outbox)
    r = requests(path)["PL-R001"]
    assert (r["状態"], r["営業担当"], r["プラン"]) == ("作成済", "鈴木", "スタンダード")
    assert not payment_links(check(LocalWorkbook(path).read(), mapping), NOW, mapping)


def test_a_request_follows_its_booking_moved_to_another_customer(tmp_path, mapping, outbox):
    """R001 was booked under the wrong customer: the maker makes the link for the right one."""
    path = book(tmp_path, [won()])
    go(path, mapping, outbox)
    set_cell(path, "予約", "R001", "お客様番号", "C002")
    go(path, mapping, outbox)
    r = requests(path)["PL-R001"]
    assert (r["お客様番号"], r["顧客名"], r["営業担当"], r["状態"]) == ("C002", "鈴木 花子", "佐藤", "依頼中")
    set_cell(path, "決済リンク依頼", "PL-R001", "決済リンク", LINK)
    outbox.clear()
    go(path, mapping, outbox)
    [made] = outbox.to("佐藤")
    assert "鈴木 花子 様" in made
    assert not payment_links(check(LocalWorkbook(path).read(), mapping), NOW, mapping)


def test_rule_is_idempotent_and_deterministic(tmp_path, mapping, outbox):
    path = book(tmp_path, [won(), won("R002", "C002", 営業担当="鈴木")])
    frames = check(LocalWorkbook(path).read(), mapping)
    assert payment_links(frames, NOW, mapping) == payment_links(frames, NOW, mapping)
    go(path, mapping, outbox, full=True)
    assert "payment_links" not in reconcile(check(LocalWorkbook(path).read(), mapping), NOW, mapping).tabs


# --------------------------------------------------------------------------- the tab in another spreadsheet


def test_request_tab_may_live_in_another_spreadsheet(tmp_path, outbox):
    """Two Google spreadsheets on the Sheets stand-in; the mappings put 決済リンク依頼 in the second."""
    mappings = tmp_path / "mappings"
    shutil.copytree(load_mapping.__globals__["DEFAULT_DIR"], mappings, ignore=shutil.ignore_patterns("*.py", "__*"))
    tabs = yaml.safe_load((mappings / "tabs.yaml").read_text(encoding="utf-8"))
    tabs["tabs"]["payment_links"]["spreadsheet"] = "links"
    (mappings / "tabs.yaml").write_text(yaml.safe_dump(tabs, allow_unicode=True), encoding="utf-8")
    moved = load_mapping(mappings)
    main, links = "1PaymentMain", "1PaymentLinks"
    with SheetsStandin() as standin:
        standin.add_spreadsheet(main, team_tabs([customer("C001")], [won()]))
        standin.add_spreadsheet(links, {"シート1": []})
        sheets = GoogleWorkbook({"main": main, "links": links}, service_account_info(standin.url), endpoint=standin.url,
                                mapping=moved, backoff=Backoff(sleep=lambda s: None), timeout=(2, 10))
        run(sheets, moved, NOW, outbox)
        rows = standin.tab_values(links, "決済リンク依頼")
        assert [r[0] for r in rows[1:]] == ["PL-R001"]
        with pytest.raises(KeyError):
            standin.tab_values(main, "決済リンク依頼")
        cell = a1(2, rows[0].index("決済リンク") + 1)
        standin.set_cell(links, "決済リンク依頼", cell, LINK)  # the link maker, in their own spreadsheet
        run(sheets, moved, NOW, outbox)
        rows = standin.tab_values(links, "決済リンク依頼")
        assert rows[1][rows[0].index("状態")] == "作成済"
        assert any(LINK in b for b in outbox.to("佐藤"))
        assert not run(sheets, moved, NOW, outbox).plan
