"""The local workbook adapter (.xlsx through openpyxl): the embedded default and the demo.

Reads every tab in one streaming pass; writes by loading the file again (the state at write
time, for compare-and-set), changing only the resolved cells and replacing the file atomically
(tasks/files.py: a symlink's target, its permissions kept), so a crash never leaves a half-written
workbook and an empty plan never touches the file.

An .xlsx sheet holds at most 1,048,576 rows (Excel's limit, which openpyxl enforces), and 変更履歴
grows by a row per changed cell: a write that would pass it is refused whole with what to do,
and from 80% each run says so (`notes`) and 運営 is told (tasks/rules/capacity.py), while there is
room to act.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openpyxl
import pandas as pd
from openpyxl.cell.cell import MergedCell
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet
from openpyxl.xml.constants import MAX_ROW

from tasks.files import replace_atomically
from tasks.frames import Capacity
from tasks.normalize import cell_text
from tasks.workbooks.xlsx_file import check_replaceable, check_suffix, opened_as_xlsx
from tasks.write import StructureChange, TabWrite, rows_by_key

DATETIME_FORMAT = "yyyy/mm/dd hh:mm"
DATETIME_WIDTH = 18  # characters: the format and a margin
DATE_FORMAT = "yyyy/mm/dd"
MAKE_ROOM = ("Move the tab's older rows to another file (変更履歴's first: nothing reads them back; keep the "
             "header row), or connect a Google Sheet: README, 'Connect your Google Sheet'")


class WorkbookFull(ValueError):
    """A write would pass the rows an .xlsx sheet can hold; nothing was written."""


class LocalWorkbook:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        check_suffix(self.path)
        self._rows_read: dict[str, int] = {}  # per tab, by the last read: a floor under a stale dimension

    def __str__(self) -> str:
        return str(self.path)

    def capacity(self) -> list[Capacity]:
        """Each tab's rows, as the file records them (its dimension; a file written without one is
        measured row by row). Formatted empty rows below the data count too: an over-count, on the
        side of telling early."""
        if not self.path.exists():
            return []
        with opened_as_xlsx(self.path):
            wb = openpyxl.load_workbook(self.path, read_only=True)
            try:
                out = []
                for ws in wb.worksheets:
                    if not ws.max_row:
                        ws.calculate_dimension(force=True)
                    rows = max(ws.max_row or 0, self._rows_read.get(ws.title, 0))
                    out.append(Capacity("rows", ws.title, rows, MAX_ROW, self.path.name))
                return out
            finally:
                wb.close()

    def notes(self) -> list[str]:
        """A tab near the .xlsx row limit: said while there is room left, since a write past it is refused."""
        return [f"workbook {self.path.name}: tab {c.name} holds {c.used:,} of the {c.limit:,} rows an .xlsx sheet "
                f"can hold ({c.percent}%): past them every write is refused. {MAKE_ROOM}"
                for c in self.capacity() if c.nearly_full]

    def read(self) -> dict[str, list[list[Any]]]:
        if not self.path.exists():
            raise FileNotFoundError(f"workbook not found: {self.path}")
        with opened_as_xlsx(self.path):
            wb = openpyxl.load_workbook(self.path, read_only=True, data_only=True)
            try:
                tabs = {}
                for ws in wb.worksheets:
                    # Read-only mode stops at the rows the file's dimension record claims, and some writers
                    # record it wrong (Apache POI's streaming writer: always A1): the headers go unseen, or
                    # a short record drops bookings as if deleted. Reset, openpyxl reads every row there is.
                    ws.reset_dimensions()
                    tabs[ws.title] = [list(r) for r in ws.iter_rows(values_only=True)]
            finally:
                wb.close()
        self._rows_read = {title: len(rows) for title, rows in tabs.items()}
        return tabs

    @contextmanager
    def transaction(self, titles: list[str]) -> Iterator[_Transaction]:
        del titles  # a local file is loaded whole
        with opened_as_xlsx(self.path):
            wb = openpyxl.load_workbook(self.path)
        tx = _Transaction(wb, self.path.name)
        yield tx
        if tx.dirty:
            check_replaceable(self.path)
            replace_atomically(self.path, wb.save)


class _Transaction:
    def __init__(self, wb: openpyxl.Workbook, name: str):
        self.wb = wb
        self.name = name
        self.dirty = False

    def headers(self) -> dict[str, list[str] | None]:
        return {ws.title: _SheetState(ws).header for ws in self.wb.worksheets}

    def change_structure(self, changes: list[StructureChange]) -> None:
        for change in changes:
            ws = self.wb.create_sheet(change.title) if change.new_tab else self.wb[change.title]
            for offset, header in enumerate(change.headers):
                _put(_writable(ws, 1, change.start_col + offset), header)
                col = change.start_col + offset
                if not any(d.min and d.max and d.min <= col <= d.max for d in ws.column_dimensions.values()):
                    ws.column_dimensions[get_column_letter(col)].width = _width(header)  # a person's width stays
            ws.freeze_panes = ws.freeze_panes or "A2"
        self.dirty = self.dirty or bool(changes)

    def states(self, titles: list[str]) -> dict[str, _SheetState]:
        return {t: _SheetState(self.wb[t]) for t in titles if t in self.wb.sheetnames}

    def write(self, writes: list[TabWrite], *, whole: bool = True) -> None:
        del whole  # one file: saved whole or not at all either way
        self._check_room(writes)
        for write in writes:
            ws = self.wb[write.title]
            for row, col, value in write.cells:
                _put(_writable(ws, row, col), value)
            start = _SheetState(ws).last_row + 1
            for offset, values in enumerate(write.rows):
                for col, value in enumerate(values, start=1):
                    if value is not None:
                        _put(_writable(ws, start + offset, col), value)
            for row in write.deletes:
                _delete_row(ws, row)
            self.dirty = True

    def _check_room(self, writes: list[TabWrite]) -> None:
        """Every tab's new rows against the .xlsx limit, before any cell is set (openpyxl would stop
        mid-write with a bare ValueError; the file is not saved either way)."""
        added: dict[str, int] = {}
        for write in writes:
            added[write.title] = added.get(write.title, 0) + len(write.rows)
        for title, n in added.items():
            if n and (last := _SheetState(self.wb[title]).last_row + n) > MAX_ROW:
                raise WorkbookFull(
                    f"workbook {self.name}: tab {title} would need {last:,} rows, past the {MAX_ROW:,} an .xlsx "
                    f"sheet can hold; nothing was written. {MAKE_ROOM}")


class _SheetState:
    def __init__(self, ws: Worksheet):
        self.ws = ws
        self.header = [cell_text(c.value) for c in ws[1]] if ws.max_row else []
        self._keys: dict[int, dict[str, list[int]]] = {}

    def rows_of(self, col: int) -> dict[str, list[int]]:
        if col not in self._keys:
            cells = self.ws.iter_rows(min_row=2, min_col=col, max_col=col, values_only=True)
            self._keys[col] = rows_by_key(value for (value,) in cells)
        return self._keys[col]

    def value(self, row: int, col: int) -> Any:
        return self.ws.cell(row=row, column=col).value

    @property
    def last_row(self) -> int:
        row = self.ws.max_row
        while row > 1 and all(c.value in (None, "") for c in self.ws[row]):
            row -= 1
        return row


def _width(header: str) -> float:
    """A column the run adds, wide enough for its header and a date-time: Excel's default (8.43
    characters) shows `yyyy/mm/dd hh:mm` as ####. A full-width character takes two."""
    return max(DATETIME_WIDTH, sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in header) + 2)


