"""The spine end to end on a real .xlsx: structure, check, plan, compare-and-set, idempotence."""

from __future__ import annotations

import datetime as dt
import shutil

import openpyxl
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.pipeline import run
from tasks.check import InputError, check
from tasks.mapping import MappingError, load_mapping
from tasks.reconcile import reconcile
from tasks.workbooks.local import LocalWorkbook
from tasks.workbooks.port import RunInfo, apply_plan
from tests.conftest import (
    BOOKING_HEADERS,
    NOW,
    booking,
    customer,
    log_down_to,
    tab_records,
    tab_rows,
    team_tabs,
    with_dimension,
    write_book,
)

SENT: list = []


def record(recipient, title, body, key):
    SENT.append((recipient, title, body, key))


@pytest.fixture
def team(tmp_path):
    tabs = team_tabs(
        [customer("C001", 電話番号="090-1234-5678"), customer("C002", "鈴木", "花子", 電話番号="電話なし")],
        [
            booking("R001", "C001", dt.datetime(2026, 11, 25, 14, 0)),
            booking("R002", "C001", "2026/11/10 10:00", "来店済み", 結果="成約"),
            booking("R003", "C002", "11/25 14:00"),
            booking("R004", "C999", "2026-11-26 10:00"),
            booking("R005", "C002", "2026/11/12 10:00", "キャンセル料未払い"),
        ],
    )
    return write_book(tmp_path / "team.xlsx", tabs)


def test_first_run_creates_tabs_fills_columns_and_reports_errors(team, mapping):
    summary = run(LocalWorkbook(team), mapping, NOW, record)
    wb = openpyxl.load_workbook(team)
    for spec in mapping.tabs.values():
        assert spec.title in wb.sheetnames
        headers = [c.value for c in wb[spec.title][1]]
        assert all(c.header in headers for c in spec.columns if c.owner != "staff"), spec.title
    bookings = {r["予約ID"]: r for r in tab_records(team, "予約")}
    assert bookings["R001"]["終了日時"] == dt.datetime(2026, 11, 25, 15, 30)
    assert bookings["R002"]["終了日時"] == dt.datetime(2026, 11, 10, 11, 30)
    assert bookings["R003"]["終了日時"] is None  # no year: an error, not a guess
    customers = {r["お客様番号"]: r for r in tab_records(team, "顧客")}
    assert (customers["C001"]["予約回数"], customers["C001"]["来店回数"], customers["C001"]["キャンセル回数"]) == (2, 1, 0)
    assert customers["C001"]["最終来店日"] == dt.datetime(2026, 11, 10)
    assert customers["C001"]["直前キャンセル"] == "なし"
    errors = {r["問題ID"]: r for r in tab_records(team, "エラー")}
    assert "予約!R003!開始日時" in errors and errors["予約!R003!開始日時"]["セル"] == "E4"
    assert "予約!R004!お客様番号" in errors
    assert "顧客!C002!電話番号" in errors
    # C002's metrics wait: one of its bookings cannot be read
    assert customers["C002"]["予約回数"] is None
    log = tab_records(team, "変更履歴")
    marks = summary.sent  # each sent notice's 状態 (送信日時 and 試行回数 went with the main write)
    assert len(log) == len(summary.report.changes) + marks
    assert {r["項目"] for r in log} >= {"終了日時", "予約回数"}
    assert summary.sent >= 1 and tab_records(team, "通知")[0]["状態"] == "送信済"


def test_second_run_writes_nothing(team, mapping):
    run(LocalWorkbook(team), mapping, NOW, record)
    before = team.read_bytes()
    summary = run(LocalWorkbook(team), mapping, NOW, record)
    assert not summary.plan, summary.plan
    assert not summary.report.wrote
    assert team.read_bytes() == before


def test_reconcile_is_deterministic_and_idempotent(team, mapping):
    book = LocalWorkbook(team)
    first = reconcile(check(book.read(), mapping), NOW, mapping)
    again = reconcile(check(book.read(), mapping), NOW, mapping)
    assert first == again and first.size > 0
    run(book, mapping, NOW, record)
    assert not reconcile(check(book.read(), mapping), NOW, mapping)


