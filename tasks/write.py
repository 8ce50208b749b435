"""The compare-and-set writer's logic, shared by every workbook adapter.

Hand-written because no library does this: staff sort, insert and delete rows while a run is in
flight, so every change is resolved against the sheet as it is at write time, by key, and a cell
is written only if it still holds the value the run read. Adapters supply the sheet's current
state and carry out the resolved cell writes; they never decide what to write.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tasks.mapping import Mapping, Tab
from tasks.normalize import cell_text, to_text
from tasks.plan import Append, Plan


def rows_by_key(column: Iterable[Any]) -> dict[str, list[int]]:
    """Key text -> the sheet rows holding it (TabState.rows_of), from a key column's cells of row 2 down."""
    found: dict[str, list[int]] = {}
    for row, value in enumerate(column, start=2):
        text = cell_text(value)
        if text:
            found.setdefault(text, []).append(row)
    return found


class TabState(Protocol):
    """A tab as it is just before the write."""

    header: list[str]  # header texts, NFKC-stripped, position i = column i+1

    def rows_of(self, col: int) -> dict[str, list[int]]:
        """Key text -> the sheet rows holding it, for the key column `col`."""

    def value(self, row: int, col: int) -> Any: ...

    @property
    def last_row(self) -> int:
        """The last row with any content (1 = only the header)."""


@dataclass(frozen=True)
class Skip:
    tab: str
    key: str
    field: str
    why: str


@dataclass
class TabWrite:
    """What an adapter must do to one tab, in sheet coordinates."""

    title: str
    cells: list[tuple[int, int, Any]] = field(default_factory=list)  # row, col, typed value
    rows: list[list[Any]] = field(default_factory=list)  # appended below last_row, in column order
    deletes: list[int] = field(default_factory=list)  # rows, descending
    new_keys: set[str] = field(default_factory=set, repr=False)  # keys of `rows`: one lookup per append, not a scan

    def __bool__(self) -> bool:
        return bool(self.cells or self.rows or self.deletes)


@dataclass
class Resolution:
    writes: dict[str, TabWrite]  # by tab title
    skipped: list[Skip]
    changes: list[tuple[str, str, str, Any, Any, str]]  # tab title, key, header, old, new, reason

    @property
    def cells_written(self) -> int:
        """Cells given a value: an appended row's blank cells are not writes anyone would count."""
        return sum(len(w.cells) + sum(not _blank(v) for r in w.rows for v in r) for w in self.writes.values())


@dataclass(frozen=True)
class StructureChange:
    """A tab to create, or headers to add at the right of an existing tab."""

    title: str
    new_tab: bool
    start_col: int  # 1-based column of the first added header
    headers: tuple[str, ...]


def structure_changes(mapping: Mapping, headers: dict[str, list[str] | None]) -> list[StructureChange]:
    """Missing pipeline tabs, and missing pipeline-owned columns of existing tabs.

    `headers` maps every tab title to its header row now (None: no such tab). A staff tab that is
    missing is not created: check has already stopped the run for it.
    """
    changes = []
    for spec in mapping.tabs.values():
        now = headers.get(spec.title)
        if now is None:
            if spec.kind == "pipeline":
                changes.append(StructureChange(spec.title, True, 1, tuple(spec.headers)))
            continue
        missing = [c.header for c in spec.columns if c.owner != "staff" and c.header not in now]
        if missing:
            width = max((i + 1 for i, h in enumerate(now) if h), default=0)
            changes.append(StructureChange(spec.title, False, width + 1, tuple(missing)))
    return changes