def _writable(ws: Worksheet, row: int, col: int) -> Any:
    """The cell, out of any merged range first: openpyxl cannot write a merged range's other cells,
    and unmerging loses nothing (only the top-left cell of a range holds a value)."""
    cell = ws.cell(row=row, column=col)
    if isinstance(cell, MergedCell):
        for merged in [m for m in ws.merged_cells.ranges if cell.coordinate in m]:
            ws.unmerge_cells(merged.coord)
        cell = ws.cell(row=row, column=col)
    return cell


def _delete_row(ws: Worksheet, row: int) -> None:
    """Delete a row; merged ranges below move up with their cells (openpyxl leaves them where they
    were, over other rows), and a range over the row is unmerged."""
    for merged in list(ws.merged_cells.ranges):
        if merged.min_row <= row <= merged.max_row:
            ws.unmerge_cells(merged.coord)
        elif merged.min_row > row:
            merged.shift(row_shift=-1)
    ws.delete_rows(row)


def _put(cell: Any, value: Any) -> None:
    """Write a typed value; text is always text (never a formula), times are real date-times."""
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone(dt.timedelta(hours=9))).replace(tzinfo=None)
        cell.value = value
        cell.number_format = DATETIME_FORMAT
        return
    if isinstance(value, dt.date):
        cell.value = value
        cell.number_format = DATE_FORMAT
        return
    cell.value = value
    if isinstance(value, str):
        cell.data_type = "s"  # openpyxl would store "=..." as a formula
