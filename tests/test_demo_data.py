"""The synthetic team workbook: reproducible, shaped like CONTRACT.md, and messy in every promised way."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta

import openpyxl
import pytest

from tasks.demo_data import (
    ACTIVE,
    BOOKING_HEADERS,
    CANCELLED,
    CUSTOMER_HEADERS,
    HELD,
    STAFF_HEADERS,
    generate_frames,
    make_team_workbook,
    write_workbook,
)

NOW = datetime(2026, 11, 20, 10, 0)
FULLWIDTH_DIGIT = re.compile("[０-９]")
ALLOWED_EMAIL = re.compile(r"@(example\.(com|jp|co\.jp|ne\.jp)|leporto\.com)$")


@pytest.fixture(scope="module")
def tabs() -> dict[str, list[list]]:
    return generate_frames(300, seed=7, now=NOW)


def records(tabs: dict[str, list[list]], title: str) -> list[dict]:
    header, *rows = tabs[title]
    return [dict(zip(header, row, strict=True)) for row in rows]


def text(value) -> str:
    return unicodedata.normalize("NFKC", str(value)) if value is not None else ""


def full_name(c: dict) -> str:
    return re.sub(r"\s", "", text(c["姓"]) + text(c["名"]))


def phone_digits(value) -> str:
    if isinstance(value, int):
        return "0" + str(value)
    digits = re.sub(r"\D", "", text(value))
    return "0" + digits[2:] if text(value).startswith("+81") else digits


def start_of(value) -> datetime | None:
    """The few formats the generator writes, read back leniently (bad ones are None)."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, float):
        return datetime(1899, 12, 30) + timedelta(days=value)
    match = re.fullmatch(r"(\d{4})[/\-年](\d{1,2})[/\-月](\d{1,2})日? (\d{1,2}):(\d{2})", text(value))
    if not match:
        return None
    try:
        return datetime(*map(int, match.groups()))
    except ValueError:
        return None


def test_same_seed_same_rows_other_seed_other_rows():
    small = generate_frames(60, seed=3, now=NOW)
    assert small == generate_frames(60, seed=3, now=NOW)
    assert small != generate_frames(60, seed=4, now=NOW)


def test_the_clock_may_be_aware_or_naive_tokyo_time():
    naive = generate_frames(40, seed=1, now=NOW)
    assert naive == generate_frames(40, seed=1, now=datetime(2026, 11, 20, 1, 0, tzinfo=UTC))


def test_headers_are_exactly_the_contract_staff_columns(tabs):
    assert tabs["顧客"][0] == ["お客様番号", "姓", "名", "セイ", "メイ", "LINE名", "LINEユーザーID", "電話番号",
                             "メールアドレス", "流入経路", "セミナー参加日", "営業担当", "要注意メモ",
                             "ブラックリストメモ", "個別メモ", "初回登録日", "タグ"] == CUSTOMER_HEADERS
    assert tabs["予約"][0] == ["予約ID", "お客様番号", "営業担当", "メニュー", "開始日時", "ステータス",
                             "アクション実行", "Zoomリンク", "結果", "プラン", "お礼LINE",
                             "キャンセル区分"] == BOOKING_HEADERS
    assert tabs["担当者"][0] == ["名前", "役割", "通知先", "有効"] == STAFF_HEADERS
    assert all(len(row) == len(tabs[t][0]) for t in tabs for row in tabs[t])


def test_staff_roles_and_every_salesperson_is_known(tabs):
    staff = records(tabs, "担当者")
    assert Counter(s["役割"] for s in staff) == {"営業": 5, "決済リンク作成": 1, "運営": 1}
    sales = {s["名前"] for s in staff if s["役割"] == "営業"}
    assert {b["営業担当"] for b in records(tabs, "予約")} <= sales
    assert {c["営業担当"] for c in records(tabs, "顧客")} - {None} <= sales


def test_about_three_bookings_per_customer_in_the_window(tabs):
    customers, bookings = records(tabs, "顧客"), records(tabs, "予約")
    assert len(customers) == 300
    assert 2.7 <= len(bookings) / len(customers) <= 3.3
    starts = [b["開始日時"] for b in bookings if isinstance(b["開始日時"], datetime)]
    assert len(starts) > 0.75 * len(bookings)  # mostly real date-time cells, as Sheets stores typed dates
    assert all(NOW - timedelta(days=60) <= s < NOW + timedelta(days=30) for s in starts)
    assert all(10 <= s.hour < 20 and s.minute in (0, 30) for s in starts)


