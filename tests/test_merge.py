"""The merge of approved duplicates on a real .xlsx: order, nothing lost, all or nothing, resumable."""

from __future__ import annotations

import datetime as dt
import json

import openpyxl
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.merge import run_merge
from flows.pipeline import run
from tasks.check import check
from tasks.plan import Delete, Plan
from tasks.rules.duplicates import duplicate_candidates
from tasks.rules.merge import REFERRING, merge_approved
from tasks.workbooks.local import LocalWorkbook
from tasks.workbooks.port import RunInfo, apply_plan
from tests.conftest import CUSTOMER_HEADERS, NOW, booking, customer, tab_records, team_tabs, write_book

LINE_2, LINE_3 = "U" + "2" * 32, "U" + "3" * 32
SENT: list = []
RESULT_TABS = ("顧客", "予約", "リマインド", "決済リンク依頼", "L-Step操作", "重複候補", "統合履歴")


def send(recipient, title, body, key):
    SENT.append((recipient, title, body, key))


def pipeline_tab(mapping, name: str, records: list[dict]) -> list[list]:
    spec = mapping.tabs[name]
    return [spec.headers, *[[r.get(f) for f in spec.fields] for r in records]]


def candidate(a: str, b: str, survivor: str, *, approved=True, state="提案", mergeable="可") -> dict:
    return {
        "candidate_id": f"{a}~{b}", "customer_a": a, "customer_b": b, "name_a": "山田 太郎", "name_b": "山田 太郎",
        "matched_on": "氏名, フリガナ", "mergeable": mergeable, "survivor": survivor,
        "approved": "TRUE" if approved else "", "state": state, "processed_at": dt.datetime(2026, 11, 19, 10, 0),
    }


def related(mapping, cids: list[str]) -> dict[str, list[list]]:
    """A reminder, a payment-link request and an L-Step operation for each customer's first booking."""
    reminders, requests, operations = [], [], []
    for cid in cids:
        bid = f"R{cid[1:]}"
        reminders.append({"reminder_id": f"{bid}:挨拶:即時", "booking_id": bid, "customer_id": cid,
                          "salesperson": "佐藤", "series": "挨拶", "step": "即時", "state": "送信済"})
        requests.append({"request_id": f"PL-{bid}", "booking_id": bid, "customer_id": cid, "customer_name": "山田 太郎",
                         "salesperson": "佐藤", "plan": "スタンダード", "maker": "高橋", "state": "依頼中"})
        operations.append({"operation_id": f"タグ追加:{cid}:VIP", "customer_id": cid, "customer_name": "山田 太郎",
                           "action": "タグ追加", "content": "VIP", "done": ""})
    return {
        mapping.tabs["reminders"].title: pipeline_tab(mapping, "reminders", reminders),
        mapping.tabs["payment_links"].title: pipeline_tab(mapping, "payment_links", requests),
        mapping.tabs["operations"].title: pipeline_tab(mapping, "operations", operations),
    }


@pytest.fixture
def pair(tmp_path, mapping):
    return pair_book(tmp_path, mapping)


@pytest.fixture(scope="module")
def merged_pair(tmp_path_factory, mapping) -> dict:
    """The end state of an uninterrupted merge of `pair`."""
    path = pair_book(tmp_path_factory.mktemp("reference"), mapping)
    run_merge(LocalWorkbook(path), mapping, NOW, send)
    return state_of(path)


def pair_book(tmp_path, mapping):
    """C001 (a phone booking) and C002 (a LINE friend): the same 山田太郎; C002 survives (LINE)."""
    tabs = team_tabs(
        [
            customer("C001", "山田", "太郎", 電話番号="090-1234-5678", メールアドレス="taro@example.com",
                     セミナー参加日="2025/02/01", 要注意メモ="録音推奨", 個別メモ="夫婦で参加希望",
                     初回登録日="2025/01/10", タグ="VIP、【セミナー】個別相談予約完了", 営業担当="鈴木"),
            customer("C002", "山田　", "太郎", LINEユーザーID=LINE_2, 電話番号="03-1111-2222",
                     メールアドレス="09011112222@leporto.com", 個別メモ="平日夜のみ可", 初回登録日="2025/03/01",
                     タグ="【流入】広告"),
        ],
        [
            booking("R001", "C001", dt.datetime(2026, 11, 25, 14, 0)),
            booking("R011", "C001", dt.datetime(2026, 10, 1, 14, 0), "来店済み", 結果="保留"),
            booking("R002", "C002", dt.datetime(2026, 11, 10, 10, 0), "キャンセル"),
        ],
    )
    tabs |= related(mapping, ["C001", "C002"])
    tabs[mapping.tabs["duplicates"].title] = pipeline_tab(mapping, "duplicates", [candidate("C001", "C002", "C002")])
    return write_book(tmp_path / "pair.xlsx", tabs)


