"""The L-Step操作 queue stays honest: staff never see two contradicting open rows.

- An open row that the current state makes pointless is closed: a タグ追加 whose tag the rules now
  want absent, a タグ削除 whose tag they want present again, a リッチメニュー切替 to the menu the
  customer should no longer have, a メッセージ送信 for a booking that is no longer cancelled (or
  whose キャンセル区分 now asks for the other message), a リマインド削除 whose step is pending again
  (a cancel undone before anyone deleted it: chased, staff would delete an active booking's
  reminders). So is a second open row for the same tag or menu switch of a customer (the older
  one stays).
- Closing: 対応済 ticked, 対応日時 = now, 理由 `不要になりました（<why>）`. The row leaves every
  list of open work (the chases, the digest, the export) like a done one, and 理由 tells it
  apart from work staff did. A closed tag or menu row has the opposite row listed beside it by
  `tasks.rules.tags`, so the LINE tool ends as the cell says whether or not a person did the
  closed one without ticking it. The original 理由 stays in 変更履歴.
- 対応日時 = now on the first run that sees 対応済 ticked with 対応日時 blank; unticking clears it.
  Rows ticked by the adoption run (理由 導入時) keep 対応日時 blank: nobody did them at a time.

An unreadable 対応済 (a problem in エラー) is left alone until it is fixed. A decision that needs
a booking the sheet cannot read waits, as in `tasks.rules.tags`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks.frames import Frames, Table
from tasks.mapping import Mapping
from tasks.plan import Edit, Plan
from tasks.rules.bookings import booking_facts
from tasks.rules.common import none_if_na, set_field
from tasks.rules.operations import MESSAGE, WITHDRAWN, cancel_titles, current_owners, message_targets, open_rows
from tasks.rules.reminders import BACK_GROUP, reminder_state, withdrawn_deletions
from tasks.rules.tags import ADD, MENU, MENU_COLUMN, REMOVE, cancel_templates, wanted

BASELINE_REASON = "導入時"  # 理由 of the operations a baseline run lists (tasks.reconcile.as_baseline)
CLOSED = WITHDRAWN + "（{why}）"
DONE_REASON = "対応済の確認"
FOLLOW_REASON = "L-Step操作: 担当の変更に合わせる"


def operations_queue(frames: Frames, now: pd.Timestamp, mapping: Mapping) -> Plan:
    table = frames["operations"]
    if table.data.empty:
        return Plan()
    return _done_times(table, now) | _close_pointless(frames, now, mapping) | _follow_owner(frames, mapping)


def _follow_owner(frames: Frames, mapping: Mapping) -> Plan:
    """An open row's 営業担当 follows a reassignment of its booking or customer."""
    return Plan(edits=tuple(set_field(frames["operations"], "salesperson", current_owners(frames, mapping),
                                      FOLLOW_REASON)))


def _done_times(table: Table, now: pd.Timestamp) -> Plan:
    ops = table.data[table.usable("done").to_numpy()]
    done = ops["done"].to_numpy(dtype=bool)
    blank = ops["done_at"].isna().to_numpy()
    stamp = done & blank & ops["reason"].ne(BASELINE_REASON).to_numpy()
    desired = pd.concat([
        pd.Series(now, index=ops.index[stamp], dtype=object),
        pd.Series(None, index=ops.index[~done & ~blank], dtype=object),
    ])
    return Plan(edits=tuple(set_field(table, "done_at", desired, DONE_REASON)))


def _close_pointless(frames: Frames, now: pd.Timestamp, mapping: Mapping) -> Plan:
    table = frames["operations"]
    ops = table.data[open_rows(table).to_numpy()]
    ops = ops[ops["customer_id"].notna()]
    if ops.empty:
        return Plan()
    why = pd.concat([_tags_and_menu(frames, now, mapping, ops), _messages(frames, mapping, ops),
                     _deletions(frames, now, mapping)]).sort_index()
    edits: list[Edit] = []
    for op_id, reason, group in zip(why.index, why["why"], why["group"], strict=True):
        for field, new in (("done", True), ("done_at", now), ("reason", CLOSED.format(why=reason))):
            edits.append(Edit("operations", op_id, field, none_if_na(table.raw.at[op_id, field]), new,
                              "L-Step操作: 不要", group or f"lstep-op:{op_id}"))
    return Plan(edits=tuple(edits))


def _nothing() -> pd.DataFrame:
    return pd.DataFrame({"why": [], "group": []}, index=pd.Index([], dtype=object), dtype=object)


