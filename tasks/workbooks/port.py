"""The workbook port: what every adapter (local .xlsx, Google Sheets) offers the flow.

One composition of the write serves every adapter: structure first (missing pipeline tabs and
columns), then the compare-and-set resolution against the sheet as it is now, then one write
with the change log. Adapters only move cells.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

from tasks.frames import Capacity
from tasks.mapping import CHANGELOG, Mapping
from tasks.normalize import to_text
from tasks.plan import Plan
from tasks.write import Resolution, Skip, StructureChange, TabState, TabWrite, resolve, structure_changes


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    now: pd.Timestamp


@dataclass
class ApplyReport:
    cells_written: int = 0
    rows_added: int = 0
    rows_deleted: int = 0
    skipped: list[Skip] = field(default_factory=list)
    structure: list[StructureChange] = field(default_factory=list)
    changes: list[tuple] = field(default_factory=list)

    @property
    def wrote(self) -> bool:
        return bool(self.cells_written or self.rows_added or self.rows_deleted or self.structure)


class Transaction(Protocol):
    def headers(self) -> dict[str, list[str] | None]:
        """Header row of every tab now (None for a tab that does not exist)."""

    def change_structure(self, changes: list[StructureChange]) -> None: ...

    def states(self, titles: list[str]) -> dict[str, TabState]: ...

    def write(self, writes: list[TabWrite], *, whole: bool = True) -> None:
        """whole: every spreadsheet's write or none (a plan). False for a record of what already
        happened outside the sheets (the tell's marks): each spreadsheet takes what it can."""


class Workbook(Protocol):
    """An adapter. `read` returns every tab's cells, header row first, in one round trip."""

    def read(self) -> dict[str, list[list[Any]]]: ...

    def transaction(self, titles: list[str]) -> Any:
        """A context manager yielding a Transaction; leaving it without error commits."""

    def capacity(self) -> list[Capacity]:
        """How full the workbook is now, against each limit that would stop its writes (the rules tell
        運営 from 80%)."""

    def notes(self) -> list[str]:
        """What a person running it should know about the workbook itself (nearly full), after a run."""


def apply_plan(book: Workbook, plan: Plan, mapping: Mapping, run: RunInfo, *, structure: bool = True,
               whole: bool = True) -> ApplyReport:
    """Apply a plan: structure, compare-and-set resolution, one write including the change log.
    `whole`: see Transaction.write."""
    log_title = mapping.tabs[CHANGELOG].title
    touched = sorted({mapping.tabs[t].title for t in plan.tabs} | {log_title})
    with book.transaction(touched) as tx:
        changes = structure_changes(mapping, tx.headers()) if structure else []
        if changes:
            tx.change_structure(changes)
        states = tx.states(touched)
        resolution = resolve(plan, states, mapping)
        writes = list(resolution.writes.values())
        if resolution.changes:
            writes.append(_changelog(resolution, mapping, run, states[log_title]))
        if writes:
            tx.write(writes, whole=whole)
    return ApplyReport(
        cells_written=resolution.cells_written,
        rows_added=sum(len(w.rows) for w in resolution.writes.values()),
        rows_deleted=sum(len(w.deletes) for w in resolution.writes.values()),
        skipped=resolution.skipped,
        structure=changes,
        changes=resolution.changes,
    )


def _changelog(resolution: Resolution, mapping: Mapping, run: RunInfo, state: TabState) -> TabWrite:
    """One 変更履歴 row per changed cell (and one per added or removed row)."""
    spec = mapping.tabs[CHANGELOG]
    order = [state.header.index(h) if h in state.header else None for h in spec.headers]
    rows = []
    for title, key, header, old, new, reason in resolution.changes:
        values = [run.run_id, run.now, title, key, header, to_text(old), to_text(new), reason]
        row: list[Any] = [None] * len(state.header)
        for value, pos in zip(values, order, strict=True):
            if pos is not None:
                row[pos] = value
        rows.append(row)
    return TabWrite(spec.title, rows=rows)
