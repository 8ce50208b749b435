"""One contract, two adapters: the local .xlsx and Google Sheets (real gspread over HTTP to the stand-in).

Every test with `make_env` runs on both adapters. A person's edits (a typed cell, a row inserted,
deleted or sorted) are played on the file for the local adapter and on the stand-in for Google. The
last tests run both side by side on the same workbook: the same plan, the same resulting cells.
"""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import openpyxl
import pytest
import requests

from flows.pipeline import run
from tasks.check import InputError, check
from tasks.plan import Edit, Plan
from tasks.reconcile import reconcile
from tasks.workbooks.google import Backoff, GoogleWorkbook
from tasks.workbooks.local import LocalWorkbook
from tasks.workbooks.port import RunInfo, apply_plan
from tests.conftest import BOOKING_HEADERS, NOW, booking, customer, team_tabs, write_book
from tests.sheets_standin import SheetsStandin, service_account_info

_ids = itertools.count(1)


# --------------------------------------------------------------------------- comparing cells


def norm(value):
    """A cell as both adapters' files can be compared: blank None, dates as datetimes, 2.0 as 2."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return (value + dt.timedelta(microseconds=500_000)).replace(microsecond=0, tzinfo=None)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def grid(rows) -> list[list]:
    out = []
    for row in rows:
        line = [norm(v) for v in row]
        while line and line[-1] is None:
            line.pop()
        out.append(line)
    while out and not out[-1]:
        out.pop()
    return out


# --------------------------------------------------------------------------- the two environments


class LocalEnv:
    kind = "local"

    def __init__(self, path: Path):
        self.path = path

    def book(self, mapping, **_):
        return LocalWorkbook(self.path)

    def titles(self) -> list[str]:
        return openpyxl.load_workbook(self.path, read_only=True).sheetnames

    def tab(self, title: str) -> list[list] | None:
        wb = openpyxl.load_workbook(self.path)
        return grid(wb[title].iter_rows(values_only=True)) if title in wb.sheetnames else None

    def cells(self) -> dict[str, list[list]]:
        return {t: self.tab(t) for t in self.titles()}

    def _edit(self, title, fn) -> None:
        wb = openpyxl.load_workbook(self.path)
        fn(wb[title])
        wb.save(self.path)

    def set_cell(self, title: str, a1: str, value) -> None:
        def put(ws):
            ws[a1] = value
            if isinstance(value, str):
                ws[a1].data_type = "s"
            elif isinstance(value, dt.datetime):
                ws[a1].number_format = "yyyy/mm/dd hh:mm"
        self._edit(title, put)

    def insert_row(self, title: str, row: int, values: list) -> None:
        def put(ws):
            ws.insert_rows(row)
            for col, value in enumerate(values, start=1):
                if value not in (None, ""):
                    ws.cell(row=row, column=col, value=value)
        self._edit(title, put)

    def delete_row(self, title: str, row: int) -> None:
        self._edit(title, lambda ws: ws.delete_rows(row))

    def sort_rows(self, title: str, key_col: int, reverse: bool = False) -> None:
        def put(ws):
            rows = [list(r) for r in ws.iter_rows(min_row=2, values_only=True) if any(v is not None for v in r)]
            rows.sort(key=lambda r: str(r[key_col - 1]), reverse=reverse)
            ws.delete_rows(2, ws.max_row)
            for row in rows:
                ws.append(row)
        self._edit(title, put)

    def fingerprint(self):
        return self.path.read_bytes()


class GoogleEnv:
    kind = "google"

    def __init__(self, standin: SheetsStandin, sid: str):
        self.standin, self.sid = standin, sid

    def book(self, mapping, **options):
        options.setdefault("backoff", Backoff(sleep=lambda s: None))
        options.setdefault("timeout", (2, 10))
        url = self.standin.url
        return GoogleWorkbook(self.sid, service_account_info(url), endpoint=url, mapping=mapping, **options)

    def titles(self) -> list[str]:
        meta = requests.get(f"{self.standin.url}/v4/spreadsheets/{self.sid}", timeout=10,
                            headers={"Authorization": "Bearer test"}).json()
        return [s["properties"]["title"] for s in meta["sheets"]]

    def tab(self, title: str) -> list[list] | None:
        try:
            return grid(self.standin.tab_values(self.sid, title))
        except KeyError:
            return None

    def cells(self) -> dict[str, list[list]]:
        return {t: self.tab(t) for t in self.titles()}

    def set_cell(self, title: str, a1: str, value) -> None:
        self.standin.set_cell(self.sid, title, a1, value)

    def insert_row(self, title: str, row: int, values: list) -> None:
        self.standin.insert_row(self.sid, title, row, values)

    def delete_row(self, title: str, row: int) -> None:
        self.standin.delete_row(self.sid, title, row)

    def sort_rows(self, title: str, key_col: int, reverse: bool = False) -> None:
        self.standin.sort_rows(self.sid, title, key_col, reverse)

    def fingerprint(self):
        return self.standin.count("spreadsheets.batchUpdate", self.sid), self.cells()


@pytest.fixture(scope="module")
def standin():
    with SheetsStandin() as server:
        yield server


def env_for(kind: str, path: Path, standin: SheetsStandin):
    if kind == "local":
        env = LocalEnv(path)
    else:
        env = GoogleEnv(standin, f"1Contract{next(_ids)}")
        standin.load_xlsx(env.sid, path)
    env.source = path.with_name(path.stem + ".source.xlsx")
    env.source.write_bytes(path.read_bytes())
    return env


@pytest.fixture(params=["local", "google"])
def make_env(request, tmp_path, standin):
    def make(tabs: dict[str, list[list]], name: str = "team"):
        return env_for(request.param, write_book(tmp_path / f"{name}.xlsx", tabs), standin)
    return make


def quiet(recipient, title, body, key):
    """A channel that accepts everything."""


def team():
    return team_tabs(
        [customer("C001", 電話番号="090-1234-5678"), customer("C002", "鈴木", "花子", 電話番号="電話なし")],
        [
            booking("R001", "C001", dt.datetime(2026, 11, 25, 14, 0)),
            booking("R002", "C001", "2026/11/10 10:00", "来店済み", 結果="成約"),
            booking("R003", "C002", "11/25 14:00"),
            booking("R004", "C999", "2026-11-26 10:00"),
            booking("R005", "C002", "2026/11/12 10:00", "キャンセル料未払い"),
        ],
    )


def records(env, title: str) -> list[dict]:
    rows = env.tab(title) or []
    return [dict(zip(rows[0], r + [None] * (len(rows[0]) - len(r)), strict=False)) for r in rows[1:]] if rows else []


# --------------------------------------------------------------------------- the contract, on each adapter


def test_read_gives_check_the_cells_as_typed(make_env, mapping):
    tabs = team_tabs([customer("0012", 電話番号="090-1234-5678", 初回登録日=dt.datetime(2026, 4, 1), 個別メモ="=1+1")],
                     [booking("R001", "0012", dt.datetime(2026, 11, 25, 14, 0), お礼LINE=True)])
    tabs["予約"][1][BOOKING_HEADERS.index("プラン")] = 120000
    env = make_env(tabs)
    raw = env.book(mapping).read()
    customer_row = dict(zip(raw["顧客"][0], raw["顧客"][1], strict=False))
    assert customer_row["お客様番号"] == "0012" and customer_row["電話番号"] == "090-1234-5678"  # never numericised
    assert customer_row["個別メモ"] == "=1+1"
    assert customer_row["初回登録日"] == dt.datetime(2026, 4, 1)
    booking_row = dict(zip(raw["予約"][0], raw["予約"][1], strict=False))
    assert booking_row["開始日時"] == dt.datetime(2026, 11, 25, 14, 0)
    assert booking_row["お礼LINE"] is True and booking_row["プラン"] == 120000
    reference = LocalWorkbook(env.source).read()  # the .xlsx both were made from, read by openpyxl
    assert {t: grid(rows) for t, rows in raw.items()} == {t: grid(rows) for t, rows in reference.items()}


def test_first_run_creates_tabs_and_columns_and_a_second_run_writes_nothing(make_env, mapping):
    env = make_env(team())
    summary = run(env.book(mapping), mapping, NOW, quiet, run_id="t1")
    titles = env.titles()
    for spec in mapping.tabs.values():
        assert spec.title in titles
        header = env.tab(spec.title)[0]
        assert all(c.header in header for c in spec.columns if c.owner != "staff"), spec.title
    bookings = {r["予約ID"]: r for r in records(env, "予約")}
    assert bookings["R001"]["終了日時"] == dt.datetime(2026, 11, 25, 15, 30)  # a real date-time
    assert bookings["R003"]["終了日時"] is None  # no year: an error, not a guess
    assert {r["問題ID"]: r for r in records(env, "エラー")}["予約!R003!開始日時"]["セル"] == "E4"
    assert summary.report.cells_written > 0 and not summary.report.skipped
    before = env.fingerprint()
    again = run(env.book(mapping), mapping, NOW, quiet, run_id="t2")
    assert not again.plan and not again.report.wrote
    assert env.fingerprint() == before


def with_end_column(tabs: dict) -> dict:
    """予約 with its pipeline column 終了日時 already there (blank), as after a first run."""
    tabs["予約"] = [tabs["予約"][0] + ["終了日時"], *tabs["予約"][1:]]
    return tabs


def test_a_persons_edit_between_read_and_write_is_kept(make_env, mapping):
    env = make_env(with_end_column(team()))
    book = env.book(mapping)
    plan = reconcile(check(book.read(), mapping), NOW, mapping)
    assert any(e.key == "R001" and e.field == "end" for e in plan.edits)
    env.set_cell("予約", "M2", "手入力")  # R001's 終了日時, typed after the read
    report = apply_plan(book, plan, mapping, RunInfo("t2", NOW))
    assert any(s.key == "R001" and s.why == "changed since read" for s in report.skipped)
    rows = {r["予約ID"]: r for r in records(env, "予約")}
    assert rows["R001"]["終了日時"] == "手入力"
    assert rows["R002"]["終了日時"] == dt.datetime(2026, 11, 10, 11, 30)  # the rest is written


@pytest.mark.parametrize("person", ["sort", "insert", "delete"])
def test_rows_moved_between_read_and_write_still_get_the_right_cells(make_env, mapping, person):
    bookings = [booking(f"R00{i}", "C001", dt.datetime(2026, 11, 20 + i, 10, 0)) for i in range(1, 6)]
    env = make_env(team_tabs([customer("C001")], bookings))
    book = env.book(mapping)
    plan = reconcile(check(book.read(), mapping), NOW, mapping)
    if person == "sort":
        env.sort_rows("予約", 1, reverse=True)
    elif person == "insert":
        env.insert_row("予約", 2, booking("R000", "C001", dt.datetime(2026, 12, 1, 10, 0)))
    else:
        env.delete_row("予約", 4)  # R003, deleted by a person
    apply_plan(book, plan, mapping, RunInfo("t", NOW))
    rows = records(env, "予約")
    expected = {f"R00{i}" for i in range(1, 6)} | ({"R000"} if person == "insert" else set())
    assert {r["予約ID"] for r in rows} == expected - ({"R003"} if person == "delete" else set())
    for rec in rows:
        if rec["予約ID"] == "R000":
            assert rec.get("終了日時") is None  # inserted after the read: not in the plan
        else:
            assert rec["終了日時"] == rec["開始日時"] + dt.timedelta(minutes=90), rec


def test_text_is_stored_as_text_never_a_formula(make_env, mapping):
    evil = ["=1+1", "+81 90", "-5", "@SUM(A1)", "0042"]
    names = ["山田", "鈴木", "高橋", "田中", "伊藤"]
    env = make_env(team_tabs([customer(f"C00{i}", names[i]) for i in range(len(evil))], []))
    edits = tuple(Edit("customers", f"C00{i}", "duplicate_of", None, v, "test") for i, v in enumerate(evil))
    report = apply_plan(env.book(mapping), Plan(edits=edits), mapping, RunInfo("t", NOW))  # creates the column too
    assert report.cells_written == len(evil)
    assert [r["重複候補"] for r in records(env, "顧客")] == evil


def test_a_fixed_problem_leaves_the_error_tab(make_env, mapping):
    tabs = team()
    tabs["予約"][3][BOOKING_HEADERS.index("開始日時")] = "2026/11/25 14:00"  # R003, fixed since the last run
    errors = mapping.tabs["errors"]
    old = {"problem_id": "予約!R003!開始日時", "tab": "予約", "cell": "E4", "key": "R003", "field": "開始日時",
           "value": "11/25 14:00", "message": "年がありません（あいまいな日時）",
           "first_seen": dt.datetime(2026, 11, 19, 10, 0), "last_seen": dt.datetime(2026, 11, 19, 10, 0)}
    tabs[errors.title] = [errors.headers, [old.get(f) for f in errors.fields]]
    env = make_env(tabs)
    summary = run(env.book(mapping), mapping, NOW, quiet, run_id="t1")
    assert summary.report.rows_deleted >= 1
    ids = [r["問題ID"] for r in records(env, "エラー")]
    assert "予約!R003!開始日時" not in ids and "予約!R004!お客様番号" in ids
    assert all(ids), "no blank row left behind"


def test_a_missing_required_header_stops_before_any_write(make_env, mapping):
    tabs = team_tabs([customer("C001")], [])
    tabs["予約"][0] = [h for h in BOOKING_HEADERS if h != "開始日時"]
    env = make_env(tabs)
    before = env.fingerprint()
    with pytest.raises(InputError, match=r"予約.*開始日時"):
        run(env.book(mapping), mapping, NOW, quiet, run_id="t1")
    assert env.fingerprint() == before


# --------------------------------------------------------------------------- both adapters, side by side


def test_the_same_workbook_gives_the_same_plans_and_the_same_cells(tmp_path, standin, mapping):
    path = write_book(tmp_path / "team.xlsx", team())
    local = LocalEnv(path)
    google = env_for("google", path, standin)
    sent: dict[str, list] = {"local": [], "google": []}
    plans = {kind: run(env.book(mapping), mapping, NOW, lambda *m, k=kind: sent[k].append(m), run_id="day1").plan
             for kind, env in (("local", local), ("google", google))}
    assert plans["local"] == plans["google"] and plans["local"].size > 0
    assert local.cells() == google.cells()
    assert sent["local"] == sent["google"] and sent["local"]
    # the next day: a reschedule, a visit, a fixed date; the same edits on both, then a second run
    later = NOW + dt.timedelta(days=1)
    for env in (local, google):
        env.set_cell("予約", "E2", dt.datetime(2026, 11, 26, 15, 0))
        env.set_cell("予約", "F3", "キャンセル")
        env.set_cell("予約", "E4", "2026/11/27 11:00")
    plans = {kind: run(env.book(mapping), mapping, later, lambda *m, k=kind: sent[k].append(m), run_id="day2").plan
             for kind, env in (("local", local), ("google", google))}
    assert plans["local"] == plans["google"]
    assert any(isinstance(e.old, dt.datetime) for e in plans["google"].edits)  # old values read as datetimes
    assert plans["google"].deletes  # the fixed problem's row is removed
    assert local.cells() == google.cells()
    assert sent["local"] == sent["google"]