def test_the_change_log_is_written_but_never_checked(team, mapping):
    """No rule reads 変更履歴: its rows (one a changed cell) are not checked, so a person's typo
    there is no error and a log of millions of rows costs a run nothing in check."""
    run(LocalWorkbook(team), mapping, NOW, record)
    wb = openpyxl.load_workbook(team)
    log = wb["変更履歴"]
    headers = [c.value for c in log[1]]
    log.append(["手入力" if h == "実行ID" else "いつか" if h == "日時" else None for h in headers])
    wb.save(team)
    frames = check(LocalWorkbook(team).read(), mapping)
    assert len(tab_rows(team, "変更履歴")) > 2  # the run logged its changes, the person's row below them
    assert frames["changelog"].data.empty
    assert not [p for p in frames.problems if p.tab == "変更履歴"]
    assert not reconcile(frames, NOW, mapping)
    log.cell(1, headers.index("日時") + 2, "日時")  # the same header twice: which column is the log's?
    wb.save(team)
    with pytest.raises(InputError, match="日時"):
        check(LocalWorkbook(team).read(), mapping)


def test_dry_run_leaves_the_file_byte_for_byte(team, mapping):
    before = team.read_bytes()
    summary = run(LocalWorkbook(team), mapping, NOW, record, dry_run=True)
    assert summary.plan.size > 0
    assert team.read_bytes() == before


def test_a_dry_run_points_new_problems_to_its_diff_not_a_tab_it_did_not_write(team):
    cli = CliRunner().invoke(app, ["reconcile", "--workbook", str(team), "--now", "2026-11-20T10:00+09:00", "--dry-run"])
    assert cli.exit_code == 0 and "+ エラー" in cli.output
    summary = " ".join(cli.output.replace("│", " ").split())  # the table's cells, however rich wraps them
    assert "new ones are the + エラー lines above, not written yet" in summary


def test_a_write_past_the_xlsx_row_limit_is_refused_whole_and_says_what_to_do(team, mapping):
    """An .xlsx sheet holds 1,048,576 rows and the log grows by a row per changed cell: a run whose
    log rows would pass that stops before any cell is set, saying how to make room (openpyxl alone
    stops mid-write with a bare ValueError)."""
    from tasks.workbooks.local import MAX_ROW, WorkbookFull

    log_down_to(team, MAX_ROW - 5, mapping)  # room for 5 log rows; the first run logs dozens
    before = team.read_bytes()
    with pytest.raises(WorkbookFull) as refused:
        run(LocalWorkbook(team), mapping, NOW, record)
    text = str(refused.value)
    assert "tab 変更履歴 would need" in text and "1,048,576" in text and "nothing was written" in text
    assert "older rows to another file" in text
    assert team.read_bytes() == before
    cli = CliRunner().invoke(app, ["reconcile", "--workbook", str(team), "--now", "2026-11-20T10:00+09:00"],
                             env={"PREFECT_API_URL": ""})
    assert cli.exit_code == 2 and "error: workbook team.xlsx: tab 変更履歴 would need" in cli.output
    assert cli.exception is None or isinstance(cli.exception, SystemExit)  # said in words, not a traceback
    assert team.read_bytes() == before
    wb = openpyxl.load_workbook(team)
    wb["変更履歴"].cell(MAX_ROW - 5, 1).value = None  # the person moved the old rows out
    wb.save(team)
    assert run(LocalWorkbook(team), mapping, NOW, record).report.rows_added > 5


def test_a_command_line_error_is_one_line_however_long(tmp_path):
    """An error is one line in a log or a pipe too: rich wrapped it at the console's width (80
    columns when not a terminal), splitting a long path over lines."""
    missing = tmp_path / ("a" * 150) / ("b" * 150) / "team.xlsx"
    cli = CliRunner().invoke(app, ["reconcile", "--workbook", str(missing), "--now", "2026-11-20T10:00+09:00"],
                             env={"PREFECT_API_URL": ""})
    assert cli.exit_code == 2 and cli.output == f"error: workbook not found: {missing}\n"


