"""重複候補: blocking on normalized keys, the exact-name rule, 統合先, staff decisions, withdrawal."""

from __future__ import annotations

import tracemalloc

import openpyxl
import pandas as pd
import pytest

from tasks.check import check
from tasks.plan import Append
from tasks.rules.duplicates import duplicate_candidates, find_candidates
from tasks.workbooks.local import LocalWorkbook
from tasks.workbooks.port import RunInfo, apply_plan
from tests.conftest import CUSTOMER_HEADERS, NOW, customer, set_cell, tab_records, team_tabs, write_book

LINE_A, LINE_B = "U" + "a" * 32, "U" + "b" * 32


def frames_of(customers, mapping, extra=None):
    tabs = team_tabs(customers, [])
    tabs.update(extra or {})
    return check(tabs, mapping)


def pairs_of(customers, mapping, max_group=20):
    return find_candidates(frames_of(customers, mapping)["customers"].data, max_group)[0]


def plan_of(customers, mapping, extra=None):
    return duplicate_candidates(frames_of(customers, mapping, extra), NOW, mapping)


def rows(plan) -> dict[str, dict]:
    return {a.key: dict(a.values) for a in plan.appends if isinstance(a, Append) and a.tab == "duplicates"}


# --------------------------------------------------------------------------- the keys


def test_every_key_finds_a_pair_and_matched_on_lists_every_key_that_matched(mapping):
    pairs = pairs_of([
        customer("C001", "山田", "太郎", 電話番号="090-1234-5678", メールアドレス="taro@example.com"),
        customer("C002", "山田", "太郎", 電話番号="+81 90-1234-5678", メールアドレス="TARO@Example.com"),
        customer("C003", "佐藤", "一郎", LINEユーザーID=LINE_A),
        customer("C004", "鈴木", "次郎", LINEユーザーID=LINE_A),
        customer("C005", "田中", "花子", 電話番号="03-1111-2222"),
        customer("C006", "中村", "愛", 電話番号="０３１１１１２２２２"),
    ], mapping)
    assert list(pairs.index) == ["C001~C002", "C003~C004", "C005~C006"]
    assert pairs.at["C001~C002", "matched_on"] == "氏名, フリガナ, 電話番号, メールアドレス"
    assert pairs.at["C003~C004", "matched_on"] == "フリガナ, LINEユーザーID"  # conftest gives everyone ヤマダ タロウ
    assert pairs.at["C005~C006", "matched_on"] == "フリガナ, 電話番号"
    assert list(pairs["mergeable"]) == ["可", "不可", "不可"]


def test_three_phone_formats_and_two_email_cases_land_in_one_group(mapping):
    pairs = pairs_of([
        customer("C1", "山田", "太郎", 電話番号="090-1234-5678"),
        customer("C2", "山田", "次郎", 電話番号="０９０１２３４５６７８"),
        customer("C3", "山田", "三郎", 電話番号="+81 90 1234 5678"),
        customer("C4", "佐藤", "花子", メールアドレス="Hanako@Example.COM"),
        customer("C5", "佐藤", "花", メールアドレス="hanako@example.com "),
    ], mapping)
    assert set(pairs.index) == {"C1~C2", "C1~C3", "C2~C3", "C4~C5"}
    assert (pairs["mergeable"] == "不可").all()


def test_full_width_email_matches(mapping):
    pairs = pairs_of([
        customer("C1", "山田", "太郎", メールアドレス="ｔａｒｏ．ｙａｍａｄａ＠ｅｘａｍｐｌｅ．ｃｏ．ｊｐ"),
        customer("C2", "山本", "太郎", メールアドレス="Taro.Yamada@example.co.jp"),
    ], mapping)
    assert pairs.at["C1~C2", "matched_on"].endswith("メールアドレス")


def test_placeholder_email_is_no_email(mapping):
    """`<digits>@leporto.com` is the booking system's stand-in for a phone booking: never a match."""
    pairs = pairs_of([
        customer("C1", "山田", "太郎", メールアドレス="09011112222@leporto.com"),
        customer("C2", "佐藤", "花子", メールアドレス="09011112222@leporto.com"),
        customer("C3", "鈴木", "一郎", メールアドレス="０９０１１１１２２２＠ｌｅｐｏｒｔｏ．ｃｏｍ"),
    ], mapping)
    assert pairs.empty