def test_values_are_shaped_like_the_contract(tabs):
    customers, bookings = records(tabs, "顧客"), records(tabs, "予約")
    assert all(re.fullmatch(r"C\d{6}", c["お客様番号"]) for c in customers)
    assert all(re.fullmatch(r"R\d{6}", b["予約ID"]) for b in bookings)
    assert all(re.fullmatch(r"U[0-9a-f]{32}", c["LINEユーザーID"]) for c in customers if c["LINEユーザーID"])
    assert {b["ステータス"] for b in bookings} == {*ACTIVE, HELD, *CANCELLED}
    assert Counter(b["メニュー"] for b in bookings).most_common(1)[0][0] == "個別相談"
    assert {b["メニュー"] for b in bookings} == {"個別相談", "2回目面談"}
    assert {b["結果"] for b in bookings} == {"成約", "保留", "失注", None}
    cancel_kinds = {b["キャンセル区分"] for b in bookings if b["ステータス"] in CANCELLED}
    assert cancel_kinds == {"日程変更希望", "キャンセルのみ", None}
    assert {b["アクション実行"] for b in bookings} == {"実行する", "実行しない", None}
    zoom = re.compile(r"https://zoom\.us/j/\d+(\?pwd=\w+)?")
    assert all(zoom.fullmatch(b["Zoomリンク"]) for b in bookings if b["Zoomリンク"])
    assert {"スタンダード", "プレミアム"} <= {b["プラン"] for b in bookings}
    assert {True, False, "✓"} <= {b["お礼LINE"] for b in bookings if b["ステータス"] == HELD}
    future = {b["ステータス"] for b in bookings if (s := start_of(b["開始日時"])) and s > NOW}
    assert set(ACTIVE) <= future


def test_synthetic_emails_use_reserved_domains_only(tabs):
    emails = [text(c["メールアドレス"]).strip().lower() for c in records(tabs, "顧客") if c["メールアドレス"]]
    assert len(emails) > 100
    assert all(ALLOWED_EMAIL.search(e) for e in emails), [e for e in emails if not ALLOWED_EMAIL.search(e)]


def test_customer_messiness_is_all_there(tabs):
    customers = records(tabs, "顧客")
    phones = [c["電話番号"] for c in customers if c["電話番号"] is not None]
    emails = [c["メールアドレス"] for c in customers if c["メールアドレス"]]
    assert any(isinstance(p, str) and FULLWIDTH_DIGIT.search(p) for p in phones)
    assert any(isinstance(p, int) and not str(p).startswith("0") for p in phones)  # leading 0 lost
    assert any(isinstance(p, str) and p.startswith("+81") for p in phones)
    valid = re.compile(r"0[789]0\d{8}|0[36]\d{8}")
    assert any(not valid.fullmatch(phone_digits(p)) for p in phones)  # a bad phone
    assert any(re.fullmatch(r"\d+@leporto\.com", e) for e in emails)  # phone-booking placeholder
    assert any(e != e.lower() and e.isascii() for e in emails)
    assert any(not e.isascii() and "＠" in e for e in emails)
    assert any(re.fullmatch("[ｦ-ﾟ]+", c["セイ"] or "") for c in customers)  # half-width kana
    assert any(re.fullmatch("[ぁ-ゖー]+", c["セイ"] or "") for c in customers)  # hiragana reading
    assert any("\u3000" in (c["姓"] or "") + (c["名"] or "") for c in customers)
    assert any((c["姓"] or "").endswith(" ") for c in customers)
    assert any(c["要注意メモ"] for c in customers) and any(c["ブラックリストメモ"] for c in customers)
    memos = [c["個別メモ"] for c in customers if c["個別メモ"]]
    assert any(m.startswith("=") for m in memos)
    tags = [c["タグ"] for c in customers if c["タグ"]]
    assert any("【流入】広告" in t for t in tags) and any("【セミナー】個別相談予約完了" in t for t in tags)
    assert any("、" in t for t in tags) and any("\n" in t for t in tags)