def _tags_and_menu(frames: Frames, now: pd.Timestamp, mapping: Mapping, ops: pd.DataFrame) -> pd.DataFrame:
    """Open tag and menu rows to close (why, group): the wish turned, or an older row asks the same."""
    menus = (mapping.tags.rich_menu.before, mapping.tags.rich_menu.after)
    tags = [r.tag for r in mapping.tags.managed]
    is_tag = ops["action"].isin((ADD, REMOVE)) & ops["content"].isin(tags)
    ours = ops[is_tag | (ops["action"].eq(MENU) & ops["content"].isin(menus))]
    if ours.empty:
        return _nothing()
    is_tag = is_tag[ours.index].to_numpy()
    cid, content = ours["customer_id"].astype(str), ours["content"].astype(str)
    want = wanted(frames, now, mapping)
    rows = want.index.get_indexer(cid)
    cols = want.columns.get_indexer(content.where(is_tag, MENU_COLUMN))
    grid = want.to_numpy(dtype=object)
    wish = pd.Series(grid[rows.clip(0), cols], index=ours.index, dtype=object).where(rows >= 0, None)
    known = wish.notna().to_numpy()
    adding = ours["action"].eq(ADD).to_numpy()
    turned = known & np.where(is_tag, wish.where(known, False).astype(bool).to_numpy() != adding, wish.ne(content).to_numpy())
    why = pd.Series(None, index=ours.index, dtype=object)
    why[turned & is_tag & adding] = "タグは今は不要です"
    why[turned & is_tag & ~adding] = "タグがまた必要になりました"
    menu = turned & ~is_tag
    why[menu] = "リッチメニューは今は" + wish[menu].astype(str) + "です"
    # the four columns it reads, not all twelve: a steady run sorts ~200k open rows here
    rest = ours.loc[~turned, ["created_at", "customer_id", "action", "content"]]
    rest = rest.assign(op_id=rest.index).sort_values(["created_at", "op_id"], na_position="last")
    twice = rest.index[rest.duplicated(["customer_id", "action", "content"])]
    why[twice] = "同じ操作の行がほかにあります"
    close = why.notna().to_numpy()
    group = pd.Series(np.where(is_tag[close], "lstep-tags:", "lstep-menu:"), index=ours.index[close]) + cid[close]
    return pd.DataFrame({"why": why[close], "group": group})


def _deletions(frames: Frames, now: pd.Timestamp, mapping: Mapping) -> pd.DataFrame:
    """Open リマインド削除 rows whose step is pending again (a cancel undone: tasks.rules.reminders)."""
    state = reminder_state(frames, now, mapping)
    if state.back.empty:
        return _nothing()
    rids = withdrawn_deletions(frames, state)
    bids = state.rows.loc[rids.to_numpy(), "booking_id"].astype(str).to_numpy()
    return pd.DataFrame({"why": "予約 " + bids + " はキャンセルではなくなりました", "group": BACK_GROUP + rids.to_numpy()},
                        index=rids.index)


def _messages(frames: Frames, mapping: Mapping, ops: pd.DataFrame) -> pd.DataFrame:
    """Open cancel messages to close: the booking is no longer cancelled, or its キャンセル区分 asks
    for the other message."""
    titles = cancel_titles(mapping)
    targets = message_targets(ops.index[ops["action"].eq(MESSAGE)], titles)
    facts = booking_facts(frames, mapping)
    targets = targets[targets["booking_id"].isin(facts.index).to_numpy()]
    if targets.empty:
        return _nothing()
    bid = targets["booking_id"]
    f = facts.reindex(bid)

    def flag(frame: pd.DataFrame, column: str) -> np.ndarray:
        return frame[column].fillna(False).astype(bool).to_numpy()

    status_ok = frames["bookings"].usable("status").reindex(bid, fill_value=False).astype(bool).to_numpy()
    live = (flag(f, "active") | flag(f, "held")) & ~flag(f, "deleted") & status_ok
    cancels = cancel_templates(frames, mapping).reindex(bid)
    other = ~live & cancels["title"].notna().to_numpy() & ~cancels["deleted"].fillna(True).astype(bool).to_numpy()
    other &= cancels["title"].to_numpy() != targets["title"].to_numpy()
    booking = "予約 " + bid.astype(str)
    kind = pd.Series(cancels["kind"].fillna("空欄").astype(str).to_numpy(), index=targets.index)
    why = (booking + " はキャンセルではなくなりました").where(live, booking + " のキャンセル区分が" + kind + "になりました")
    close = live | other
    return pd.DataFrame({"why": why[close], "group": None})