def test_a_workbook_near_the_xlsx_row_limit_is_said_by_the_run_that_crosses_80_percent(team, mapping):
    """From 80% of a sheet's rows each run says so (in its summary, and so in the CLI's output and the
    flow's artifact, as for Google's cell limit), counting the rows this run appended."""
    from tasks.workbooks.local import MAX_ROW

    assert run(LocalWorkbook(team), mapping, NOW, record, dry_run=True).notes == []
    log_down_to(team, int(0.8 * MAX_ROW) - 3, mapping)  # 3 rows short: this run's log rows cross 80%
    assert run(LocalWorkbook(team), mapping, NOW, record, dry_run=True).notes == []
    summary = run(LocalWorkbook(team), mapping, NOW, record)
    [note] = summary.notes
    assert note.startswith("workbook team.xlsx: tab 変更履歴 holds 838,") and "(80%)" in note
    assert "older rows to another file" in note
    assert run(LocalWorkbook(team), mapping, NOW, record, dry_run=True).notes == [note]  # and every run after


def test_a_workbook_whose_dimension_record_is_wrong_is_read_whole(team, tmp_path, mapping):
    """An .xlsx says in each sheet how many rows it uses, and some writers say it wrong (Apache POI's
    streaming writer always writes A1): read as recorded, the run stopped on headers it could not
    see, and a record short of the rows would drop bookings as if deleted. Read whole, the run plans
    exactly what it plans for the file written right."""
    stale = with_dimension(team, tmp_path / "stale.xlsx", "A1")
    right, wrong = (run(LocalWorkbook(p), mapping, NOW, record, dry_run=True) for p in (team, stale))
    assert wrong.rows_read == right.rows_read == {"顧客": 2, "予約": 5, "担当者": 4}
    assert wrong.plan == right.plan and wrong.plan
    assert {c.name: c.used for c in LocalWorkbook(stale).capacity()} == {"顧客": 1, "予約": 1, "担当者": 1}  # unread
    book = LocalWorkbook(stale)
    book.read()
    assert {c.name: c.used for c in book.capacity()} == {"顧客": 3, "予約": 6, "担当者": 5}  # what the read saw


def test_formula_looking_text_is_stored_as_text(tmp_path, mapping):
    tabs = team_tabs([customer("C001", 個別メモ="=HYPERLINK(\"http://x\")")], [])
    path = write_book(tmp_path / "t.xlsx", tabs)
    book = LocalWorkbook(path)
    run(book, mapping, NOW, record)
    plan = reconcile(check(book.read(), mapping), NOW, mapping)
    from tasks.plan import Edit, Plan

    evil = ["=1+1", "+81 90", "-5", "@SUM(A1)"]
    edits = tuple(Edit("customers", "C001", "duplicate_of", None, v, "test") for v in evil[:1])
    apply_plan(book, plan | Plan(edits=edits), mapping, RunInfo("t", NOW))
    ws = openpyxl.load_workbook(path)["顧客"]
    col = [c.value for c in ws[1]].index("重複候補") + 1
    assert ws.cell(row=2, column=col).value == "=1+1" and ws.cell(row=2, column=col).data_type == "s"
    memo_col = [c.value for c in ws[1]].index("個別メモ") + 1
    assert ws.cell(row=2, column=memo_col).data_type == "s"


def _first_plan(path, mapping):
    book = LocalWorkbook(path)
    return book, reconcile(check(book.read(), mapping), NOW, mapping)


def test_cell_changed_between_read_and_write_is_not_overwritten(team, mapping):
    run(LocalWorkbook(team), mapping, NOW, record)
    wb = openpyxl.load_workbook(team)
    ws = wb["予約"]
    ws.cell(row=2, column=BOOKING_HEADERS.index("開始日時") + 1, value=dt.datetime(2026, 11, 25, 16, 0))
    wb.save(team)
    book, plan = _first_plan(team, mapping)
    assert any(e.field == "end" and e.key == "R001" for e in plan.edits)
    # a person types into 終了日時 after the read: the run must not clobber it
    wb = openpyxl.load_workbook(team)
    ws = wb["予約"]
    end_col = [c.value for c in ws[1]].index("終了日時") + 1
    ws.cell(row=2, column=end_col, value="手入力")
    wb.save(team)
    report = apply_plan(book, plan, mapping, RunInfo("t", NOW))
    assert any(s.key == "R001" and s.why == "changed since read" for s in report.skipped)
    assert tab_records(team, "予約")[0]["終了日時"] == "手入力"