def test_dates_come_in_every_format_and_some_are_bad(tabs):
    starts = [b["開始日時"] for b in records(tabs, "予約")]
    kinds = {type(s).__name__ for s in starts}
    assert {"datetime", "float", "str"} <= kinds
    strings = [s for s in starts if isinstance(s, str)]
    assert any(re.fullmatch(r"\d{4}/\d{2}/\d{2} \d{2}:\d{2}", s) for s in strings)
    assert any(re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", s) for s in strings)
    assert any("年" in s for s in strings) and any(FULLWIDTH_DIGIT.search(s) for s in strings)
    assert any(re.fullmatch(r"\d{1,2}/\d{1,2} \d{2}:\d{2}", s) for s in strings)  # no year
    impossible = [s for s in strings if re.fullmatch(r"\d{4}/\d{2}/\d{2} \d{2}:\d{2}", s) and start_of(s) is None]
    assert impossible  # e.g. 2026/02/30
    assert any(not re.search(r"\d", text(s)) for s in strings)  # 来週
    registered = [c["初回登録日"] for c in records(tabs, "顧客")]
    assert {"date", "int", "str"} <= {type(r).__name__ for r in registered}


def test_duplicate_customers_exact_and_variant(tabs):
    customers = records(tabs, "顧客")
    by_name = defaultdict(list)
    for c in customers:
        by_name[full_name(c)].append(c)
    pairs = [group for group in by_name.values() if len(group) > 1]
    assert any(any(re.fullmatch(r"\d+@leporto\.com", c["メールアドレス"] or "") for c in g)
               and any(c["LINEユーザーID"] for c in g) for g in pairs)  # once by phone, once via LINE
    plain = str.maketrans("髙﨑邉澤濱嶋齋廣櫻國德冨惠關", "高崎辺沢浜島斎広桜国徳富恵関")
    spellings = defaultdict(set)
    for c in customers:
        spellings[full_name(c).translate(plain)].add(full_name(c))
    assert any(len(names) > 1 for names in spellings.values())  # 髙橋 beside 高橋


def test_booking_messiness_is_all_there(tabs):
    customers, bookings = records(tabs, "顧客"), records(tabs, "予約")
    known = {c["お客様番号"] for c in customers}
    assert any(n > 1 for n in Counter(b["予約ID"] for b in bookings).values())
    assert any(b["お客様番号"] not in known for b in bookings)
    active = defaultdict(list)
    for b in bookings:
        if b["ステータス"] in ACTIVE and (start := start_of(b["開始日時"])):
            active[b["営業担当"]].append(start)
    assert any(b - a < timedelta(minutes=90) for starts in active.values()
               for a, b in zip(sorted(starts), sorted(starts)[1:], strict=False))
    blacklisted = {c["お客様番号"] for c in customers if c["ブラックリストメモ"]}
    assert any(b["お客様番号"] in blacklisted and b["ステータス"] in ACTIVE for b in bookings)
    held = {b["お客様番号"]: b["営業担当"] for b in bookings if b["メニュー"] == "個別相談" and b["ステータス"] == HELD}
    assert any(b["メニュー"] == "2回目面談" and b["お客様番号"] in held and held[b["お客様番号"]] != b["営業担当"]
               for b in bookings)


def test_written_workbook_keeps_text_as_text_and_times_as_times(tmp_path):
    path = make_team_workbook(tmp_path / "team.xlsx", 80, seed=5, now=NOW)
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["顧客", "予約", "担当者"]
    memo_col = CUSTOMER_HEADERS.index("個別メモ") + 1
    formula_like = [row[memo_col - 1] for row in wb["顧客"].iter_rows(min_row=2)
                    if isinstance(row[memo_col - 1].value, str) and row[memo_col - 1].value.startswith("=")]
    assert formula_like and all(cell.data_type == "s" for cell in formula_like)
    starts = [row[4] for row in wb["予約"].iter_rows(min_row=2) if row[4].is_date]
    assert starts and all(isinstance(c.value, datetime) and c.number_format == "yyyy/mm/dd hh:mm" for c in starts)
    assert wb["顧客"]["P2"].number_format in ("yyyy/mm/dd", "General")


def test_both_writers_read_back_the_same_values(tmp_path):
    tabs = generate_frames(40, seed=2, now=NOW)
    tabs["予約"].append(["R999999", "C000001", "x", "個別相談", date(2026, 11, 21), "仮予約中", "=1+2", "-x",
                       "+y", "@z", False, 3.5])
    fast = write_workbook(tmp_path / "fast.xlsx", tabs)
    slow = write_workbook(tmp_path / "slow.xlsx", tabs, engine="openpyxl")

    def cells(path):
        wb = openpyxl.load_workbook(path)
        return {ws.title: [[(c.value, c.data_type, c.number_format if c.is_date else None) for c in row]
                           for row in ws.iter_rows()] for ws in wb.worksheets}

    assert cells(fast) == cells(slow)
    read_back = openpyxl.load_workbook(fast, read_only=True)
    rows = {ws.title: [list(r) for r in ws.iter_rows(values_only=True)] for ws in read_back.worksheets}
    expected_extra = ["R999999", "C000001", "x", "個別相談", datetime(2026, 11, 21), "仮予約中", "=1+2", "-x",
                      "+y", "@z", False, 3.5]
    assert rows["予約"][-1] == expected_extra
    assert len(rows["顧客"]) == 41 and rows["担当者"] == [[v for v in r] for r in tabs["担当者"]]


def test_empty_team_is_just_headers(tmp_path):
    tabs = generate_frames(0, now=NOW)
    assert [len(rows) for rows in (tabs["顧客"], tabs["予約"])] == [1, 1]
    path = write_workbook(tmp_path / "empty.xlsx", tabs)
    assert next(openpyxl.load_workbook(path)["予約"].iter_rows(values_only=True)) == tuple(BOOKING_HEADERS)
