"""L-Step操作 rows: work a person must do in the LINE tool, listed once each.

Every rule that needs something done in the LINE tool builds its row here, so every row carries
the customer's LINE user id and name the same way.
"""

from __future__ import annotations

import pandas as pd

from tasks.frames import Frames
from tasks.plan import Append
from tasks.rules.common import new_row

ACTIONS = ("タグ追加", "タグ削除", "リマインド削除", "リッチメニュー切替", "メッセージ送信")


def customer_name(frames: Frames, customer_id: str) -> str:
    c = frames["customers"].data
    if customer_id not in c.index:
        return ""
    parts = [c.at[customer_id, "family_name"], c.at[customer_id, "given_name"]]
    return " ".join(p for p in parts if isinstance(p, str) and p)


def operation(
    frames: Frames,
    op_id: str,
    customer_id: str,
    action: str,
    content: str,
    reason: str,
    now: pd.Timestamp,
    *,
    due: pd.Timestamp | None = None,
    salesperson: str | None = None,
) -> Append | None:
    """A new operation row, or None when that operation id is already listed."""
    if action not in ACTIONS:
        raise ValueError(f"unknown L-Step operation {action!r}")
    table = frames["operations"]
    if op_id in table.data.index:
        return None
    customers = frames["customers"].data
    known = customer_id in customers.index
    values = {
        "created_at": now,
        "customer_id": customer_id,
        "line_user_id": customers.at[customer_id, "line_user_id"] if known else None,
        "customer_name": customer_name(frames, customer_id),
        "salesperson": salesperson or (customers.at[customer_id, "salesperson"] if known else None),
        "action": action,
        "content": content,
        "reason": reason,
        "due": due,
        "done": False,
    }
    return new_row(table, op_id, values, f"L-Step操作: {action}")
