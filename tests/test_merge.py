"""The merge of approved duplicates on a real .xlsx and on the Sheets stand-in: the contract's order, nothing lost,
each step whole or waiting, resumable after a crash at any write."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re

import openpyxl
import pytest
import requests
from typer.testing import CliRunner

from flows.cli import app
from flows.merge import run_merge
from flows.pipeline import run
from tasks.check import check
from tasks.plan import Plan
from tasks.rules.duplicates import duplicate_candidates
from tasks.rules.merge import STEPS, merge_approved
from tasks.workbooks.google import Backoff, GoogleWorkbook, SheetsError
from tasks.workbooks.local import LocalWorkbook
from tests.conftest import CUSTOMER_HEADERS, NOW, booking, customer, set_cell, tab_records, team_tabs, write_book
from tests.sheets_standin import SheetsStandin, service_account_info

LINE_2, LINE_3 = "U" + "2" * 32, "U" + "3" * 32
SENT: list = []
BEARER = {"Authorization": "Bearer test"}
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
    return write_book(tmp_path / "pair.xlsx", pair_tabs(mapping))


def pair_tabs(mapping) -> dict[str, list[list]]:
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
    return tabs


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


@pytest.mark.parametrize(("sei", "mei", "filled"), [
    (None, None, {"family_kana": "ヤマダ", "given_kana": "タロウ"}),
    ("ヤマダ", None, {}),  # half a reading is the survivor's to complete, not the merge's
])
def test_a_reading_is_filled_whole_or_not_at_all(pair, mapping, sei, mei, filled):
    set_cell(pair, "顧客", "C002", "セイ", sei)
    set_cell(pair, "顧客", "C002", "メイ", mei)
    plan = merge_plan_of(pair, mapping)
    changed = {e.field: e.new for e in plan.edits if e.key == "C002" and not e.check_only}
    assert {f: v for f, v in changed.items() if f.endswith("_kana")} == filled


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


def test_the_dry_run_shows_and_counts_only_what_the_merge_writes(pair, mapping):
    """The merge's check-only guards write nothing: the dry run listed them ("姓: '山田' → '山田'") and counted
    them, so its counts were not the applied run's."""
    result = CliRunner().invoke(app, ["merge", "--workbook", str(pair), "--now", "2026-11-20T10:00+09:00", "--dry-run"])
    assert result.exit_code == 0, result.output
    plan = run_merge(LocalWorkbook(pair), mapping, NOW, send).plan
    edits = [re.match(r"~ .*?: ('[^']*') → ('[^']*')", line) for line in result.output.splitlines() if line.startswith("~ ")]
    assert len(edits) == len(plan.edits) and all(m and m[1] != m[2] for m in edits)
    assert f"Plan ({plan.size} changes;" in result.output
    assert f"{len(plan.edits)} cell edits, {len(plan.appends)} new rows, {len(plan.deletes)} row removals" in result.output


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


# --------------------------------------------------------------------------- a person edits meanwhile


class Person(LocalWorkbook):
    """The .xlsx adapter while a person types into one cell just after the run's `at`-th read."""

    def __init__(self, path, at: int, edit: tuple):
        super().__init__(path)
        self.at, self.edit, self.reads, self.edited = at, edit, 0, None

    def read(self):
        raw = super().read()
        self.reads += 1
        if self.reads == self.at:
            set_cell(self.path, *self.edit)
            self.edited = state_of(self.path)
        return raw


STEP_FACTS = {  # what each step leaves on the sheet, for `pair`
    "history": lambda s: [r["統合元"] for r in s["統合履歴"]] == ["C001"],
    "moved": lambda s: all(r["お客様番号"] != "C001" for t in ("予約", "リマインド", "決済リンク依頼", "L-Step操作")
                           for r in s[t]),
    "survivor": lambda s: any(r["お客様番号"] == "C002" and "夫婦で参加希望" in r.get("個別メモ", "") for r in s["顧客"]),
    "removed": lambda s: all(r["お客様番号"] != "C001" for r in s["顧客"]),
    "marked": lambda s: [r["状態"] for r in s["重複候補"]] == ["統合済"],
}


def landed(state: dict) -> list[str]:
    return [step for step in STEPS if STEP_FACTS[step](state)]


