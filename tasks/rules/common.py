"""Helpers every rule uses to turn desired values into keyed edits and rows."""

from __future__ import annotations

from typing import Any

import pandas as pd

from tasks.frames import Table
from tasks.normalize import TZ, is_missing, normalize_series
from tasks.plan import Append, Edit

TEXT_KINDS = ("text", "name", "tags")


def set_field(table: Table, field: str, desired: pd.Series, reason: str, group: str | None = None) -> list[Edit]:
    """Edits for the rows (by key, the index of `desired`) whose current value differs.

    One vectorized comparison over the whole column; only the changed cells become edits, each
    carrying the raw value read so the writer can compare-and-set.
    """
    desired = desired[desired.index.isin(table.data.index)]
    if desired.empty:
        return []
    current = table.data[field].reindex(desired.index)
    expected = as_read(desired, table.spec.column(field).type)
    if current.dtype != expected.dtype:
        current, expected = current.astype(object), expected.astype(object)
    both_blank = current.isna().to_numpy() & expected.isna().to_numpy()
    equal = current.eq(expected).fillna(False).to_numpy(dtype=bool)
    changed = desired.index[~(equal | both_blank)]
    old = _nones(table.raw[field].reindex(changed))
    new = _nones(desired[~(equal | both_blank)])
    return [Edit(table.name, str(k), field, o, n, reason, group) for k, o, n in zip(changed.tolist(), old, new, strict=True)]


def _nones(values: pd.Series) -> list[Any]:
    """The values as Python objects, every missing one (NaN, NaT, pd.NA) as None: `none_if_na`
    over a whole column in one pd.isna call, since a first run edits hundreds of thousands of cells."""
    out = values.to_numpy(dtype=object, copy=True)
    out[pd.isna(out)] = None
    return out.tolist()


def as_read(values: pd.Series, kind: str) -> pd.Series:
    """Text as check will read it back (NFKC), so a value written once compares equal next run.

    Only the text cells are read back (once per distinct text); any other value stays as it is.
    """
    if kind not in TEXT_KINDS:
        return values
    strings = values.map(type).eq(str).to_numpy()
    if not strings.any():
        return values
    out = values.to_numpy(dtype=object, copy=True)
    out[strings] = normalize_series(kind, values[strings])[0].to_numpy(dtype=object)
    return pd.Series(out, index=values.index, name=values.name, dtype=object)


def new_row(table: Table, key: str, values: dict[str, Any], reason: str, group: str | None = None) -> Append:
    """A row for a pipeline tab, its key field set, fields in the tab's order."""
    values = {table.spec.key: key, **values} if table.spec.key else values
    cells = tuple([(f, None if is_missing(values[f]) else values[f]) for f in table.spec.fields if f in values])
    return Append(table.name, key, cells, reason, group)


def new_rows(table: Table, rows: pd.DataFrame, reasons: list[str], group: str | None = None) -> list[Append]:
    """`new_row` for every row of a frame whose index holds the keys: the same rows, with the
    missing cells found a column at a time (a first run lists a hundred thousand reminders)."""
    keys = [str(k) for k in rows.index.tolist()]
    fields, columns = [], []
    for column in table.spec.columns:
        if column.field in rows.columns:
            fields.append(column.field)
            columns.append(_nones(rows[column.field]))
        elif column.field == table.spec.key:
            fields.append(column.field)
            columns.append(keys)
    return [Append(table.name, key, tuple(zip(fields, values, strict=True)), reason, group)
            for key, values, reason in zip(keys, zip(*columns, strict=True), reasons, strict=True)]


def none_if_na(value: Any) -> Any:
    return None if is_missing(value) else value


def shown_time(value: Any) -> str:
    """A moment as a message shows it: Tokyo wall clock to the minute ("" when blank)."""
    return "" if is_missing(value) else f"{pd.Timestamp(value).tz_convert(TZ):%Y/%m/%d %H:%M}"