def records(path, title: str, key: str | None = None) -> dict[str, dict]:
    rows = tab_records(path, title)
    key = key or (next(iter(rows[0])) if rows else "")
    return {str(r[key]): r for r in rows}


def state_of(path) -> dict:
    """Every tab a merge touches, as records without blank cells (the change log aside)."""
    wb = openpyxl.load_workbook(path, read_only=True)
    out = {}
    for title in RESULT_TABS:
        rows = [list(r) for r in wb[title].iter_rows(values_only=True)] if title in wb.sheetnames else []
        rows = [r for r in rows if any(v not in (None, "") for v in r)]
        out[title] = [{h: v for h, v in zip(rows[0], r, strict=False) if v is not None} for r in rows[1:]]
    wb.close()
    return out


def set_cell(path, title, key, header, value):
    wb = openpyxl.load_workbook(path)
    ws = wb[title]
    headers = [c.value for c in ws[1]]
    for row in ws.iter_rows(min_row=2):
        if row[0].value == key:
            row[headers.index(header)].value = value
    wb.save(path)


def merge_plan_of(path, mapping) -> Plan:
    return merge_approved(check(LocalWorkbook(path).read(), mapping), NOW, mapping)


# --------------------------------------------------------------------------- one merge


def test_merge_moves_everything_to_the_survivor_and_loses_nothing(pair, mapping):
    summary = run_merge(LocalWorkbook(pair), mapping, NOW, send)
    assert summary.report.rows_deleted == 1 and not summary.report.skipped
    customers = records(pair, "顧客")
    assert set(customers) == {"C002"}
    c2 = customers["C002"]
    assert c2["電話番号"] == "03-1111-2222"  # never overwritten
    assert c2["メールアドレス"] == "taro@example.com"  # the placeholder counted as blank
    assert c2["セミナー参加日"] == dt.datetime(2025, 2, 1)  # blank: filled
    assert (c2["初回登録日"], c2["営業担当"], c2["LINEユーザーID"]) == ("2025/03/01", "佐藤", LINE_2)
    assert c2["要注意メモ"] == "録音推奨"
    assert c2["個別メモ"] == "平日夜のみ可\n夫婦で参加希望"
    assert c2["タグ"] == "【流入】広告、VIP"  # managed tags follow the bookings (the tags rule), not the merge
    assert {r["予約ID"]: r["お客様番号"] for r in tab_records(pair, "予約")} == {"R001": "C002", "R011": "C002",
                                                                           "R002": "C002"}
    for title in ("リマインド", "決済リンク依頼", "L-Step操作"):
        assert {r["お客様番号"] for r in tab_records(pair, title)} == {"C002"}, title
    (history,) = tab_records(pair, "統合履歴")
    assert (history["統合元"], history["統合先"], history["移した予約"]) == ("C001", "C002", "R001, R011")
    assert history["統合日時"] == dt.datetime(2026, 11, 20, 10, 0)
    assert history["承認者"] == "重複候補 C001~C002 の承認"
    snapshot = json.loads(history["統合元の全項目"])
    assert snapshot["お客様番号"] == "C001" and snapshot["メールアドレス"] == "taro@example.com"
    assert snapshot["タグ"] == "VIP、【セミナー】個別相談予約完了" and snapshot["営業担当"] == "鈴木"
    assert set(snapshot) == set(CUSTOMER_HEADERS)  # every column the row had
    row = records(pair, "重複候補")["C001~C002"]
    assert (row["状態"], row["処理日時"]) == ("統合済", dt.datetime(2026, 11, 20, 10, 0))
    log = tab_records(pair, "変更履歴")
    assert any(r["タブ"] == "顧客" and r["キー"] == "C001" and r["項目"] == "(行削除)" for r in log)


def test_a_second_merge_run_writes_nothing(pair, mapping):
    run_merge(LocalWorkbook(pair), mapping, NOW, send)
    before = pair.read_bytes()
    summary = run_merge(LocalWorkbook(pair), mapping, NOW, send)
    assert not summary.plan and pair.read_bytes() == before