@pytest.mark.parametrize(
    ("at", "title", "key", "header", "value"),
    [
        (1, "顧客", "C001", "個別メモ", "夫婦で参加希望。来月引っ越し"),  # the source, before its snapshot
        (2, "予約", "R011", "お客様番号", "C009"),  # a booking being moved
        (3, "顧客", "C002", "電話番号", "03-9999-0000"),  # the survivor, before it is filled
        (3, "顧客", "C001", "個別メモ", "夫婦で参加希望。来月引っ越し"),  # the source, after its snapshot
        (4, "重複候補", "C001~C002", "承認", ""),  # the approval withdrawn before the source leaves
    ],
)
def test_a_staff_edit_after_the_read_makes_the_merge_wait(pair, mapping, at, title, key, header, value):
    person = Person(pair, at, (title, key, header, value))
    summary = run_merge(person, mapping, NOW, send)
    assert any(s.why == "group waits" for s in summary.report.skipped)
    assert state_of(pair) == person.edited  # the pass that read before the edit wrote nothing
    assert landed(person.edited) == list(STEPS[:at - 1])  # nor did any later one
    run_merge(LocalWorkbook(pair), mapping, NOW, send)  # the next run sees the edit
    if header == "承認":
        assert set(records(pair, "顧客")) == {"C001", "C002"} and landed(state_of(pair)) == list(STEPS[:3])
        return
    assert landed(state_of(pair)) == list(STEPS)
    survivor = records(pair, "顧客")["C002"]
    snapshot = json.loads(tab_records(pair, "統合履歴")[0]["統合元の全項目"])
    if key == "C001":
        assert survivor["個別メモ"] == f"平日夜のみ可\n{value}"
        assert snapshot[header] == (value if at == 1 else "夫婦で参加希望")
    if key == "C002":
        assert survivor[header] == value
    if key == "R011":
        assert records(pair, "予約")["R011"]["お客様番号"] == "C009"  # the person's choice stands


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
    assert (customers["C003"]["姓"], customers["C003"]["名"]) == ("山田太郎", None)  # a name is never "filled" to 山田太郎太郎
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


class Crash(BaseException):
    """The process dies here (a BaseException: no `except Exception` on the way catches it)."""


class DiesWriting(LocalWorkbook):
    """The .xlsx adapter on a machine that dies during its `at`-th write: that write never reaches
    the file (the adapter replaces it atomically), the writes before it have."""

    def __init__(self, path, at: int):
        super().__init__(path)
        self.at, self.writes = at, 0

    @contextlib.contextmanager
    def transaction(self, titles):
        with super().transaction(titles) as tx:
            yield tx
            self.writes += tx.dirty
            if tx.dirty and self.writes == self.at:
                raise Crash(f"killed during write {self.at}")


@pytest.mark.parametrize("at", range(1, len(STEPS) + 1))
def test_a_merge_interrupted_at_each_step_completes_exactly_once(pair, mapping, merged_pair, at):
    with pytest.raises(Crash):
        run_merge(DiesWriting(pair, at), mapping, NOW, send)
    assert landed(state_of(pair)) == list(STEPS[:at - 1])  # the contract's order, step by step
    run_merge(LocalWorkbook(pair), mapping, NOW, send)
    assert state_of(pair) == merged_pair  # nothing lost, nothing twice (one 統合履歴 row, memos joined once)
    assert not merge_plan_of(pair, mapping)


def test_a_merge_stopped_after_the_source_left_is_finished_even_after_a_reconcile(pair, mapping):
    """The scheduled reconcile may come first: the source has left 顧客, so the pair no longer
    matches, but the approved row stays for the merge to mark 統合済."""
    with pytest.raises(Crash):
        run_merge(DiesWriting(pair, len(STEPS)), mapping, NOW, send)
    assert landed(state_of(pair)) == list(STEPS[:-1])
    run(LocalWorkbook(pair), mapping, NOW, send)
    run_merge(LocalWorkbook(pair), mapping, NOW, send)
    assert {r["候補ID"]: r["状態"] for r in tab_records(pair, "重複候補")} == {"C001~C002": "統合済"}
    assert len(tab_records(pair, "統合履歴")) == 1


def test_the_steps_of_an_uninterrupted_merge_are_one_write_each(pair, mapping):
    book = DiesWriting(pair, 0)
    summary = run_merge(book, mapping, NOW, send)
    assert book.writes == len(STEPS) and summary.report.rows_deleted == 1 and not summary.report.skipped


def test_a_rejected_pair_is_never_merged_through_other_approvals(tmp_path, mapping):
    """C001~C002 is 却下; C001~C003 and C002~C003 approved would make all three one person."""
    tabs = team_tabs([customer(f"C00{i}", "山田", "太郎") for i in (1, 2, 3)], [])
    tabs[mapping.tabs["duplicates"].title] = pipeline_tab(mapping, "duplicates", [
        candidate("C001", "C002", "C001", approved=False, state="却下"),
        candidate("C001", "C003", "C001"), candidate("C002", "C003", "C002"),
    ])
    path = write_book(tmp_path / "rejected.xlsx", tabs)
    before = state_of(path)
    summary = run_merge(LocalWorkbook(path), mapping, NOW, send)
    assert state_of(path) == before
    assert any("重複候補 C001~C002 is 却下" in line for line in summary.plan.log)
    set_cell(path, "重複候補", "C002~C003", "承認", "")  # staff keep only C001~C003
    run_merge(LocalWorkbook(path), mapping, NOW, send)
    assert [r["お客様番号"] for r in tab_records(path, "顧客")] == ["C001", "C002"]