def test_the_customer_column_lists_every_other_id_in_natural_order(mapping):
    plan = plan_of([
        customer("C10", "山田", "太郎", 電話番号="090-1234-5678"),
        customer("C9", "山田", "次郎", 電話番号="090-1234-5678"),
        customer("C2", "山田", "太郎"),
        customer("C3", "佐藤", "花子"),
    ], mapping)
    shown = {e.key: e.new for e in plan.edits if e.tab == "customers" and e.field == "duplicate_of"}
    assert shown == {"C10": "C2, C9", "C9": "C10", "C2": "C10"}


# --------------------------------------------------------------------------- 統合可: the exact-name rule


def test_seed_002_spaces_never_matter_for_the_exact_name_rule(mapping):
    """顧客データの統合: 「山田 太郎」=「山田太郎」=「山田　太郎」 (and a name typed all in 姓)."""
    pairs = pairs_of([
        customer("C1", "山田", "太郎"),
        customer("C2", "山田　", "太郎"),
        customer("C3", "山田太郎", ""),
        customer("C4", "山田 太", "郎"),
    ], mapping)
    assert len(pairs) == 6
    assert (pairs["mergeable"] == "可").all() and (pairs["matched_on"] == "氏名, フリガナ").all()


@pytest.mark.parametrize(("one", "other"), [("髙橋", "高橋"), ("山﨑", "山崎"), ("齋藤", "斎藤"), ("渡邊", "渡辺")])
def test_variant_kanji_find_a_candidate_but_never_make_it_mergeable(mapping, one, other):
    plan = plan_of([customer("C1", one, "一郎"), customer("C2", other, "一郎")], mapping)
    row = rows(plan)["C1~C2"]
    assert row["matched_on"] == "氏名(異体字), フリガナ"
    assert (row["mergeable"], row["state"]) == ("不可", "統合不可")


def test_a_kanji_typo_with_the_same_reading_and_phone_is_proposed_for_review_only(mapping):
    plan = plan_of([
        customer("C1", "佐藤", "健", セイ="サトウ", メイ="ケン", 電話番号="090-1111-2222"),
        customer("C2", "佐籐", "健", 電話番号="09011112222"),
        customer("C3", "加藤", "健", 電話番号="080-3333-4444"),
        customer("C4", "加籐", "健"),  # the same reading, nothing else shared: not a candidate
        customer("C5", "斉藤", "愛", セイ="サイトウ", メイ="アイ", メールアドレス="ai@example.com"),
        customer("C6", "斎藤", "愛", セイ="ｻｲﾄｳ", メイ="あい", メールアドレス="Ai@Example.com"),
    ], mapping)
    found = rows(plan)
    assert set(found) == {"C1~C2", "C5~C6"}
    assert found["C1~C2"]["matched_on"] == "フリガナ, 電話番号"
    assert found["C5~C6"]["matched_on"] == "フリガナ, メールアドレス"
    for pair in found.values():
        assert (pair["mergeable"], pair["state"]) == ("不可", "統合不可")


def test_kana_in_any_script_reads_the_same(mapping):
    pairs = pairs_of([
        customer("C1", "山田", "太郎", セイ="ﾔﾏﾀﾞ", メイ="ﾀﾛｳ", 電話番号="090-1234-5678"),
        customer("C2", "山田", "太朗", セイ="やまだ", メイ="たろう", 電話番号="090-1234-5678"),
    ], mapping)
    assert pairs.at["C1~C2", "matched_on"] == "フリガナ, 電話番号"


# --------------------------------------------------------------------------- 統合先


def test_survivor_has_a_line_id_else_the_earlier_registration_else_the_smaller_id(mapping):
    plan = plan_of([
        customer("C1", "山田", "太郎", 初回登録日="2025/01/01"),
        customer("C2", "山田", "太郎", LINEユーザーID=LINE_A, 初回登録日="2025/06/01"),  # LINE wins
        customer("C3", "佐藤", "花子", 初回登録日="2025/06/01"),
        customer("C4", "佐藤", "花子", 初回登録日="2025/02/01"),  # earlier wins
        customer("C9", "鈴木", "一郎"),
        customer("C10", "鈴木", "一郎"),  # smaller id, compared as numbers: C9 < C10
        customer("C20", "田中", "愛", 初回登録日="2025/03/01"),
        customer("C21", "田中", "愛"),  # an unknown date is never the earlier one
    ], mapping)
    found = rows(plan)
    assert {k: v["survivor"] for k, v in found.items()} == {
        "C1~C2": "C2", "C3~C4": "C4", "C9~C10": "C9", "C20~C21": "C20",
    }


# --------------------------------------------------------------------------- blocking


