"""L-Step操作 rows: work a person must do in the LINE tool, listed once each.

Every rule that needs something done in the LINE tool builds its row here, so every row carries
the customer's LINE user id and name the same way.
"""

from __future__ import annotations

import re
from itertools import repeat

import numpy as np
import pandas as pd

from tasks.frames import Frames, Table
from tasks.mapping import Mapping
from tasks.plan import Append, new_append
from tasks.rules.common import none_if_na, nones, or_none

DELETE, MESSAGE = "リマインド削除", "メッセージ送信"
ACTIONS = ("タグ追加", "タグ削除", DELETE, "リッチメニュー切替", MESSAGE)
WITHDRAWN = "不要になりました"  # 理由 of a row the pipeline closed, unasked for (tasks.rules.queue)
_ROW_FIELDS = ("created_at", "customer_id", "line_user_id", "customer_name", "salesperson", "action", "content",
               "reason", "due", "done")  # what `row` fills, after the key


def open_rows(table: Table) -> pd.Series:
    """L-Step操作 rows whose 対応済 is read as not ticked (an unreadable one is neither open nor done)."""
    return table.usable("done") & ~table.data["done"].astype(bool)


def withdrawn(ops: pd.DataFrame) -> pd.Series:
    """Rows of L-Step操作 the pipeline closed as 不要 (their event was undone), not done by anyone:
    the next such event lists its operation again (`nth_id`)."""
    return ops["done"].fillna(False).astype(bool) & ops["reason"].astype(str).str.startswith(WITHDRAWN)


def nth_id(base: str, n: int) -> str:
    """The id of the n-th operation for one thing listed once per event: the first keeps `base`."""
    return base if n <= 1 else f"{base}#{n}"


def cancel_titles(mapping: Mapping) -> set[str]:
    """The titles a cancel message's 操作ID ends with (one per template of `tags.cancel_messages`)."""
    return {mapping.templates[k].title for k in mapping.tags.cancel_messages.values()}


def message_targets(op_ids: pd.Index, titles: set[str]) -> pd.DataFrame:
    """`booking_id` and `title` of every `メッセージ送信:<予約ID>:<title>` id (the index); others left out."""
    alternatives = "|".join(re.escape(t) for t in sorted(titles, key=lambda t: (-len(t), t)))
    texts = op_ids.astype(str).tolist()
    prefix = f"{MESSAGE}:"
    # the pattern only over ids that start like a message (a third of a steady run's L-Step操作)
    starts = [i for i, text in enumerate(texts) if isinstance(text, str) and text.startswith(prefix)]  # a missing id is NaN
    mine = np.array(starts, dtype=np.intp)
    ids = pd.Series([texts[i] for i in mine], index=op_ids[mine], dtype=object)
    found = ids.str.extract(rf"^{re.escape(MESSAGE)}:(?P<booking_id>.+):(?P<title>{alternatives})(?:#\d+)?$")
    return found.dropna()


def current_owners(frames: Frames, mapping: Mapping) -> pd.Series:
    """Open L-Step操作 row -> the salesperson whose work it is now, so a reassignment moves the
    chase and the digest to the new one (a salesperson is told only about their own customers):
    a cancel message's or a リマインド削除's booking's salesperson, else the customer's, as a
    row is listed. A row whose booking left the sheet, or whose owner is blank, keeps its own."""
    return frames.derived("current_owners", None, mapping, lambda: _current_owners(frames, mapping))


def _current_owners(frames: Frames, mapping: Mapping) -> pd.Series:
    table = frames["operations"]
    ops = table.data.loc[open_rows(table).to_numpy(), ["action", "customer_id", "content"]]
    booking = pd.Series(None, index=ops.index, dtype=object)
    messages = message_targets(ops.index[ops["action"].eq(MESSAGE).to_numpy()], cancel_titles(mapping))
    booking[messages.index] = messages["booking_id"]
    deletions = ops["action"].eq(DELETE).to_numpy()
    rids = ops["content"][deletions].astype(str)
    of_step = frames["reminders"].data["booking_id"].reindex(rids)
    # a step's row gone from リマインド: its id still names the booking (<予約ID>:<系列>:<段階>)
    booking[deletions] = of_step.where(of_step.notna(), rids.str.rsplit(":", n=2).str[0].to_numpy()).to_numpy()
    tied = booking.index.isin(messages.index) | deletions
    bookings, customers = frames["bookings"], frames["customers"]
    of_booking = bookings.data["salesperson"].where(bookings.usable("salesperson"))
    of_customer = customers.data["salesperson"].where(customers.usable("salesperson"))
    on_sheet = booking.isin(bookings.data.index).to_numpy()
    theirs = pd.Series(of_customer.reindex(ops["customer_id"]).to_numpy(), index=ops.index, dtype=object)
    booked = pd.Series(of_booking.reindex(booking.where(on_sheet)).to_numpy(), index=ops.index, dtype=object)
    owner = theirs.where(~tied, booked.where(booked.notna(), theirs).where(on_sheet))
    return owner[owner.map(type).eq(str).to_numpy()]


def customer_name(frames: Frames, customer_id: str) -> str:
    c = frames["customers"].data
    if customer_id not in c.index:
        return ""
    return _full_name(c.at[customer_id, "family_name"], c.at[customer_id, "given_name"])