def test_the_dry_run_command_prints_the_plan_and_writes_nothing(pair):
    before = pair.read_bytes()
    result = CliRunner().invoke(app, ["merge", "--workbook", str(pair), "--now", "2026-11-20T10:00+09:00", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "統合履歴 C001" in result.output and "- 顧客 C001" in result.output
    assert pair.read_bytes() == before


@pytest.mark.parametrize(
    ("header", "value"),
    [("承認", ""), ("状態", "却下"), ("状態", "統合不可"), ("統合可", "不可")],
)
def test_only_approved_mergeable_proposals_are_merged(pair, mapping, header, value):
    set_cell(pair, "重複候補", "C001~C002", header, value)
    assert not merge_plan_of(pair, mapping)


def test_names_that_differ_now_are_not_merged_whatever_the_row_says(pair, mapping):
    set_cell(pair, "顧客", "C001", "名", "太朗")
    assert not merge_plan_of(pair, mapping)


# --------------------------------------------------------------------------- all or nothing


@pytest.mark.parametrize(
    ("title", "key", "header", "value"),
    [
        ("顧客", "C001", "個別メモ", "夫婦で参加希望。来月引っ越し"),  # the source
        ("顧客", "C002", "電話番号", "03-9999-0000"),  # the survivor
        ("予約", "R011", "お客様番号", "C009"),  # a booking being moved
        ("重複候補", "C001~C002", "承認", ""),  # the approval withdrawn
    ],
)
def test_a_staff_edit_after_the_read_makes_the_whole_merge_wait(pair, mapping, title, key, header, value):
    book = LocalWorkbook(pair)
    plan = merge_plan_of(pair, mapping)
    set_cell(pair, title, key, header, value)  # a person, between the run's read and its write
    edited = state_of(pair)
    report = apply_plan(book, plan, mapping, RunInfo("t", NOW))
    assert report.cells_written == 0 and report.rows_added == 0 and report.rows_deleted == 0
    assert any(s.why == "group waits" for s in report.skipped)
    assert state_of(pair) == edited
    if header == "承認":
        return
    run_merge(book, mapping, NOW, send)  # the next run sees the edit and merges
    assert set(records(pair, "顧客")) == {"C002"}
    snapshot = json.loads(tab_records(pair, "統合履歴")[0]["統合元の全項目"])
    if key == "C001":
        assert snapshot[header] == value and records(pair, "顧客")["C002"]["個別メモ"].endswith(value)


# --------------------------------------------------------------------------- chains


@pytest.fixture
def chain(tmp_path, mapping):
    """A~B and B~C approved: C003 has the LINE id, so everything ends in C003."""
    tabs = team_tabs(
        [
            customer("C001", "山田", "太郎", 初回登録日="2025/01/10", 個別メモ="A"),
            customer("C002", "山田", "太郎", 初回登録日="2024/12/01", 電話番号="090-1234-5678", 個別メモ="B"),
            customer("C003", "山田太郎", "", LINEユーザーID=LINE_3, 初回登録日="2025/05/01", 個別メモ="C"),
        ],
        [booking(f"R00{i}", f"C00{i}", dt.datetime(2026, 11, 24 + i, 10, 0)) for i in (1, 2, 3)],
    )
    tabs |= related(mapping, ["C001", "C002", "C003"])
    tabs[mapping.tabs["duplicates"].title] = pipeline_tab(mapping, "duplicates", [
        candidate("C001", "C002", "C002"), candidate("C002", "C003", "C003"),
        candidate("C001", "C003", "C003", approved=False),
    ])
    return write_book(tmp_path / "chain.xlsx", tabs)


@pytest.mark.parametrize("runs", ["one run", "two runs"])
def test_a_chain_ends_with_one_survivor(chain, mapping, runs):
    if runs == "two runs":  # B~C approved only after A~B was merged
        set_cell(chain, "重複候補", "C002~C003", "承認", "")
        run_merge(LocalWorkbook(chain), mapping, NOW, send)
        assert set(records(chain, "顧客")) == {"C002", "C003"}
        set_cell(chain, "重複候補", "C002~C003", "承認", "TRUE")
    run_merge(LocalWorkbook(chain), mapping, NOW, send)
    customers = records(chain, "顧客")
    assert set(customers) == {"C003"}
    assert customers["C003"]["個別メモ"].split("\n") == ["C", "B", "A"]
    assert customers["C003"]["電話番号"] == "090-1234-5678"
    assert {r["お客様番号"] for r in tab_records(chain, "予約")} == {"C003"}
    for title in ("リマインド", "決済リンク依頼", "L-Step操作"):
        assert {r["お客様番号"] for r in tab_records(chain, title)} == {"C003"}, title
    history = records(chain, "統合履歴", "統合元")
    assert set(history) == {"C001", "C002"}
    assert history["C002"]["統合先"] == "C003"
    states = {k: r["状態"] for k, r in records(chain, "重複候補").items()}
    assert states == {"C001~C002": "統合済", "C002~C003": "統合済", "C001~C003": "提案"}
    assert not merge_plan_of(chain, mapping)
    # the next reconcile withdraws the unapproved row whose customers are gone, keeps the merged ones
    frames = check(LocalWorkbook(chain).read(), mapping)
    plan = duplicate_candidates(frames, NOW, mapping)
    assert [(d.tab, d.key) for d in plan.deletes] == [("duplicates", "C001~C003")]


# --------------------------------------------------------------------------- interrupted, then resumed


ORDER = ("history", "moved", "filled", "tags", "memos", "deleted", "merged")  # the contract's order


def step_of(change) -> str:
    """Which step of a merge a change of its plan belongs to."""
    if change.tab == "merges":
        return "history"
    if change.tab in REFERRING:
        return "moved"
    if change.tab == "duplicates":
        return "merged"
    if isinstance(change, Delete):
        return "deleted"
    return {"tags": "tags", "caution_memo": "memos", "blacklist_memo": "memos", "memo": "memos"}.get(
        change.field, "filled")


def steps_before(n: int):
    return lambda change: ORDER.index(step_of(change)) < n


CRASHES = {  # what had landed when the run died
    **{f"after {ORDER[n - 1]}": steps_before(n) for n in range(1, len(ORDER))},
    "all but the link maker's spreadsheet": lambda c: c.tab != "payment_links",
}


@pytest.mark.parametrize("crash", list(CRASHES))
def test_a_merge_interrupted_at_each_step_completes_exactly_once(pair, mapping, merged_pair, crash):
    expected = merged_pair
    book = LocalWorkbook(pair)
    plan = merge_plan_of(pair, mapping)
    landed = CRASHES[crash]
    apply_plan(book, Plan(
        edits=tuple(e for e in plan.edits if e.check_only or landed(e)),
        appends=tuple(a for a in plan.appends if landed(a)),
        deletes=tuple(d for d in plan.deletes if landed(d)),
    ), mapping, RunInfo("crashed", NOW))
    assert state_of(pair) != expected
    run_merge(book, mapping, NOW, send)
    assert state_of(pair) == expected  # nothing lost, nothing twice (one 統合履歴 row, memos joined once)
    assert not merge_plan_of(pair, mapping)


# --------------------------------------------------------------------------- with the whole pipeline


def test_from_proposal_to_merge_with_the_reconcile_around_it(tmp_path, mapping):
    path = write_book(tmp_path / "team.xlsx", team_tabs(
        [
            customer("C001", "山田", "太郎", 電話番号="090-1234-5678", メールアドレス="09012345678@leporto.com"),
            customer("C002", "山田　", "太郎", LINEユーザーID=LINE_2, メールアドレス="taro@example.com"),
            customer("C003", "鈴木", "花子", 電話番号="080-1111-2222"),
        ],
        [
            booking("R001", "C001", dt.datetime(2026, 11, 25, 14, 0)),
            booking("R002", "C002", dt.datetime(2026, 11, 10, 10, 0), "来店済み", 結果="保留"),
        ],
    ))
    run(LocalWorkbook(path), mapping, NOW, send)
    row = records(path, "重複候補")["C001~C002"]
    assert (row["統合可"], row["統合先"], row["状態"], row["承認"]) == ("可", "C002", "提案", False)
    assert not merge_plan_of(path, mapping)  # proposed is not approved
    set_cell(path, "重複候補", "C001~C002", "承認", True)
    run_merge(LocalWorkbook(path), mapping, NOW, send)
    run(LocalWorkbook(path), mapping, NOW, send)
    customers = records(path, "顧客")
    assert set(customers) == {"C002", "C003"}
    assert customers["C002"]["予約回数"] == 2 and customers["C002"]["重複候補"] is None
    assert customers["C002"]["電話番号"] == "090-1234-5678"
    assert records(path, "重複候補")["C001~C002"]["状態"] == "統合済"
    frames = check(LocalWorkbook(path).read(), mapping)
    assert not duplicate_candidates(frames, NOW, mapping)
