"""Helpers every rule uses to turn desired values into keyed edits and rows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from itertools import repeat
from typing import Any

import numpy as np
import pandas as pd

from tasks.frames import Table
from tasks.normalize import TZ, is_missing, normalize_series
from tasks.plan import Append, Edit, edits_of, new_append

TEXT_KINDS = ("text", "name", "tags")
_FIXED_JST = dt.timezone(dt.timedelta(hours=9))


def set_field(table: Table, field: str, desired: pd.Series, reason: str, group: str | None = None, *,
              group_prefix: str | None = None) -> list[Edit]:
    """Edits for the rows (by key, the index of `desired`) whose current value differs.

    One vectorized comparison over the whole column; only the changed cells become edits, each
    carrying the raw value read so the writer can compare-and-set. `group_prefix`: each edit's
    group is the prefix and its row's key (one group per row).
    """
    data = table.data
    at = data.index.get_indexer(desired.index)  # positions by the index's own hash table, built once a table
    if (at < 0).any():
        desired, at = desired[at >= 0], at[at >= 0]
    if desired.empty:
        return []
    current = data[field].iloc[at].set_axis(desired.index)
    expected = as_read(desired, table.spec.column(field).type)
    if current.dtype != expected.dtype:
        current, expected = current.astype(object), expected.astype(object)
    both_blank = current.isna().to_numpy() & expected.isna().to_numpy()
    equal = current.eq(expected).fillna(False).to_numpy(dtype=bool)
    differs = ~(equal | both_blank)
    changed = desired.index[differs]
    raw = table.raw[field]
    old = nones(raw.iloc[at[differs]] if table.raw.index.equals(data.index) else raw.reindex(changed))
    new = nones(desired[differs])
    keys = data.index[at[differs]].tolist()  # the table's own keys: str already (check made them)
    groups = [group_prefix + k for k in keys] if group_prefix is not None else repeat(group)
    return edits_of(table.name, field, keys, old, new, reason, groups)


def overlaid(values: pd.Series, newer: pd.Series) -> pd.Series:
    """`values` with what `newer` holds for the same keys put over them (a cell as this run will
    write it, read by a step that runs before, or instead of, that write)."""
    out = values.astype(object)  # a copy: the frame's own column stays as read
    out.update(newer)
    return out


def nones(values: pd.Series) -> list[Any]:
    """The values as Python objects, every missing one (NaN, NaT, pd.NA) as None: `none_if_na`
    over a whole column at once, since a first run edits hundreds of thousands of cells.

    Moments become aware `datetime`s, not Timestamps: built twice as fast, and not tracked by the
    garbage collector, which a first run's million planned times would otherwise keep busy. Their
    zone is a fixed +09:00 (the same instants; Japan has kept one offset since 1951): pandas builds
    those without a zone lookup per value, ~2x faster than with Asia/Tokyo's ZoneInfo. Each distinct
    moment is built once (a first run plans 600,000 times on a few thousand half hours; -1, missing,
    takes the None appended last).
    """
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        codes, moments = pd.factorize(values)
        return np.append(moments.tz_convert(_FIXED_JST).to_pydatetime(), None)[codes].tolist()
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
    fields = tuple(f for f in table.spec.fields if f in values)
    cells = tuple(or_none(map(values.__getitem__, fields)))
    return new_append((table.name, key, fields, cells, reason, group))


def new_rows(table: Table, rows: pd.DataFrame, reasons: list[str], group: str | None = None) -> list[Append]:
    """`new_row` for every row of a frame whose index holds the keys: the same rows, with the
    missing cells found a column at a time (a first run lists a hundred thousand reminders)."""
    keys = [str(k) for k in rows.index.tolist()]
    fields, columns = [], []
    for column in table.spec.columns:
        if column.field in rows.columns:
            fields.append(column.field)
            columns.append(nones(rows[column.field]))
        elif column.field == table.spec.key:
            fields.append(column.field)
            columns.append(keys)
    if len(reasons) != len(keys) or (keys and not columns):
        raise ValueError(f"new_rows: {len(keys)} rows, {len(reasons)} reasons, fields {fields}")
    return list(map(new_append, zip(repeat(table.name), keys, repeat(tuple(fields)), zip(*columns, strict=True),
                                    reasons, repeat(group), strict=False)))  # repeat(): the lists end it


def none_if_na(value: Any) -> Any:
    return None if is_missing(value) else value


def or_none(values: Iterable[Any]) -> list[Any]:
    """`none_if_na` of each, text (the common case, never missing) let through without the call."""
    return [v if type(v) is str else none_if_na(v) for v in values]


def shown_time(value: Any) -> str:
    """A moment as a message shows it: Tokyo wall clock to the minute ("" when blank)."""
    return "" if is_missing(value) else f"{pd.Timestamp(value).tz_convert(TZ):%Y/%m/%d %H:%M}"


def shown_times(moments: pd.Series) -> list[str]:
    """`shown_time` of a whole datetime column in one call, not a Timestamp per row."""
    return moments.dt.tz_convert(TZ).dt.strftime("%Y/%m/%d %H:%M").fillna("").tolist()
