"""What the rules see: one typed table per tab, the raw cells beside it, and the input's problems."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pandas as pd

from tasks.a1 import a1
from tasks.mapping import Tab
from tasks.normalize import is_missing

T = TypeVar("T")
ROW = "_row"  # the sheet row a record was read from: for messages only, never for writing
DATETIME = "datetime64[ns, Asia/Tokyo]"  # the dtype of every datetime column


NEARLY_FULL = 0.8  # share of a workbook's limit from which a run says so, and 運営 is told


@dataclass(frozen=True)
class Capacity:
    """How full the workbook is against a limit that stops every write once passed: a Google
    spreadsheet's cells (every tab's whole grid), an .xlsx tab's rows. As the adapter knows it."""

    unit: str  # "cells" (a spreadsheet) or "rows" (a tab)
    name: str  # the spreadsheet's alias, or the tab's title
    used: int
    limit: int
    label: str = ""  # what staff call the workbook: the spreadsheet's title, the file's name

    @property
    def percent(self) -> int:
        """Whole percent, rounded down: 99.9% is not yet full (said alike by the run and the notice)."""
        return 100 * self.used // self.limit

    @property
    def nearly_full(self) -> bool:
        return self.used >= NEARLY_FULL * self.limit


@dataclass(frozen=True)
class Problem:
    """One bad cell (or header) in the input, as staff will see it in エラー."""

    tab: str  # the tab's title
    cell: str  # A1 at read time
    key: str
    field: str  # the header
    value: str
    message: str  # Japanese, says what is wrong

    @property
    def problem_id(self) -> str:
        return f"{self.tab}!{self.key}!{self.field}"


@dataclass
class Table:
    """A tab as the rules see it.

    `data` holds normalized values (a bad cell is None there), indexed by the key as text; `raw`
    the cells exactly as read, for the writer's compare-and-set; `bad` marks the cells that had a
    problem, so a rule skips a row only for the fields it needs.
    """

    name: str
    spec: Tab
    data: pd.DataFrame
    raw: pd.DataFrame
    bad: pd.DataFrame
    present: frozenset[str]
    exists: bool
    col_of: dict[str, int] = field(default_factory=dict)  # field -> 1-based column at read time

    def raw_value(self, key: str, field: str) -> Any:
        if field not in self.raw.columns or key not in self.raw.index:
            return None
        value = self.raw.at[key, field]
        return None if is_missing(value) else value

    def usable(self, *fields: str) -> pd.Series:
        """Rows whose given fields were read without a problem."""
        ok = pd.Series(True, index=self.data.index)
        for name in fields:
            if name in self.bad.columns:
                ok &= ~self.bad[name]
        return ok

    def a1(self, key: str, field: str) -> str:
        """The A1 address of a cell as read, for staff-facing messages ("" if unknown)."""
        col = self.col_of.get(field)
        if col is None or key not in self.data.index:
            return ""
        return a1(int(self.data.at[key, ROW]), col)

    def a1_many(self, keys: list[str], field: str) -> list[str]:
        """`a1` for many keys of a keyed table at once: one reindex, not a look-up per key."""
        col = self.col_of.get(field)
        if col is None:
            return [""] * len(keys)
        rows = self.data[ROW].reindex(keys).tolist()
        return ["" if is_missing(row) else a1(int(row), col) for row in rows]


@dataclass
class Frames:
    tables: dict[str, Table]
    problems: list[Problem]
    capacity: tuple[Capacity, ...] = ()  # the workbook's own, as read (not a tab's cells)
    _derived: dict[tuple, tuple[Any, Any]] = field(default_factory=dict, init=False, compare=False, repr=False)

    def derived(self, name: str, now: pd.Timestamp | None, mapping: Any, compute: Callable[[], T]) -> T:
        """A fact several rules derive alike (the booking facts, the reminder state), computed once.

        Safe because frames are not changed after check and rules never change what they are
        given; the mapping is kept with the value, so its id cannot be reused for another one.
        """
        key = (name, now, id(mapping))
        hit = self._derived.get(key)
        if hit is None or hit[0] is not mapping:
            hit = self._derived[key] = (mapping, compute())
        return hit[1]

    def __getitem__(self, name: str) -> Table:
        return self.tables[name]
