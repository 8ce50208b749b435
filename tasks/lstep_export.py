"""The open tag operations as a CSV for the LINE tool's bulk tag change (CSVインポート).

One row per customer (key: the LINE user id), one column per tag that has an open タグ追加 or
タグ削除, 1 = the customer should have the tag, 0 = should not. A tag of that row without an open
operation is filled from the customer's タグ cell, which is what the tool should already show, so
the file is safe whether the tool reads 0 as "remove" or as "leave". Two open rows for one
customer and tag (the queue closes such pairs on the next run): the newer one wins.

The tool's import layout is not public: the column names are the mapping's (`tags.export`).
Encodings: `utf-8-sig` (UTF-8 with a BOM, which Excel needs) and `cp932` (what the tool's own
exports use). In CP932 a name the code page cannot hold gets `?` for that character, as the
tool's exports do; a header or tag that it cannot hold is an error (it would not match).
Staff open the file in Excel, so a cell that Excel would run as a formula (it starts with = + - @,
a tab or a CR: a customer named 「=HYPERLINK(…)」) gets a leading `'`, as OWASP advises for CSV.

`build_export` is pure (frames in, rows out); `export_bytes` encodes; `write_export` is the only IO.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tasks.files import replace_atomically
from tasks.frames import Frames
from tasks.mapping import Mapping
from tasks.normalize import normalize_series, normalize_value
from tasks.rules.operations import customer_name
from tasks.rules.tags import ADD, REMOVE, tag_key, tag_set

ENCODINGS = ("utf-8-sig", "cp932")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # OWASP CSV injection


class ExportError(ValueError):
    """The export cannot be written as asked (an encoding that cannot hold a header)."""


@dataclass(frozen=True)
class Export:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    operations: tuple[str, ...]  # the 操作ID of every row the file carries
    skipped: tuple[tuple[str, str], ...]  # (操作ID, why) of open tag rows left out
    name_column: int | None = None  # position of the customer-name column, if any

    def __len__(self) -> int:
        return len(self.rows)


def build_export(frames: Frames, mapping: Mapping) -> Export:
    table = frames["operations"]
    data = table.data
    usable = table.usable("done")
    ops = data[~data["done"].astype(bool) & data["action"].isin((ADD, REMOVE)) & data["content"].notna()]
    skipped = [(str(i), "対応済を読めません") for i in ops.index[~usable.reindex(ops.index, fill_value=True)]]
    ops = ops[usable.reindex(ops.index, fill_value=True)]
    customers = frames["customers"].data
    uid = line_user_ids(customers, ops)
    skipped += [(str(i), "LINEユーザーIDがありません") for i in ops.index[uid.isna()]]
    ops = ops[uid.notna()].assign(uid=uid[uid.notna()], op_id=lambda f: f.index.astype(str))
    ops = ops.sort_values(["created_at", "op_id"], na_position="first")
    spec = mapping.tags.export
    managed = [r.tag for r in mapping.tags.managed]
    present = set(ops["content"].astype(str))
    tags = [t for t in managed if t in present] + sorted(present - set(managed))
    header = [spec.key_column] + ([spec.name_column] if spec.name_column else [])
    header += [spec.tag_columns.get(t, t) for t in tags]
    seps = tuple(mapping.tags.separators)
    rows = []
    for key, group in ops.groupby("uid", sort=True):
        latest = group.groupby("content").tail(1).set_index("content")["action"]
        cid = str(group["customer_id"].dropna().iloc[-1]) if group["customer_id"].notna().any() else None
        has = _cell_tags(customers, cid, seps)
        cells = []
        for tag in tags:
            if tag in latest.index:
                cells.append("1" if latest[tag] == ADD else "0")
            else:
                cells.append("" if has is None else ("1" if tag_key(tag) in has else "0"))
        name = [_name(frames, cid, group)] if spec.name_column else []
        rows.append((str(key), *name, *cells))
    return Export(
        header=tuple(header), rows=tuple(rows), operations=tuple(sorted(ops["op_id"])), skipped=tuple(sorted(skipped)),
        name_column=1 if spec.name_column else None,
    )


def export_bytes(export: Export, encoding: str) -> bytes:
    """The CSV file's bytes: CRLF line ends, every cell quoted only where needed."""
    if encoding not in ENCODINGS:
        raise ExportError(f"encoding {encoding!r}: use one of {', '.join(ENCODINGS)}")
    rows = export.rows
    if encoding == "cp932":
        for header in export.header:
            try:
                header.encode("cp932")
            except UnicodeEncodeError:
                raise ExportError(
                    f"見出し『{header}』は CP932 で書けません。utf-8-sig を使うか、tags.export で名前を変えてください。"
                ) from None
        if export.name_column is not None:
            at = export.name_column
            rows = tuple((*r[:at], _cp932_safe(r[at]), *r[at + 1:]) for r in rows)
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(map(_inert, export.header))
    writer.writerows(map(_inert, r) for r in rows)
    return buffer.getvalue().encode(encoding)


def write_export(path: Path | str, export: Export, encoding: str) -> Path:
    """Write the file atomically (a reader never sees half a file)."""
    path = Path(path)
    data = export_bytes(export, encoding)
    replace_atomically(path, lambda tmp: Path(tmp).write_bytes(data))
    return path


def line_user_ids(customers: pd.DataFrame, ops: pd.DataFrame) -> pd.Series:
    """`line_user_id_of` for every operation row at once (normalized frames: text is str or None)."""
    current = customers["line_user_id"]
    current = current[current.notna().to_numpy() & ~current.index.duplicated(keep=False)]
    known = pd.Series(current.reindex(ops["customer_id"].where(ops["customer_id"].notna())).to_numpy(), index=ops.index)
    recorded, problems = normalize_series("line_user_id", ops["line_user_id"])
    recorded = recorded.where(recorded.notna() & problems.isna(), None)
    return known.where(known.notna(), recorded).astype(object).where(lambda v: v.notna(), None)


def line_user_id_of(customers: pd.DataFrame, row: pd.Series) -> str | None:
    """The customer's LINE user id as 顧客 has it now, else as the operation row recorded it."""
    cid = row["customer_id"]
    if isinstance(cid, str) and cid in customers.index and isinstance(customers.at[cid, "line_user_id"], str):
        return customers.at[cid, "line_user_id"]
    value, problem = normalize_value("line_user_id", row["line_user_id"])
    return value if isinstance(value, str) and problem is None else None


def _cell_tags(customers: pd.DataFrame, cid: str | None, seps: tuple[str, ...]) -> frozenset[str] | None:
    if cid is None or cid not in customers.index:
        return None
    text = customers.at[cid, "tags"]
    return tag_set(text, seps) if isinstance(text, str) else frozenset()


def _name(frames: Frames, cid: str | None, ops: pd.DataFrame) -> str:
    name = customer_name(frames, cid) if cid else ""
    recorded = ops["customer_name"].dropna()
    return name or (str(recorded.iloc[-1]) if not recorded.empty else "")


def _inert(cell: str) -> str:
    return "'" + cell if cell.startswith(FORMULA_START) else cell


def _cp932_safe(text: str) -> str:
    return text.encode("cp932", errors="replace").decode("cp932")