def resolve(plan: Plan, states: dict[str, TabState], mapping: Mapping) -> Resolution:
    """Turn keyed changes into cell writes against the current sheets (compare-and-set)."""
    skipped: list[Skip] = []
    changes: list = []
    cells: dict[str, list] = defaultdict(list)
    failed_groups = _failed_groups(plan, states, mapping)
    for edit in plan.edits:
        spec = mapping.tabs[edit.tab]
        where = _locate(spec, states.get(spec.title), edit.key, edit.field)
        if isinstance(where, str):
            skipped.append(Skip(spec.title, edit.key, spec.column(edit.field).header, where))
            continue
        row, col = where
        if edit.group in failed_groups:
            skipped.append(Skip(spec.title, edit.key, spec.column(edit.field).header, "group waits"))
            continue
        current = states[spec.title].value(row, col)
        if not same(current, edit.old):
            skipped.append(Skip(spec.title, edit.key, spec.column(edit.field).header, "changed since read"))
            continue
        if edit.check_only or same(current, edit.new):
            continue
        cells[spec.title].append((row, col, edit.new))
        changes.append((spec.title, edit.key, spec.column(edit.field).header, current, edit.new, edit.reason))
    writes = {title: TabWrite(title, cells=sorted(c)) for title, c in cells.items()}
    for append in plan.appends:
        if append.group in failed_groups:
            continue
        spec = mapping.tabs[append.tab]
        write = writes.setdefault(spec.title, TabWrite(spec.title))
        row = _append_row(spec, states[spec.title], append, write)
        if row is None:
            skipped.append(Skip(spec.title, append.key, spec.key or "", "already there"))
            continue
        write.rows.append(row)
        changes.append((spec.title, append.key, "(行追加)", None, append.key, append.reason))
    for delete in plan.deletes:
        if delete.group in failed_groups:
            continue
        spec = mapping.tabs[delete.tab]
        rows = _rows_of(spec, states.get(spec.title), delete.key)
        if len(rows) > 1:  # never guess which row to remove
            skipped.append(Skip(spec.title, delete.key, spec.key or "", "key on several rows"))
        if len(rows) != 1:
            continue  # already gone (a rerun), or ambiguous
        writes.setdefault(spec.title, TabWrite(spec.title)).deletes.append(rows[0])
        changes.append((spec.title, delete.key, "(行削除)", delete.key, None, delete.reason))
    for write in writes.values():
        write.deletes.sort(reverse=True)
    return Resolution({t: w for t, w in writes.items() if w}, skipped, changes)


def same(current: Any, expected: Any) -> bool:
    """Cell equality as staff see it: blank is blank, 1 is "1", a datetime is its display text."""
    return _text(current) == _text(expected)


def _text(value: Any) -> str:
    return to_text(value).strip()  # an aware datetime as its Tokyo wall clock


def _blank(value: Any) -> bool:
    return to_text(value) == ""


def _failed_groups(plan: Plan, states: dict[str, TabState], mapping: Mapping) -> set[str]:
    """A group (a merge) goes whole or waits whole: any edit of it that cannot land fails it."""
    failed = set()
    for edit in plan.edits:
        if edit.group is None or edit.group in failed:
            continue
        spec = mapping.tabs[edit.tab]
        where = _locate(spec, states.get(spec.title), edit.key, edit.field)
        if isinstance(where, str) or not same(states[spec.title].value(*where), edit.old):
            failed.add(edit.group)
    return failed


def _rows_of(spec: Tab, state: TabState | None, key: str) -> list[int]:
    if state is None or spec.key is None:
        return []
    key_col = _col(spec, state, spec.key)
    if key_col is None:
        return []
    return state.rows_of(key_col).get(key, [])


def _locate(spec: Tab, state: TabState | None, key: str, field_name: str) -> tuple[int, int] | str:
    if state is None:
        return "tab missing"
    rows = _rows_of(spec, state, key)
    if not rows:
        return "row gone"
    if len(rows) > 1:
        return "key on several rows"
    col = _col(spec, state, field_name)
    if col is None:
        return "column missing"
    return rows[0], col


def _col(spec: Tab, state: TabState, field_name: str) -> int | None:
    header = spec.column(field_name).header
    try:
        return state.header.index(header) + 1
    except ValueError:
        return None


def _append_row(spec: Tab, state: TabState, append: Append, write: TabWrite) -> list[Any] | None:
    """The new row in the tab's current column order, or None if its key is already there."""
    if spec.key is not None:
        if _rows_of(spec, state, append.key):
            return None
        if append.key in write.new_keys:
            return None
        write.new_keys.add(append.key)
    position = {name: i for i, name in enumerate(state.header)}
    headers = {c.field: c.header for c in spec.columns}
    row: list[Any] = [None] * len(state.header)
    for name, value in zip(append.fields, append.cells, strict=True):
        col = position.get(headers.get(name))
        if col is not None:
            row[col] = value
    return row