def test_a_key_shared_by_too_many_customers_is_a_problem_not_an_explosion(mapping):
    office = [customer(f"C{i:03d}", "社員", f"{i}号", 電話番号="03-1234-5678") for i in range(30)]
    plan = plan_of([*office, customer("C100", "社員", "0号")], mapping)
    assert set(rows(plan)) == {"C000~C100"}  # the name still pairs; the phone group (30 > 20) does not
    (problem,) = plan.problems
    phone_column = "ABCDEFGHIJKLMNOPQ"[CUSTOMER_HEADERS.index("電話番号")]
    assert problem.problem_id == "顧客!C000!電話番号" and problem.cell == f"{phone_column}2"
    assert "30人" in problem.message and "C000, C001, C002, C003, C004…" in problem.message


def test_blocking_is_linear_not_all_pairs(mapping):
    n = 20_000
    data = pd.DataFrame({
        "family_name": [f"姓{i}" for i in range(n)], "given_name": ["名"] * n,
        "family_kana": ["セイ"] * n, "given_kana": ["メイ"] * n,
        "phone": [f"+8190{i:08d}" for i in range(n)], "email": [f"u{i}@example.com" for i in range(n)],
        "line_user_id": [None] * n, "registered_on": [None] * n,
    }, index=pd.Index([f"C{i:06d}" for i in range(n)]), dtype=object)
    data.loc["C000007", "phone"] = data.loc["C000003", "phone"]
    tracemalloc.start()
    try:
        pairs, big = find_candidates(data, 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100e6  # about 15 MB; the 2e8 pairs of an all-pairs comparison need gigabytes
    assert list(pairs.index) == ["C000003~C000007"] and big == []


# --------------------------------------------------------------------------- on a real sheet: staff decisions


@pytest.fixture
def book(tmp_path):
    tabs = team_tabs([
        customer("C001", "山田", "太郎", 電話番号="090-1234-5678", タグ="VIP"),
        customer("C002", "山田　", "太郎", LINEユーザーID=LINE_A, 電話番号="09012345678"),
        customer("C003", "高橋", "一郎", メールアドレス="ichiro@example.com"),
        customer("C004", "高田", "一郎", メールアドレス="ICHIRO@example.com"),
        customer("C005", "鈴木", "花子", 電話番号="080-1111-2222"),
        customer("C006", "佐藤", "花子", 電話番号="080-1111-2222"),
    ], [])
    return write_book(tmp_path / "dups.xlsx", tabs)


def apply(path, mapping):
    """The candidates rule alone, applied to the sheet as a run would (compare-and-set)."""
    book = LocalWorkbook(path)
    plan = duplicate_candidates(check(book.read(), mapping), NOW, mapping)
    apply_plan(book, plan, mapping, RunInfo("test", NOW))
    return plan


def test_written_rows_and_the_customer_column_then_a_second_run_is_empty(book, mapping):
    apply(book, mapping)
    found = {r["候補ID"]: r for r in tab_records(book, "重複候補")}
    assert set(found) == {"C001~C002", "C003~C004", "C005~C006"}
    assert found["C001~C002"] | {"処理日時": None} == {
        "候補ID": "C001~C002", "顧客A": "C001", "顧客B": "C002", "氏名A": "山田 太郎", "氏名B": "山田 太郎",
        "一致項目": "氏名, フリガナ, 電話番号", "統合可": "可", "統合先": "C002", "承認": False, "状態": "提案",
        "処理日時": None,
    }
    assert found["C001~C002"]["処理日時"] == NOW.tz_localize(None).to_pydatetime()
    assert found["C003~C004"]["状態"] == "統合不可" and found["C005~C006"]["状態"] == "統合不可"
    customers = {r["お客様番号"]: r for r in tab_records(book, "顧客")}
    assert customers["C001"]["重複候補"] == "C002" and customers["C006"]["重複候補"] == "C005"
    before = book.read_bytes()
    assert not apply(book, mapping)
    assert book.read_bytes() == before


def test_an_approved_pair_is_never_withdrawn(tmp_path, mapping):
    """Staff ticked 承認 on C001~C003; then a fourth 佐藤 翔太 registers and the name group passes
    max_group (3 here): the name no longer pairs anyone, but the decision stays for the merge
    (which checks the names again), as it does when staff edit the pair apart."""
    small = mapping.model_copy(update={"duplicates": mapping.duplicates.model_copy(update={"max_group": 3})})
    path = write_book(tmp_path / "team.xlsx", team_tabs([customer(f"C00{i}", "佐藤", "翔太") for i in (1, 2, 3)], []))
    apply(path, small)
    set_cell(path, "重複候補", "C001~C003", "承認", "TRUE")
    wb = openpyxl.load_workbook(path)
    wb["顧客"].append(customer("C004", "佐藤", "翔太"))
    wb.save(path)
    plan = apply(path, small)
    assert {d.key for d in plan.deletes} == {"C001~C002", "C002~C003"}
    assert {r["候補ID"]: r["承認"] for r in tab_records(path, "重複候補")} == {"C001~C003": "TRUE"}


def test_rejected_pairs_never_come_back_and_stale_pairs_are_withdrawn(book, mapping):
    apply(book, mapping)
    set_cell(book, "重複候補", "C005~C006", "状態", "却下")
    plan = apply(book, mapping)
    assert not plan.appends and not plan.deletes
    assert all(e.key != "C005~C006" for e in plan.edits)
    customers = {r["お客様番号"]: r for r in tab_records(book, "顧客")}
    assert customers["C005"]["重複候補"] is None  # a rejected pair is not shown on the customer either
    # staff fix C006's phone: the rejected row stays as the record of that decision ...
    set_cell(book, "顧客", "C006", "電話番号", "080-9999-0000")
    # ... and C003's e-mail: that proposal is withdrawn
    set_cell(book, "顧客", "C003", "メールアドレス", "other@example.com")
    plan = apply(book, mapping)
    assert [(d.tab, d.key) for d in plan.deletes] == [("duplicates", "C003~C004")]
    found = {r["候補ID"]: r["状態"] for r in tab_records(book, "重複候補")}
    assert found == {"C001~C002": "提案", "C005~C006": "却下"}
    customers = {r["お客様番号"]: r for r in tab_records(book, "顧客")}
    assert customers["C003"]["重複候補"] is None and customers["C004"]["重複候補"] is None
    # the phone comes back: the rejected pair is still not proposed again
    set_cell(book, "顧客", "C006", "電話番号", "080-1111-2222")
    plan = apply(book, mapping)
    assert not plan.appends and {r["候補ID"]: r["状態"] for r in tab_records(book, "重複候補")}["C005~C006"] == "却下"


def test_a_name_change_turns_a_proposal_unmergeable_and_back(book, mapping):
    apply(book, mapping)
    set_cell(book, "顧客", "C002", "名", "太朗")
    apply(book, mapping)
    row = {r["候補ID"]: r for r in tab_records(book, "重複候補")}["C001~C002"]
    assert (row["統合可"], row["状態"], row["一致項目"]) == ("不可", "統合不可", "フリガナ, 電話番号")
    set_cell(book, "顧客", "C002", "名", "太郎")
    apply(book, mapping)
    row = {r["候補ID"]: r for r in tab_records(book, "重複候補")}["C001~C002"]
    assert (row["統合可"], row["状態"]) == ("可", "提案")


def test_merged_rows_stay_when_the_source_is_gone(book, mapping):
    apply(book, mapping)
    set_cell(book, "重複候補", "C001~C002", "状態", "統合済")
    wb = openpyxl.load_workbook(book)
    ws = wb["顧客"]
    ws.delete_rows(2)  # C001 merged away
    wb.save(book)
    plan = apply(book, mapping)
    assert not [d for d in plan.deletes if d.key == "C001~C002"]
    assert {r["候補ID"] for r in tab_records(book, "重複候補")} >= {"C001~C002"}
    assert {r["お客様番号"]: r["重複候補"] for r in tab_records(book, "顧客")}["C002"] is None


def test_a_state_staff_typed_in_their_own_words_is_a_problem_and_never_overwritten(book, mapping):
    apply(book, mapping)
    set_cell(book, "重複候補", "C005~C006", "状態", "却下します")
    set_cell(book, "顧客", "C006", "電話番号", "080-9999-0000")  # the pair stops matching: still not withdrawn
    plan = apply(book, mapping)
    assert not [e for e in plan.edits if e.key == "C005~C006"] and not [d for d in plan.deletes if d.key == "C005~C006"]
    assert {r["候補ID"]: r["状態"] for r in tab_records(book, "重複候補")}["C005~C006"] == "却下します"
    [problem] = [p for p in plan.problems if p.key == "C005~C006"]
    assert (problem.tab, problem.field, problem.value) == ("重複候補", "状態", "却下します")
    assert problem.cell.startswith("J") and "却下" in problem.message
