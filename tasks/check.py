"""Check: turn the cells of every tab into typed tables, and every bad cell into a problem.

Headers are matched by name, never by position. A required header that is missing or repeated
stops the run before anything is written; a bad cell only costs its row the rules that need it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from tasks.a1 import a1
from tasks.frames import DATETIME, ROW, Capacity, Frames, Problem, Table
from tasks.mapping import CHANGELOG, Mapping, Tab
from tasks.normalize import cell_text, normalize_series, to_text
from tasks.pure_step import pure_step


class InputError(ValueError):
    """The sheets cannot be read safely (a tab or a required header is missing or repeated)."""


def check(raw_tabs: dict[str, list[list[Any]]], mapping: Mapping, capacity: tuple[Capacity, ...] = ()) -> Frames:
    """`capacity`: how full the workbook is, as its adapter read it (passed on to the rules)."""
    with pure_step():  # a list per row, a frame per tab: the collector waits until they are built
        return _check(raw_tabs, mapping, capacity)


def _check(raw_tabs: dict[str, list[list[Any]]], mapping: Mapping, capacity: tuple[Capacity, ...]) -> Frames:
    tables: dict[str, Table] = {}
    problems: list[Problem] = []
    for name, spec in mapping.tabs.items():
        rows = raw_tabs.get(spec.title)
        if name == CHANGELOG:  # written, never read: its rows (millions at 100k) are not checked
            if rows:
                header_positions(rows[0], spec)  # a repeated header still stops the run: the log is written by header
            rows = None
        if rows is not None and spec.kind == "pipeline" and not any(to_text(v).strip() for r in rows for v in r):
            rows = None  # a pipeline tab a person emptied is as good as missing: the write gives it its headers
        if rows is None and spec.kind == "staff":
            raise InputError(f"タブ『{spec.title}』がありません (tab {spec.title!r} is missing)")
        table, found = _table(name, spec, rows, mapping)
        tables[name] = table
        problems += found
    problems += _dangling_references(tables, mapping)
    return Frames(tables=tables, problems=problems, capacity=capacity)


def header_positions(header_row: list[Any], spec: Tab) -> dict[str, int]:
    """Field -> 1-based column, by header name. Raises on a missing required or repeated header."""
    seen: dict[str, list[int]] = {}
    for col, cell in enumerate(header_row, start=1):
        text = cell_text(cell)
        if text:
            seen.setdefault(text, []).append(col)
    positions: dict[str, int] = {}
    for column in spec.columns:
        cols = seen.get(column.header, [])
        if len(cols) > 1:
            letters = ", ".join(a1(1, c) for c in cols)
            raise InputError(
                f"タブ『{spec.title}』の見出し『{column.header}』が複数あります（{letters}）。"
                f" (tab {spec.title!r}: header {column.header!r} appears {len(cols)} times)"
            )
        if cols:
            positions[column.field] = cols[0]
        elif column.required:
            raise InputError(
                f"タブ『{spec.title}』に必須の見出し『{column.header}』がありません。"
                f" (tab {spec.title!r}: required header {column.header!r} is missing)"
            )
    return positions


def _table(name: str, spec: Tab, rows: list[list[Any]] | None, mapping: Mapping) -> tuple[Table, list[Problem]]:
    exists = rows is not None
    rows = rows or [[]]
    positions = header_positions(rows[0], spec) if exists else {}
    raw = _raw_frame(rows[1:], positions, spec)
    problems: list[Problem] = []
    data = pd.DataFrame(index=raw.index)
    bad = pd.DataFrame(False, index=raw.index, columns=spec.fields)
    for column in spec.columns:
        if column.field not in positions:
            data[column.field] = _empty(column.type, raw.index)
            continue
        vocab = mapping.vocab.get(column.vocab or "", ())
        values, issues = normalize_series(
            column.type, raw[column.field], vocab=tuple(vocab), truths=mapping.check_truths
        )
        data[column.field] = _typed(column.type, values)
        flagged = issues.notna()
        bad[column.field] = flagged.to_numpy()
        if flagged.any():
            problems += _problems(spec, raw[flagged], column.field, positions, issues[flagged])
    data[ROW] = raw[ROW]
    table = Table(
        name=name, spec=spec, data=data, raw=raw, bad=bad, present=frozenset(positions),
        exists=exists, col_of=positions,
    )
    return _keyed(table, problems)


def _raw_frame(body: list[list[Any]], positions: dict[str, int], spec: Tab) -> pd.DataFrame:
    """One column per mapped field (cells as read), blank rows dropped, sheet row numbers kept."""
    width = max(positions.values(), default=0)
    pads = [[None] * n for n in range(width + 1)]  # one list of Nones per shortfall, shared by the rows
    grid = [r if len(r) == width else r[:width] if len(r) > width else r + pads[width - len(r)] for r in body]
    frame = pd.DataFrame(grid, columns=range(1, width + 1), dtype=object) if width else pd.DataFrame(index=range(len(body)))
    out = pd.DataFrame({f: frame[c] if width else None for f, c in positions.items()}, index=frame.index, dtype=object)
    for f in spec.fields:
        if f not in out.columns:
            out[f] = pd.Series([None] * len(out), index=out.index, dtype=object)
    out[ROW] = frame.index + 2
    return out[~_blank_rows(out, spec.fields)] if spec.fields else out


def _blank_rows(out: pd.DataFrame, fields: list[str]) -> pd.Series:
    """Rows blank in every field. Field by field, only over the rows still blank so far: the first
    (the key) usually settles nearly every row, so the text conversion is not paid once per cell."""
    blank = pd.Series(True, index=out.index)
    for f in fields:
        if not blank.any():
            break
        blank[blank] = _blank(out.loc[blank, f]).to_numpy()
    return blank


def _blank(column: pd.Series) -> pd.Series:
    """Empty or only spaces (what to_text shows as nothing), for a whole column at once."""
    return column.astype("string").str.strip().fillna("").eq("")


def _keyed(table: Table, problems: list[Problem]) -> tuple[Table, list[Problem]]:
    """Index by key; rows with a blank or repeated key are problems and leave the table."""
    spec = table.spec
    if spec.key is None:
        return table, problems
    keys = table.data[spec.key].astype(object)
    blank = keys.isna()
    repeated = keys.duplicated(keep=False) & ~blank
    header = spec.column(spec.key).header
    col = table.col_of.get(spec.key, 1)
    for idx in keys[blank].index:
        if not table.bad.at[idx, spec.key]:
            row = int(table.raw.at[idx, ROW])
            problems.append(Problem(spec.title, a1(row, col), f"行{row}", header, "", "キーが空です。この行は処理されません。"))
    for idx in keys[repeated].index:
        row = int(table.raw.at[idx, ROW])
        key = str(keys[idx])
        problems.append(Problem(
            spec.title, a1(row, col), key, header, key,
            f"{header}『{key}』が複数の行にあります。どれか一つにしてください。この行は処理されません。",
        ))
    keep = ~(blank | repeated)
    index = pd.Index(keys[keep].astype(str), name=spec.key)
    for attr in ("data", "raw", "bad"):
        frame = getattr(table, attr)[keep]
        frame.index = index
        setattr(table, attr, frame)
    return table, problems


def _dangling_references(tables: dict[str, Table], mapping: Mapping) -> list[Problem]:
    """A reference to a missing row (a booking's unknown お客様番号) is a problem; the value is dropped."""
    problems = []
    for table in tables.values():
        for column in table.spec.columns:
            if column.refers is None or column.field not in table.present:
                continue
            target = tables[column.refers].data.index
            values = table.data[column.field]
            dangling = (values.notna() & ~values.isin(target)).to_numpy()  # a numpy mask: see HACKING.md
            for key in values.index[dangling]:
                problems.append(Problem(
                    table.spec.title, table.a1(key, column.field), key, column.header,
                    str(values[key]),
                    f"{mapping.tabs[column.refers].title}にない{column.header}です。",
                ))
            table.data.loc[dangling, column.field] = None
            table.bad.loc[dangling, column.field] = True
    return problems


def _problems(spec: Tab, rows: pd.DataFrame, field: str, positions: dict[str, int], messages: pd.Series) -> list[Problem]:
    """The flagged cells of one column, columns read as lists (a messy first run flags thousands)."""
    keys = rows[spec.key].tolist() if spec.key else [None] * len(rows)
    header = spec.column(field).header
    out = []
    for row, key, value, message in zip(rows[ROW].tolist(), keys, rows[field].tolist(), messages.tolist(), strict=True):
        key_value = to_text(key).strip() if spec.key else ""
        out.append(Problem(tab=spec.title, cell=a1(int(row), positions[field]), key=key_value or f"行{row}",
                           field=header, value=to_text(value), message=message))
    return out


def _empty(kind: str, index: pd.Index) -> pd.Series:
    if kind == "check":
        return pd.Series(False, index=index, dtype=bool)
    if kind == "datetime":
        return pd.Series(pd.NaT, index=index, dtype=DATETIME)
    return pd.Series(None, index=index, dtype=object)


def _typed(kind: str, values: pd.Series) -> pd.Series:
    """Columns the rules compute with get real dtypes; the rest stay Python objects."""
    if kind == "datetime":
        if isinstance(values.dtype, pd.DatetimeTZDtype):  # normalize_series' own result: no round trip through objects
            return values.dt.tz_convert("Asia/Tokyo").astype(DATETIME)
        out = pd.to_datetime(values.astype(object).where(values.notna(), None), utc=True)
        return out.dt.tz_convert("Asia/Tokyo").astype(DATETIME)
    if kind == "check":
        return values.astype(object).where(values.notna(), False).astype(bool)
    return values  # object with None where missing, as normalize_series gives it (a test holds it to that)
