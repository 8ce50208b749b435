"""Bad input: hostile workbooks and generated cells thrown at whole runs, on both adapters.

The corpus (issue 9): missing, repeated and renamed headers and tabs, empty tabs, merged cells
(.xlsx), formulas, formula-injection text, 10,000-character cells, control characters (Google:
an .xlsx cannot hold them), emoji, every status spelled wrong. Then hypothesis puts generated
values in random cells. Every run must:
- not crash: it completes, or stops before anything is written with one InputError naming the
  tab and the header;
- put every problem in エラー, at the cell that holds the value it quotes (and every bad cell we
  planted is there);
- write nothing the plan did not ask for (no staff cell, no row of another key, no other tab);
- store no formula: every formula after the run was typed by a person before it.

Counts of what was tried are added to $SALESOPS_HARNESS_COUNTS (see tests/test_reliability.py).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from flows.pipeline import RunSummary, run
from tasks.a1 import a1
from tasks.check import InputError
from tasks.mapping import load_mapping
from tasks.normalize import to_text
from tasks.workbooks.local import LocalWorkbook
from tasks.write import TabWrite
from tests.conftest import BOOKING_HEADERS, CUSTOMER_HEADERS, NOW, booking, customer, team_tabs, write_book
from tests.sheets_standin import Cell, SheetsStandin, python_cell
from tests.test_reliability import (
    Formula,
    Transport,
    add_counts,
    google_book,
    sheet_state,
    unplanned_changes,
)

COUNTS: Counter = Counter()
ERRORS = "エラー"
SERIAL_EPOCH = dt.datetime(1899, 12, 30)  # day 0 of Sheets' serials
STAFF_TABS = ("顧客", "予約", "担当者")


@pytest.fixture(scope="module", autouse=True)
def _report_counts() -> Iterator[None]:
    yield
    add_counts(COUNTS)
    COUNTS.clear()


@pytest.fixture(scope="module")
def standin() -> Iterator[SheetsStandin]:
    with SheetsStandin() as server:
        yield server


# --------------------------------------------------------------------------- the workbooks


def base() -> dict[str, list[list]]:
    """A small valid team: an active booking, a won deal (a payment-link request), a caution person."""
    at = dt.datetime
    return team_tabs(
        [customer("C001", "山田", "太郎", 電話番号="090-1234-5678", メールアドレス="taro@example.com"),
         customer("C002", "佐藤", "花子", LINEユーザーID="U" + "a" * 32),
         customer("C003", "鈴木", "一郎", 要注意メモ="声が大きい"),
         customer("C004", "高橋", "二郎"),
         customer("C005", "田中", "三郎")],
        [booking("R001", "C001", at(2026, 11, 25, 14, 0)),
         booking("R002", "C002", at(2026, 11, 18, 10, 0), "来店済み", 結果="成約", プラン="ライト"),
         booking("R003", "C003", at(2026, 11, 26, 10, 0)),
         booking("R004", "C004", at(2026, 11, 27, 10, 0), "キャンセル", キャンセル区分="日程変更希望"),
         booking("R005", "C005", at(2026, 11, 28, 10, 0))],
    )


WRONG_STATUSES = ("仮予約", "事前決済未払", "予約中", "事前決済済み", "来店済", "きゃんせる", "店舗都合キャンセル",
                  "キャンセル料")
LONG = "=1+1" + "長" * 10_000
CONTROL = "a\x00b\x07c\x1b[31m\x7f\u200b\u202eZ\tY\r\nX"


class Bad:
    """A hostile cell: where it goes, what it holds, whether check must report it."""

    def __init__(self, tab: str, key: str, header: str, value: Any, *, reported: bool = False,
                 formula: bool = False, google_only: bool = False):
        self.tab, self.key, self.header, self.value = tab, key, header, value
        self.reported, self.formula, self.google_only = reported, formula, google_only


def hostile() -> tuple[dict[str, list[list]], list[Bad]]:
    """One workbook holding every hostility that must not stop a run."""
    tabs = base()
    at = dt.datetime(2026, 11, 29, 10, 0)
    for i, status in enumerate(WRONG_STATUSES, start=1):  # every status spelled wrong, one row each
        tabs["予約"].append(booking(f"R10{i}", "C004", at + dt.timedelta(days=i), status))
    bad = [Bad("予約", f"R10{i}", "ステータス", s, reported=True) for i, s in enumerate(WRONG_STATUSES, start=1)]
    bad += [
        Bad("予約", "R003", "メニュー", "個別", reported=True),
        Bad("予約", "R005", "アクション実行", "する", reported=True),
        Bad("予約", "R004", "キャンセル区分", "日程変更", reported=True),
        Bad("予約", "R001", "Zoomリンク", "javascript:alert(1)", reported=True),
        # formula-injection text: names and plans are copied into pipeline tabs and messages
        Bad("顧客", "C001", "姓", '=HYPERLINK("http://evil.example","x")'),
        Bad("顧客", "C002", "名", "+1-2"),
        Bad("顧客", "C002", "LINE名", "@SUM(A1:A9)"),
        Bad("予約", "R002", "プラン", "=cmd|' /C calc'!A0"),
        Bad("顧客", "C004", "電話番号", "=2+3", reported=True),
        Bad("顧客", "C004", "メールアドレス", "@example.com", reported=True),
        # 10,000 characters, copied into アラート (「❗要注意: <memo>」)
        Bad("顧客", "C003", "要注意メモ", LONG),
        Bad("顧客", "C005", "個別メモ", "x" * 10_000),
        # emoji and invisible characters
        Bad("顧客", "C005", "姓", "😀🎉"),
        Bad("顧客", "C005", "名", "👨\u200d👩\u200d👧"),
        Bad("顧客", "C005", "セイ", "\u200bタナカ"),
        # formulas a person typed (stored as formulas)
        Bad("顧客", "C004", "個別メモ", "=1+1", formula=True),
        Bad("予約", "R003", "結果", '="成約"', formula=True),
        # control characters (an .xlsx cannot hold them)
        Bad("顧客", "C005", "要注意メモ", CONTROL, google_only=True),
        Bad("顧客", "C001", "LINE名", "\x01\x02\x03", google_only=True),
    ]
    tabs[ERRORS] = []  # an empty pipeline tab: the run gives it its headers
    tabs["リマインド (旧)"] = [["リマインドID", "状態"], ["R001:挨拶:即時", "送信済"]]  # a renamed copy: never touched
    return tabs, bad


def place(tabs: dict[str, list[list]], bad: list[Bad]) -> dict[tuple[str, str, str], str]:
    """Put the hostile values in; return (tab, key, header) -> their A1 cell."""
    cells = {}
    for b in bad:
        rows = tabs[b.tab]
        r = next(i for i, row in enumerate(rows) if i and row and row[0] == b.key)
        c = rows[0].index(b.header)
        rows[r] = list(rows[r]) + [""] * (c + 1 - len(rows[r]))
        rows[r][c] = b.value
        cells[(b.tab, b.key, b.header)] = a1(r + 1, c + 1)
    return cells


def stopping() -> dict[str, tuple[dict[str, list[list]], str, str]]:
    """Workbooks that must stop the run before anything is written: name -> (tabs, tab, header)."""
    out = {}
    tabs = base()
    col = BOOKING_HEADERS.index("開始日時")
    tabs["予約"] = [r[:col] + r[col + 1:] for r in tabs["予約"]]
    out["missing header"] = (tabs, "予約", "開始日時")
    tabs = base()
    tabs["顧客"][0] = [h if h != "メールアドレス" else "電話番号" for h in CUSTOMER_HEADERS]
    out["repeated header"] = (tabs, "顧客", "電話番号")
    tabs = base()
    tabs["予約一覧"] = tabs.pop("予約")
    out["staff tab renamed"] = (tabs, "予約", "")
    tabs = base()
    tabs["担当者"] = []
    out["staff tab empty"] = (tabs, "担当者", "名前")
    tabs = base()
    tabs["予約"][0] = ["＝SUM(1)" if h == "予約ID" else h for h in BOOKING_HEADERS]
    out["key header replaced"] = (tabs, "予約", "予約ID")
    return out


# --------------------------------------------------------------------------- the two adapters


class LocalBook:
    """A hostile workbook as an .xlsx (formulas as formulas, merged cells), and its states."""

    def __init__(self, path: Path, tabs: dict[str, list[list]], formulas: set[tuple[str, str]] = frozenset(),
                 merges: dict[str, list[str]] | None = None):
        write_book(path, {t: [["" if isinstance(v, str) and ILLEGAL_CHARACTERS_RE.search(v) else v for v in r]
                              for r in rows] for t, rows in tabs.items()})
        if formulas or merges:
            wb = openpyxl.load_workbook(path)
            for title, cell in formulas:
                wb[title][cell].data_type = "f"
            for title, ranges in (merges or {}).items():
                for cells in ranges:
                    wb[title].merge_cells(cells)
            wb.save(path)
        self.path = path

    def book(self, mapping) -> LocalWorkbook:
        del mapping
        return LocalWorkbook(self.path)

    def stored(self) -> dict[str, list[list[Any]]]:
        """Cells as stored: formulas as Formula."""
        wb = openpyxl.load_workbook(self.path)
        try:
            return {ws.title: _trim([[Formula(c.value) if c.data_type == "f" else c.value for c in r]
                                     for r in ws.iter_rows()]) for ws in wb.worksheets}
        finally:
            wb.close()

    def shown(self) -> dict[str, list[list[Any]]]:
        wb = openpyxl.load_workbook(self.path, data_only=True)
        try:
            return {ws.title: _trim([list(r) for r in ws.iter_rows(values_only=True)]) for ws in wb.worksheets}
        finally:
            wb.close()

    def fingerprint(self) -> bytes:
        return self.path.read_bytes()


class GoogleBook:
    """A hostile workbook as a spreadsheet of the stand-in: text as typed RAW, formulas as typed."""

    def __init__(self, standin: SheetsStandin, sid: str, tabs: dict[str, list[list]],
                 formulas: set[tuple[str, str]] = frozenset()):
        standin.add_spreadsheet(sid, tabs)
        with standin._lock:  # add_spreadsheet types every "=…" as a formula; the rest is RAW text
            book = standin._book(sid)
            for title, rows in tabs.items():
                sheet = book.by_title(title)
                for r, row in enumerate(rows):
                    for c, value in enumerate(row):
                        if isinstance(value, str) and (title, a1(r + 1, c + 1)) not in formulas:
                            sheet.put(r, c, Cell(value) if value else None)
                        elif (title, a1(r + 1, c + 1)) in formulas:
                            sheet.put(r, c, python_cell(value))
        self.standin, self.sid = standin, sid

    def book(self, mapping):
        return google_book(self.standin, self.sid, mapping)

    def stored(self) -> dict[str, list[list[Any]]]:
        return sheet_state(self.standin, self.sid)

    def shown(self) -> dict[str, list[list[Any]]]:
        return {t: self.standin.tab_values(self.sid, t) for t in self.stored()}

    def fingerprint(self) -> tuple:
        writes = self.standin.count("spreadsheets.batchUpdate", self.sid)
        return writes, repr(self.stored())


def _trim(rows: list[list[Any]]) -> list[list[Any]]:
    out = []
    for row in rows:
        row = ["" if v is None else v for v in row]
        while row and row[-1] == "":
            row.pop()
        out.append(row)
    while out and not out[-1]:
        out.pop()
    return out


# --------------------------------------------------------------------------- the invariants


def judge(before: dict, after: dict, shown_before: dict, summary: RunSummary, mapping,
          planted: dict[tuple[str, str, str], str] | None = None) -> list[str]:
    """Everything a run on bad input must hold (the module docstring), as a list of what did not."""
    found = unplanned_changes(before, after, summary.plan, mapping, [])
    found += [f"{s.title}: a staff tab without a key changed" for s in mapping.tabs.values()
              if s.kind == "staff" and not s.key and before.get(s.title) != after.get(s.title)]
    titles = {s.title for s in mapping.tabs.values()}
    found += [f"{t}: a tab the mappings do not know changed" for t in before if t not in titles and before[t] != after.get(t)]
    found += [f"{t}: a tab lost" for t in before if t not in after]
    made = formulas(after) - formulas(before)
    found += [f"{t}: a formula stored by the run: {f[:60]!r}" for t, f in made.elements()]
    errors = records(after.get(ERRORS, []))
    listed = {(e["タブ"], e["セル"], e["項目"]) for e in errors}
    found += [f"problem not in {ERRORS}: {p.tab} {p.cell} {p.field}: {p.message}"
              for p in summary.problems if (p.tab, p.cell, p.field) not in listed]
    for e in errors:
        shown = cell_at(shown_before.get(e["タブ"], []), e["セル"])
        if e["値"] and not _alike(shown, e["値"]):
            found.append(f"{ERRORS} row {e['問題ID']}: cell {e['セル']} holds {to_text(shown)[:40]!r}, "
                         f"not the value quoted {to_text(e['値'])[:40]!r}")
    reported = {(e["タブ"], e["セル"]) for e in errors}
    found += [f"planted bad cell not reported: {tab} {cell} ({key} {header})"
              for (tab, key, header), cell in (planted or {}).items() if (tab, cell) not in reported]
    return found


def formulas(state: dict[str, list[list[Any]]]) -> Counter:
    return Counter((t, str(v)) for t, rows in state.items() for r in rows for v in r if isinstance(v, Formula))


def records(rows: list[list[Any]]) -> list[dict[str, Any]]:
    if not rows:
        return []
    header = [to_text(h) for h in rows[0]]
    return [dict(zip(header, list(r) + [""] * (len(header) - len(r)), strict=False)) for r in rows[1:] if any(r)]


def cell_at(rows: list[list[Any]], cell: str) -> Any:
    m = re.fullmatch(r"([A-Z]+)(\d+)", to_text(cell))
    if not m:
        return None
    col = 0
    for ch in m[1]:
        col = col * 26 + ord(ch) - 64
    row = int(m[2])
    line = rows[row - 1] if 0 < row <= len(rows) else []
    return line[col - 1] if col <= len(line) else None


def _alike(shown: Any, quoted: Any) -> bool:
    """The cell's text and the text quoted in エラー, as check normalizes (NFKC, stripped). A date
    typed into a column that is not a date column is read from Google as its serial number (the
    read is UNFORMATTED_VALUE), and quoted so."""
    def text(v: Any) -> str:
        return unicodedata.normalize("NFKC", to_text(v)).strip()
    if isinstance(shown, dt.date) and not isinstance(shown, dt.datetime):
        shown = dt.datetime.combine(shown, dt.time())
    if isinstance(shown, dt.datetime) and re.fullmatch(r"\d+(\.\d+)?", text(quoted)):
        return abs(float(text(quoted)) - (shown - SERIAL_EPOCH) / dt.timedelta(days=1)) < 1 / 86400
    return text(shown) == text(quoted)


def run_on(workbook: LocalBook | GoogleBook, mapping) -> tuple[RunSummary, dict, dict, dict]:
    before, shown = workbook.stored(), workbook.shown()
    summary = run(workbook.book(mapping), mapping, NOW, Transport())
    return summary, before, workbook.stored(), shown


# --------------------------------------------------------------------------- the corpus


@pytest.mark.parametrize("adapter", ["local", "google"])
def test_hostile_workbook_runs_and_reports_every_bad_cell(adapter, tmp_path, standin, mapping):
    tabs, bad = hostile()
    bad = [b for b in bad if adapter == "google" or not b.google_only]
    cells = place(tabs, bad)
    formula_cells = {(b.tab, cells[(b.tab, b.key, b.header)]) for b in bad if b.formula}
    if adapter == "local":
        workbook = LocalBook(tmp_path / "hostile.xlsx", tabs, formula_cells,
                             merges={"顧客": ["Q3:Q4", "J5:J6"], "予約": ["J3:J4"]})
    else:
        workbook = GoogleBook(standin, "hostile-1", tabs, formula_cells)
    summary, before, after, shown = run_on(workbook, mapping)
    COUNTS["bad_inputs_tried"] += len(bad) + 2 + (3 if adapter == "local" else 0)  # + empty tab, renamed tab, merges
    planted = {k: v for k, v in cells.items() if next(b for b in bad if (b.tab, b.key, b.header) == k).reported}
    found = judge(before, after, shown, summary, mapping, planted)
    assert summary.report.cells_written > 0 and summary.problems  # it ran, and it had things to say
    assert after[ERRORS][0][:2] == ["問題ID", "タブ"]  # the empty pipeline tab got its headers
    assert any(isinstance(v, str) and v.startswith("=cmd") for r in after["決済リンク依頼"] for v in r)  # copied as text
    COUNTS["losses_found"] += len(found)
    assert not found, "\n".join(found[:30])


@pytest.mark.parametrize("adapter", ["local", "google"])
def test_empty_staff_tabs_run(adapter, tmp_path, standin, mapping):
    tabs = base()
    tabs["予約"] = tabs["予約"][:1]
    tabs["担当者"] = tabs["担当者"][:1]
    workbook = LocalBook(tmp_path / "empty.xlsx", tabs) if adapter == "local" else GoogleBook(standin, "empty-1", tabs)
    summary, before, after, shown = run_on(workbook, mapping)
    COUNTS["bad_inputs_tried"] += 2
    found = judge(before, after, shown, summary, mapping)
    assert not found, "\n".join(found)
    assert records(after["顧客"])[0]["予約回数"] in (0, "0")  # it did run its rules


@pytest.mark.parametrize("case", sorted(stopping()))
@pytest.mark.parametrize("adapter", ["local", "google"])
def test_unreadable_workbook_stops_before_writing(adapter, case, tmp_path, standin, mapping):
    tabs, tab, header = stopping()[case]
    sid = "stop-" + re.sub(r"\W", "-", case)
    workbook = LocalBook(tmp_path / "stop.xlsx", tabs) if adapter == "local" else GoogleBook(standin, sid, tabs)
    print_before = workbook.fingerprint()
    with pytest.raises(InputError) as stop:
        run(workbook.book(mapping), mapping, NOW, Transport())
    COUNTS["bad_inputs_tried"] += 1
    message = str(stop.value)
    assert f"『{tab}』" in message and (not header or f"『{header}』" in message) and "\n" not in message
    assert workbook.fingerprint() == print_before  # not a byte, not a request


def test_local_row_removal_keeps_merged_ranges_with_their_rows(tmp_path):
    """openpyxl's delete_rows leaves merged ranges where they were, over other rows' cells; the
    adapter moves them up with their rows, and unmerges one over the removed row."""
    path = tmp_path / "merged.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = ERRORS
    for r in range(1, 7):
        ws.cell(r, 1, f"k{r}")
    ws.merge_cells("C2:C3")  # over the row removed
    ws.merge_cells("C5:C6")  # below it
    ws["C5"] = "memo"
    wb.save(path)
    with LocalWorkbook(path).transaction([ERRORS]) as tx:
        tx.write([TabWrite(ERRORS, deletes=[3])])
    ws = openpyxl.load_workbook(path)[ERRORS]
    assert [str(m) for m in ws.merged_cells.ranges] == ["C4:C5"]
    assert ws["C4"].value == "memo" and [ws.cell(r, 1).value for r in range(1, 6)] == ["k1", "k2", "k4", "k5", "k6"]
    COUNTS["bad_inputs_tried"] += 2


# --------------------------------------------------------------------------- generated cells


SPICE = "=+-@'\"\\,、;\n\t\x00\x07\x1b\u200b\u202e\ufeff０１２３ｱｲｳ😀👨\u200d👩\u200d👧キャンセル成約予約中来店済み" \
        "090-1234-5678@example.com2026/11/25 10:00TRUE✓済"
cell_values = st.one_of(
    st.none(),
    st.text(alphabet=st.one_of(st.sampled_from(SPICE), st.characters(exclude_categories=("Cs",))), max_size=40),
    st.sampled_from(["=1+1", "=A1", "=SUM(", "+81 90-1234-5678", "-1", "@x", "'=1", "x" * 10_000, "", " ", "\u3000"]),
    st.integers(min_value=-(2**53), max_value=2**53),  # Sheets' numbers are doubles
    st.floats(min_value=-9.99e307, max_value=9.99e307),  # Excel's and Sheets' range
    st.booleans(),
    st.datetimes(min_value=dt.datetime(1900, 3, 1), max_value=dt.datetime(2200, 1, 1)),
    st.dates(min_value=dt.date(1900, 3, 1), max_value=dt.date(2200, 1, 1)),
)
edits = st.lists(st.tuples(st.sampled_from(STAFF_TABS), st.integers(1, 8), st.integers(0, 16), cell_values),
                 min_size=1, max_size=12)


def generated(cells: list[tuple[str, int, int, Any]], *, xlsx: bool) -> dict[str, list[list]]:
    """The base workbook with generated values typed into body cells (headers stay readable)."""
    tabs = base()
    for title, r, c, value in cells:
        rows = tabs[title]
        r, c = 1 + (r - 1) % (len(rows) - 1), c % len(rows[0])
        if xlsx and isinstance(value, str):
            value = ILLEGAL_CHARACTERS_RE.sub("", value)  # an .xlsx cannot hold them
        rows[r] = list(rows[r]) + [""] * (c + 1 - len(rows[r]))
        rows[r][c] = value
    return tabs


def _generated_case(adapter: str, cells, tmp_path: Path, standin: SheetsStandin) -> None:
    mapping = load_mapping()
    COUNTS["generated_workbooks"] += 1
    COUNTS["bad_inputs_tried"] += len(cells)
    tabs = generated(cells, xlsx=adapter == "local")
    if adapter == "local":
        workbook = LocalBook(tmp_path / f"gen{COUNTS['generated_workbooks']}.xlsx", tabs)
    else:
        workbook = GoogleBook(standin, f"gen-{COUNTS['generated_workbooks']}", tabs)
    summary, before, after, shown = run_on(workbook, mapping)
    found = judge(before, after, shown, summary, mapping)
    COUNTS["losses_found"] += len(found)
    assert not found, "\n".join(found[:30])


# each example is a whole run (seconds): no shrinking (the failing cells are printed as drawn)
GENERATED = settings(deadline=None, derandomize=True, database=None, phases=(Phase.explicit, Phase.generate),
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.mark.parametrize("adapter", ["local", "google"])
@settings(GENERATED, max_examples=4)
@given(cells=edits)
def test_generated_cells_short(adapter, cells, tmp_path, standin):
    _generated_case(adapter, cells, tmp_path, standin)


@pytest.mark.long
@pytest.mark.parametrize("adapter", ["local", "google"])
@settings(GENERATED, max_examples=150, derandomize=False)
@given(cells=edits)
def test_generated_cells_long(adapter, cells, tmp_path, standin):
    _generated_case(adapter, cells, tmp_path, standin)