@pytest.mark.parametrize("person", ["sort", "insert", "delete"])
def test_rows_moved_between_read_and_write_still_get_the_right_cells(tmp_path, mapping, person):
    bookings = [booking(f"R00{i}", "C001", dt.datetime(2026, 11, 20 + i, 10, 0)) for i in range(1, 6)]
    path = write_book(tmp_path / "t.xlsx", team_tabs([customer("C001")], bookings))
    book, plan = _first_plan(path, mapping)
    wb = openpyxl.load_workbook(path)
    ws = wb["予約"]
    rows = [list(r) for r in ws.iter_rows(min_row=2, values_only=True)]
    if person == "sort":
        rows.reverse()
    elif person == "insert":
        rows.insert(0, booking("R000", "C001", dt.datetime(2026, 12, 1, 10, 0)))
    else:
        rows.pop(2)  # R003 deleted by a person
    ws.delete_rows(2, ws.max_row)
    for row in rows:
        ws.append(row)
    wb.save(path)
    apply_plan(book, plan, mapping, RunInfo("t", NOW))
    ws = openpyxl.load_workbook(path)["予約"]
    header = [c.value for c in ws[1]]
    for r in ws.iter_rows(min_row=2, values_only=True):
        rec = dict(zip(header, r, strict=False))
        if rec["予約ID"] == "R000":
            assert rec["終了日時"] is None  # inserted after the read: not in the plan
        else:
            assert rec["終了日時"] == rec["開始日時"] + dt.timedelta(minutes=90), rec


def test_missing_or_repeated_required_header_stops_before_writing(tmp_path, mapping):
    tabs = team_tabs([customer("C001")], [])
    tabs["予約"][0] = [h for h in BOOKING_HEADERS if h != "開始日時"]
    path = write_book(tmp_path / "t.xlsx", tabs)
    before = path.read_bytes()
    with pytest.raises(InputError, match=r"予約.*開始日時"):
        run(LocalWorkbook(path), mapping, NOW, record)
    assert path.read_bytes() == before
    tabs["予約"][0] = [*BOOKING_HEADERS, "予約ID"]
    write_book(path, tabs)
    with pytest.raises(InputError, match=r"予約ID.*複数"):
        check(LocalWorkbook(path).read(), mapping)


def test_headers_are_found_by_name_not_position(tmp_path, mapping):
    tabs = team_tabs([customer("C001")], [booking("R001", "C001", dt.datetime(2026, 11, 25, 14, 0))])
    tabs["予約"] = [list(reversed(r)) for r in tabs["予約"]]
    path = write_book(tmp_path / "t.xlsx", tabs)
    run(LocalWorkbook(path), mapping, NOW, record)
    assert tab_records(path, "予約")[0]["終了日時"] == dt.datetime(2026, 11, 25, 15, 30)


def test_fixed_problem_leaves_the_error_tab(team, mapping):
    run(LocalWorkbook(team), mapping, NOW, record)
    wb = openpyxl.load_workbook(team)
    ws = wb["予約"]
    ws.cell(row=4, column=BOOKING_HEADERS.index("開始日時") + 1, value="2026/11/25 14:00")
    wb.save(team)
    run(LocalWorkbook(team), mapping, NOW, record)
    ids = {r["問題ID"] for r in tab_records(team, "エラー")}
    assert "予約!R003!開始日時" not in ids and "予約!R004!お客様番号" in ids


def test_baseline_sends_nothing_and_the_next_run_is_quiet(team, mapping):
    SENT.clear()
    run(LocalWorkbook(team), mapping, NOW, record, baseline=True)
    assert SENT == []
    assert all(r["状態"] == "送信済" for r in tab_records(team, "通知"))
    assert all((r["エラー"], r["送信日時"], r["試行回数"]) == (None, None, 0) for r in tab_records(team, "通知"))
    assert all(r["対応済"] for r in tab_records(team, "L-Step操作"))
    summary = run(LocalWorkbook(team), mapping, NOW, record)
    assert not summary.plan and SENT == []


