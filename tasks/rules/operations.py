"""L-Step操作 rows: work a person must do in the LINE tool, listed once each.

Every rule that needs something done in the LINE tool builds its row here, so every row carries
the customer's LINE user id and name the same way.
"""

from __future__ import annotations

import pandas as pd

from tasks.frames import Frames
from tasks.plan import Append
from tasks.rules.common import none_if_na

ACTIONS = ("タグ追加", "タグ削除", "リマインド削除", "リッチメニュー切替", "メッセージ送信")
_ROW_FIELDS = ("created_at", "customer_id", "line_user_id", "customer_name", "salesperson", "action", "content",
               "reason", "due", "done")  # what `row` fills, after the key


def customer_name(frames: Frames, customer_id: str) -> str:
    c = frames["customers"].data
    if customer_id not in c.index:
        return ""
    return _full_name(c.at[customer_id, "family_name"], c.at[customer_id, "given_name"])


def customer_names(frames: Frames) -> dict[str, str]:
    """`customer_name` of every customer at once, for rules that name thousands of them."""
    c = frames["customers"].data
    return {cid: _full_name(fam, giv)
            for cid, fam, giv in zip(c.index.tolist(), c["family_name"].tolist(), c["given_name"].tolist(), strict=True)}


def _full_name(family: object, given: object) -> str:
    return " ".join(p for p in (family, given) if isinstance(p, str) and p)


class NewOperations:
    """New L-Step操作 rows for one run, many at once: the customer's LINE user id, name and
    salesperson come from one dict look-up per row (a first run lists tens of thousands; the dict
    is built from lists, as iterating a str column goes cell by cell through pandas), and an id
    already listed (in the tab or by this builder) gives None, so a row is listed once."""

    def __init__(self, frames: Frames, now: pd.Timestamp):
        self.table = frames["operations"]
        self.now = now
        self.minute = f"{now:%Y%m%d%H%M}"  # formatted once: a Timestamp's strftime costs more than the rest of an id
        self.taken = set(self.table.data.index)
        given = (self.table.spec.key, *_ROW_FIELDS)
        self.fields = tuple(f for f in self.table.spec.fields if f in given)  # the tab's order
        self.order = [given.index(f) for f in self.fields]
        c = frames["customers"].data
        self.customers = {
            cid: (none_if_na(uid), _full_name(fam, giv), none_if_na(sp))
            for cid, uid, fam, giv, sp in zip(c.index.tolist(), c["line_user_id"].tolist(), c["family_name"].tolist(),
                                              c["given_name"].tolist(), c["salesperson"].tolist(), strict=True)
        }

    def name(self, cid: str) -> str:
        return self.customers.get(cid, (None, "", None))[1]

    def fresh_id(self, action: str, cid: str, content: str) -> str:
        """`<操作>:<お客様番号>:<内容>:<yyyymmddHHMM>`; `-2`, `-3`… when that minute is taken."""
        base = f"{action}:{cid}:{content}:{self.minute}"
        op_id, n = base, 1
        while op_id in self.taken:
            n += 1
            op_id = f"{base}-{n}"
        return op_id

    def row(self, op_id: str, cid: str, action: str, content: str, reason: str, *, due: pd.Timestamp | None = None,
            salesperson: str | None = None, group: str | None = None) -> Append | None:
        """The row, or None when that operation id is already listed; salesperson: else the customer's.

        Built as `new_row` would build it, in an order worked out once, blanks made None only where
        a caller can pass one: a first run lists hundreds of thousands of operations.
        """
        if action not in ACTIONS:
            raise ValueError(f"unknown L-Step operation {action!r}")
        if op_id in self.taken:
            return None
        self.taken.add(op_id)
        uid, name, owner = self.customers.get(cid, (None, "", None))
        values = (op_id, self.now, none_if_na(cid), uid, name, none_if_na(salesperson or owner), action,
                  none_if_na(content), none_if_na(reason), none_if_na(due), False)  # the key, then _ROW_FIELDS
        cells = tuple(zip(self.fields, [values[i] for i in self.order], strict=True))
        return Append(self.table.name, op_id, cells, f"L-Step操作: {action}", group)
