"""The L-Step操作 queue stays honest: staff never see two contradicting open rows.

- An open row that the current state makes pointless is closed: a タグ追加 whose tag the rules now
  want absent, a タグ削除 whose tag they want present again, a リッチメニュー切替 to the menu the
  customer should no longer have, a メッセージ送信 for a booking that is no longer cancelled (or
  whose キャンセル区分 now asks for the other message). So is a second open row for the same tag
  or menu switch of a customer (the older one stays).
- Closing: 対応済 ticked, 対応日時 = now, 理由 `不要になりました（<why>）`. The row leaves every
  list of open work (the chases, the digest, the export) like a done one, and 理由 tells it
  apart from work staff did. Staff did nothing in the LINE tool, and need not: the tool never
  got the change (a removal that was not done leaves the tag where it is). The original 理由
  stays in 変更履歴.
- 対応日時 = now on the first run that sees 対応済 ticked with 対応日時 blank; unticking clears it.
  Rows ticked by the adoption run (理由 導入時) keep 対応日時 blank: nobody did them at a time.

An unreadable 対応済 (a problem in エラー) is left alone until it is fixed. A decision that needs
a booking the sheet cannot read waits, as in `tasks.rules.tags`.
"""

from __future__ import annotations

import pandas as pd

from tasks.frames import Frames, Table
from tasks.mapping import Mapping
from tasks.plan import Edit, Plan
from tasks.rules.bookings import booking_facts
from tasks.rules.common import none_if_na, set_field
from tasks.rules.tags import ADD, MENU, MENU_COLUMN, MESSAGE, REMOVE, cancel_templates, message_target, wanted

BASELINE_REASON = "導入時"  # tasks.reconcile.BASELINE_REASON (not imported: reconcile imports the rules)
CLOSED = "不要になりました（{why}）"
DONE_REASON = "対応済の確認"


def operations_queue(frames: Frames, now: pd.Timestamp, mapping: Mapping) -> Plan:
    table = frames["operations"]
    if table.data.empty:
        return Plan()
    return _done_times(table, now) | _close_pointless(frames, now, mapping)


def _done_times(table: Table, now: pd.Timestamp) -> Plan:
    ops = table.data[table.usable("done")]
    done = ops["done"].astype(bool)
    blank = ops["done_at"].isna()
    stamp = done & blank & ops["reason"].ne(BASELINE_REASON)
    desired = pd.concat([
        pd.Series(now, index=ops.index[stamp], dtype=object),
        pd.Series(None, index=ops.index[~done & ~blank], dtype=object),
    ])
    return Plan(edits=tuple(set_field(table, "done_at", desired, DONE_REASON)))


def _close_pointless(frames: Frames, now: pd.Timestamp, mapping: Mapping) -> Plan:
    table = frames["operations"]
    ops = table.data[table.usable("done") & ~table.data["done"].astype(bool)]
    ops = ops[ops["customer_id"].notna()]
    if ops.empty:
        return Plan()
    why: dict[str, tuple[str, str | None]] = {}  # op id -> (why, group)
    _tags_and_menu(frames, now, mapping, ops, why)
    _messages(frames, mapping, ops, why)
    edits: list[Edit] = []
    for op_id, (reason, group) in sorted(why.items()):
        for field, new in (("done", True), ("done_at", now), ("reason", CLOSED.format(why=reason))):
            edits.append(Edit("operations", op_id, field, none_if_na(table.raw.at[op_id, field]), new,
                              "L-Step操作: 不要", group or f"lstep-op:{op_id}"))
    return Plan(edits=tuple(edits))


def _tags_and_menu(frames: Frames, now: pd.Timestamp, mapping: Mapping, ops: pd.DataFrame, why: dict) -> None:
    want = wanted(frames, now, mapping)
    menus = (mapping.tags.rich_menu.before, mapping.tags.rich_menu.after)
    tags = [r.tag for r in mapping.tags.managed]
    kind = ops["action"].map({ADD: "tag", REMOVE: "tag", MENU: "menu"})
    ours = ops[(kind.eq("tag") & ops["content"].isin(tags)) | (kind.eq("menu") & ops["content"].isin(menus))]
    if ours.empty:
        return
    ours = ours.assign(kind=kind[ours.index], op_id=ours.index).sort_values(["created_at", "op_id"], na_position="last")
    seen: set[tuple[str, str, str]] = set()
    for op_id, row in ours.iterrows():
        cid, content, action = str(row["customer_id"]), str(row["content"]), row["action"]
        group = f"lstep-tags:{cid}" if row["kind"] == "tag" else f"lstep-menu:{cid}"
        slot = (cid, action, content)
        if cid in want.index:
            if row["kind"] == "tag":
                wish = want.at[cid, content]
                if not pd.isna(wish) and bool(wish) != (action == ADD):
                    why[op_id] = ("タグは今は不要です" if action == ADD else "タグがまた必要になりました", group)
                    continue
            else:
                wish = want.at[cid, MENU_COLUMN]
                if wish is not None and wish != content:
                    why[op_id] = (f"リッチメニューは今は{wish}です", group)
                    continue
        if slot in seen:
            why[op_id] = ("同じ操作の行がほかにあります", group)
        seen.add(slot)


def _messages(frames: Frames, mapping: Mapping, ops: pd.DataFrame, why: dict) -> None:
    titles = {mapping.templates[k].title for k in mapping.tags.cancel_messages.values()}
    messages = ops[ops["action"].eq(MESSAGE)]
    if messages.empty:
        return
    facts = booking_facts(frames, mapping)
    cancels = cancel_templates(frames, mapping)
    status_ok = frames["bookings"].usable("status")
    for op_id in messages.index:
        target = message_target(str(op_id), titles)
        if target is None or target[0] not in facts.index:
            continue
        bid, title = target
        live = bool(facts.at[bid, "active"]) or bool(facts.at[bid, "held"])
        if live and not facts.at[bid, "deleted"] and status_ok.get(bid, False):
            why[op_id] = (f"予約 {bid} はキャンセルではなくなりました", None)
        elif bid in cancels.index and not cancels.at[bid, "deleted"] and cancels.at[bid, "title"] != title:
            why[op_id] = (f"予約 {bid} のキャンセル区分が{cancels.at[bid, 'kind'] or '空欄'}になりました", None)
