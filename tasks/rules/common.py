"""Helpers every rule uses to turn desired values into keyed edits and rows."""

from __future__ import annotations

from typing import Any

import pandas as pd

from tasks.frames import Table
from tasks.normalize import normalize_value
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
    raw = table.raw[field]
    return [Edit(table.name, str(k), field, none_if_na(raw.at[k]), none_if_na(desired.at[k]), reason, group) for k in changed]


def as_read(values: pd.Series, kind: str) -> pd.Series:
    """Text as check will read it back (NFKC), so a value written once compares equal next run."""
    if kind not in TEXT_KINDS:
        return values
    return values.map(lambda v: normalize_value(kind, v)[0] if isinstance(v, str) else v)


def new_row(table: Table, key: str, values: dict[str, Any], reason: str, group: str | None = None) -> Append:
    """A row for a pipeline tab, its key field set, fields in the tab's order."""
    values = {table.spec.key: key, **values} if table.spec.key else values
    ordered = tuple((f, none_if_na(values[f])) for f in table.spec.fields if f in values)
    return Append(table.name, key, ordered, reason, group)


def none_if_na(value: Any) -> Any:
    if value is None:
        return None
    try:
        return None if pd.isna(value) else value
    except (TypeError, ValueError):
        return value