def customer_names(frames: Frames) -> dict[str, str]:
    """`customer_name` of every customer at once, for rules that name thousands of them."""
    return {cid: known[1] for cid, known in line_customers(frames).items()}


def line_customers(frames: Frames) -> dict[str, tuple[str | None, str, str | None]]:
    """Customer id -> (LINE user id, name, salesperson), worked out once a run (lists, not cells:
    iterating a str column goes cell by cell through pandas)."""
    return frames.derived("line_customers", None, None, lambda: _line_customers(frames))


def _full_name(family: object, given: object) -> str:
    return " ".join(p for p in (family, given) if isinstance(p, str) and p)


class NewOperations:
    """New L-Step操作 rows for one run, many at once: the customer's LINE user id, name and
    salesperson come from one dict look-up per row (a first run lists tens of thousands), and an
    id already listed (in the tab or by this builder) is left out, so a row is listed once."""

    def __init__(self, frames: Frames, now: pd.Timestamp):
        self.table = frames["operations"]
        self.now = now
        self.minute = f"{now:%Y%m%d%H%M}"  # formatted once: a Timestamp's strftime costs more than the rest of an id
        self.taken = set(self.table.data.index.tolist())  # a list first: iterating an Index is ~3x slower
        given = (self.table.spec.key, *_ROW_FIELDS)
        self.fields = tuple(f for f in self.table.spec.fields if f in given)  # the tab's order
        self.order = [given.index(f) for f in self.fields]
        self.customers = line_customers(frames)

    def name(self, cid: str) -> str:
        return self.customers.get(cid, (None, "", None))[1]

    def fresh_ids(self, action: str, cids: list[str], contents: list[str]) -> list[str]:
        """`<操作>:<お客様番号>:<内容>:<yyyymmddHHMM>` each; `-2`, `-3`… when that id is taken, or
        given to an earlier one of the list (C1 + `x:y` and `C1:x` + `y` read alike)."""
        minute = self.minute
        bases = [f"{action}:{cid}:{content}:{minute}" for cid, content in zip(cids, contents, strict=True)]
        if self.taken.isdisjoint(bases) and len(set(bases)) == len(bases):
            return bases  # the common case (a first run's 200k ids), settled by two set operations
        ids: list[str] = []
        given: set[str] = set()
        for base in bases:
            op_id, n = base, 1
            while op_id in self.taken or op_id in given:
                n += 1
                op_id = f"{base}-{n}"
            given.add(op_id)
            ids.append(op_id)
        return ids

    def row(self, op_id: str, cid: str, action: str, content: str, reason: str, *, due: pd.Timestamp | None = None,
            salesperson: str | None = None, group: str | None = None) -> Append | None:
        """The row, or None when that operation id is already listed; salesperson: else the customer's."""
        rows = self.rows(action, [op_id], [cid], [content], [reason], dues=[due], salespeople=[salesperson],
                         groups=[group])
        return rows[0] if rows else None

    def rows(self, action: str, op_ids: list[str], cids: list[str], contents: list[str], reasons: list[str], *,
             dues: list | None = None, salespeople: list | None = None, groups: list | None = None) -> list[Append]:
        """`row` for many operations of one action, in their order, leaving out the ids already
        listed. The rows are zipped from columns (a first run lists hundreds of thousands)."""
        if action not in ACTIONS:
            raise ValueError(f"unknown L-Step operation {action!r}")
        n = len(op_ids)
        if any(len(column) != n for column in (cids, contents, reasons, dues, salespeople, groups) if column is not None):
            raise ValueError("NewOperations.rows: the columns differ in length")
        taken = self.taken
        if not taken.isdisjoint(op_ids) or len(set(op_ids)) < n:
            kept = [i for i, op_id in enumerate(op_ids) if op_id not in taken and not taken.add(op_id)]
            op_ids, cids, contents, reasons, dues, salespeople, groups = (
                column and [column[i] for i in kept]
                for column in (op_ids, cids, contents, reasons, dues, salespeople, groups))
        else:  # none listed yet and none twice (the common case): the ids are taken in one call
            taken.update(op_ids)
        unknown = (None, "", None)
        known = list(map(self.customers.get, cids, repeat(unknown)))
        uids, names, owners = (list(column) for column in zip(*known, strict=True)) if known else ([], [], [])
        if salespeople:
            owners = [sp if type(sp) is str and sp else none_if_na(sp) or owner
                      for sp, owner in zip(salespeople, owners, strict=True)]
        columns = (  # the key, then _ROW_FIELDS
            op_ids, repeat(self.now), or_none(cids), uids, names, owners,
            repeat(action), or_none(contents), or_none(reasons), or_none(dues) if dues else repeat(None), repeat(False),
        )
        cells = zip(*[columns[i] for i in self.order], strict=False)  # some columns are repeat(): op_ids ends them
        return list(map(new_append, zip(repeat(self.table.name), op_ids, repeat(self.fields), cells,
                                        repeat(f"L-Step操作: {action}"), groups or repeat(None), strict=False)))


def _line_customers(frames: Frames) -> dict[str, tuple[str | None, str, str | None]]:
    c = frames["customers"].data
    names = map(_full_name, c["family_name"].tolist(), c["given_name"].tolist())
    known = zip(nones(c["line_user_id"]), names, nones(c["salesperson"]), strict=True)
    return dict(zip(c.index.tolist(), known, strict=True))
