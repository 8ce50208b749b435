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
    old = table.raw[field].reindex(changed).to_numpy(dtype=object)
    new = desired[~(equal | both_blank)].to_numpy(dtype=object)
    return [Edit(table.name, str(k), field, none_if_na(o), none_if_na(n), reason, group)
            for k, o, n in zip(changed, old, new, strict=True)]


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
    ordered = tuple((f, none_if_na(values[f])) for f in table.spec.fields if f in values)
    return Append(table.name, key, ordered, reason, group)


def none_if_na(value: Any) -> Any:
    return None if is_missing(value) else value


def shown_time(value: Any) -> str:
    """A moment as a message shows it: Tokyo wall clock to the minute ("" when blank)."""
    return "" if is_missing(value) else f"{pd.Timestamp(value).tz_convert(TZ):%Y/%m/%d %H:%M}"