def test_bad_mapping_names_the_key(tmp_path):
    src = load_mapping.__globals__["DEFAULT_DIR"]
    for f in src.glob("*.yaml"):
        shutil.copy(f, tmp_path / f.name)
    text = (tmp_path / "rules.yaml").read_text(encoding="utf-8").replace("meeting_minutes: 90", "meeting_minutes: -5")
    (tmp_path / "rules.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(MappingError, match="meeting_minutes"):
        load_mapping(tmp_path)


@pytest.mark.parametrize("value", ["9pm", "25:00", "21:5", "21-00"])
def test_quiet_hours_must_be_clock_times(tmp_path, value):
    src = load_mapping.__globals__["DEFAULT_DIR"]
    for f in src.glob("*.yaml"):
        shutil.copy(f, tmp_path / f.name)
    text = (tmp_path / "rules.yaml").read_text(encoding="utf-8").replace('start: "21:00"', f'start: "{value}"')
    (tmp_path / "rules.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(MappingError, match=r"quiet_hours\.start.*HH:MM"):
        load_mapping(tmp_path)
    (tmp_path / "rules.yaml").write_text(text.replace(f'start: "{value}"', 'start: "9:30"'), encoding="utf-8")
    assert load_mapping(tmp_path).quiet_hours.start == "09:30"  # compared as text: zero-padded


MARKED = {"blacklisted: ブラックリストの顧客": "blacklisted: ❗ブラックリストの顧客"}


@pytest.mark.parametrize(("value", "also"), [('"{memo}"', {}), ('" {memo}: 要注意"', {}), ('"❗{memo}"', MARKED)])
def test_the_caution_alert_must_start_with_fixed_words_of_its_own(tmp_path, value, also):
    """The digest leaves alert 5 out by its first words, whatever memo it quotes: a caution template
    without them, or with another alert's, is refused (a team marking every alert ❗ included)."""
    src = load_mapping.__globals__["DEFAULT_DIR"]
    for f in src.glob("*.yaml"):
        shutil.copy(f, tmp_path / f.name)
    text = (tmp_path / "rules.yaml").read_text(encoding="utf-8").replace('caution: "❗要注意: {memo}"', f"caution: {value}")
    for old, new in also.items():
        text = text.replace(old, new)
    (tmp_path / "rules.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(MappingError, match=r"alerts.*caution.*(fixed words|start alike)"):
        load_mapping(tmp_path)


def test_rows_read(team, mapping):
    summary = run(LocalWorkbook(team), mapping, NOW, record, dry_run=True)
    assert summary.rows_read["予約"] == 5 and summary.rows_read["顧客"] == 2
    assert tab_rows(team, "予約")[0] == BOOKING_HEADERS


def _dup_tab(mapping, *keys):
    headers = mapping.tabs["duplicates"].headers
    return [list(headers)] + [[k] + [None] * (len(headers) - 1) for k in keys]


def test_cells_written_counts_only_the_cells_given_a_value(tmp_path, mapping):
    from tasks.plan import Append, Plan

    tabs = team_tabs([customer("C001")], [])
    tabs["重複候補"] = _dup_tab(mapping)
    path = write_book(tmp_path / "t.xlsx", tabs)
    row = Append.of("duplicates", "C001~C002", (("candidate_id", "C001~C002"), ("customer_a", "C001"),
                                             ("name_a", ""), ("customer_b", None)), "test")
    report = apply_plan(LocalWorkbook(path), Plan(appends=(row,)), mapping, RunInfo("t", NOW))
    assert (report.rows_added, report.cells_written) == (1, 2)  # 12 columns, two of them given a value


def test_a_delete_whose_key_is_on_several_rows_is_reported_not_guessed(tmp_path, mapping):
    from tasks.plan import Delete, Plan

    tabs = team_tabs([customer("C001")], [])
    tabs["重複候補"] = _dup_tab(mapping, "C001~C002", "C001~C002", "C003~C004")
    path = write_book(tmp_path / "t.xlsx", tabs)
    plan = Plan(deletes=(Delete("duplicates", "C001~C002", "test"), Delete("duplicates", "C009~C010", "test")))
    report = apply_plan(LocalWorkbook(path), plan, mapping, RunInfo("t", NOW))
    assert [(s.tab, s.key, s.why) for s in report.skipped] == [("重複候補", "C001~C002", "key on several rows")]
    assert [r["候補ID"] for r in tab_records(path, "重複候補")] == ["C001~C002", "C001~C002", "C003~C004"]