def test_a_merge_begun_towards_a_survivor_no_longer_approved_waits(chain, mapping):
    with pytest.raises(Crash):
        run_merge(DiesWriting(chain, 2), mapping, NOW, send)  # 統合履歴: C001 → C003, C002 → C003
    set_cell(chain, "重複候補", "C002~C003", "承認", "")  # then staff take B~C back
    before = state_of(chain)
    summary = run_merge(LocalWorkbook(chain), mapping, NOW, send)
    assert state_of(chain) == before and any("waits" in line for line in summary.plan.log)
    set_cell(chain, "重複候補", "C002~C003", "承認", "TRUE")
    run_merge(LocalWorkbook(chain), mapping, NOW, send)
    assert set(records(chain, "顧客")) == {"C003"}


# --------------------------------------------------------------------------- on Google Sheets, across spreadsheets


def placed(mapping, **where: str):
    """The mappings with some tabs in another spreadsheet (by alias)."""
    tabs = {name: tab.model_copy(update={"spreadsheet": where[name]}) if name in where else tab
            for name, tab in mapping.tabs.items()}
    return mapping.model_copy(update={"tabs": tabs})


def google_pair(standin: SheetsStandin, mapping, case: str) -> GoogleWorkbook:
    """`pair` in its spreadsheets on the stand-in, small grids (it renders every grid cell)."""
    alias_of = {spec.title: spec.spreadsheet for spec in mapping.tabs.values()}
    ids = {alias: f"1Merge{alias}{case}" for alias in sorted(set(alias_of.values()), key=lambda a: a != "main")}
    tabs = pair_tabs(mapping)
    for alias, sid in ids.items():
        standin.add_spreadsheet(sid, {t: rows for t, rows in tabs.items() if alias_of[t] == alias})
        meta = requests.get(f"{standin.url}/v4/spreadsheets/{sid}", headers=BEARER, timeout=10).json()
        small = [{"updateSheetProperties": {
            "properties": {"sheetId": s["properties"]["sheetId"], "gridProperties": {"rowCount": 12, "columnCount": 26}},
            "fields": "gridProperties(rowCount,columnCount)"}} for s in meta["sheets"]]
        requests.post(f"{standin.url}/v4/spreadsheets/{sid}:batchUpdate", json={"requests": small}, headers=BEARER,
                      timeout=10).raise_for_status()
    standin.reset_counts()
    return GoogleWorkbook(ids, service_account_info(standin.url), endpoint=standin.url, mapping=mapping,
                          timeout=(2, 10), backoff=Backoff(attempts=3, sleep=lambda _s: None))


def google_state(standin: SheetsStandin, book: GoogleWorkbook) -> dict:
    """Like `state_of`, over every spreadsheet."""
    out = {}
    for title in RESULT_TABS:
        sid = book.spreadsheets[book.alias_of(title)]
        try:
            rows = standin.tab_values(sid, title)
        except KeyError:
            rows = []
        rows = [r for r in rows if any(v not in (None, "") for v in r)]
        out[title] = [{h: v for h, v in zip(rows[0], r, strict=False) if v not in (None, "")} for r in rows[1:]]
    for row in out["統合履歴"]:  # a run that stopped after adding the pipeline's columns to 顧客 snapshots them, blank
        row["統合元の全項目"] = {k: v for k, v in json.loads(row["統合元の全項目"]).items() if v}
    return out


def test_on_google_sheets_a_merge_stopped_at_every_write_keeps_the_order_and_completes(mapping):
    """Three spreadsheets: the logs (変更履歴, 統合履歴), which the adapter writes last, and the link
    maker's (決済リンク依頼). Written step by step, the source never leaves 顧客 before its snapshot."""
    layout = placed(mapping, merges="logs", changelog="logs", payment_links="links")
    with SheetsStandin() as standin:
        clean = google_pair(standin, layout, "clean")
        run_merge(clean, layout, NOW, send)
        expected = google_state(standin, clean)
        writes = standin.count("spreadsheets.batchUpdate")
        assert writes > len(STEPS)  # some steps write several spreadsheets
        for at in range(1, writes + 1):
            book = google_pair(standin, layout, str(at))
            for retry in range(3):  # every attempt of that write fails: the run stops there
                standin.inject(at + retry, "503", verb="spreadsheets.batchUpdate")
            with pytest.raises(SheetsError):
                run_merge(book, layout, NOW, send)
            done = landed(google_state(standin, book))
            assert done == list(STEPS[:len(done)]), at
            run_merge(book, layout, NOW, send)
            assert google_state(standin, book) == expected, at


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
