"""The L-Step操作 queue stays honest: one row per operation, pointless rows closed, 対応日時 stamped."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from tests.conftest import NOW, booking, customer
from tests.test_tags import AT, SEMINAR, UID, book_of, menu_of, open_ops, ops, rules_plan, step, tags_of

OPS_HEADERS = ["操作ID", "作成日時", "お客様番号", "LINEユーザーID", "顧客名", "営業担当", "操作", "内容", "理由", "期限",
               "対応済", "対応日時"]


def at(hhmm: str, day: int = 20) -> pd.Timestamp:
    return pd.Timestamp(f"2026-11-{day:02d}T{hhmm}", tz="Asia/Tokyo")


def tick(book, op_id: str) -> None:
    book.set("L-Step操作", op_id, "対応済", "TRUE")


def test_cancel_and_rebook_the_same_day_closes_the_removal_and_asks_for_the_tag_again(mapping):
    """The removal is closed, and since a person may have removed the tag without ticking it, the
    tag is asked for again (adding a tag the tool shows costs a click; a missing one, a lost step)."""
    book = book_of([customer("C1", LINEユーザーID=UID)], [booking("R1", "C1", AT)])
    step(book, mapping, at("09:00"))
    [added] = ops(book, 操作="タグ追加")
    tick(book, added["操作ID"])  # staff tagged the customer in the LINE tool
    book.set("予約", "R1", "ステータス", "キャンセル")
    book.set("予約", "R1", "キャンセル区分", "日程変更希望")
    step(book, mapping, at("12:00"))
    assert tags_of(book, "C1") is None
    [removal] = open_ops(book, 操作="タグ削除")
    assert open_ops(book, 操作="メッセージ送信")
    book.tabs["予約"].append(booking("R2", "C1", dt.datetime(2026, 11, 27, 14, 0)))  # rebooked at 15:00
    step(book, mapping, at("15:00"))
    assert tags_of(book, "C1") == SEMINAR
    assert not open_ops(book, 操作="タグ削除")
    [closed] = ops(book, 操作ID=removal["操作ID"])
    assert closed["対応済"] is True and closed["理由"] == "不要になりました（タグがまた必要になりました）"
    assert closed["対応日時"] == dt.datetime(2026, 11, 20, 15, 0)
    assert [o["操作ID"] for o in open_ops(book, 操作="タグ追加")] == [f"タグ追加:C1:{SEMINAR}:202611201500"]
    assert not rules_plan(book, mapping, at("15:00")) and not rules_plan(book, mapping, at("18:00"))


def test_a_removal_staff_already_did_is_undone_by_a_new_addition(mapping):
    book = book_of([customer("C1", タグ=SEMINAR)], [booking("R1", "C1", AT, "キャンセル")])
    step(book, mapping, at("12:00"))
    [removal] = ops(book, 操作="タグ削除")
    tick(book, removal["操作ID"])
    book.tabs["予約"].append(booking("R2", "C1", dt.datetime(2026, 11, 27, 14, 0)))
    step(book, mapping, at("15:00"))
    [addition] = open_ops(book, 操作="タグ追加")
    assert addition["操作ID"] == f"タグ追加:C1:{SEMINAR}:202611201500"
    assert ops(book, 操作ID=removal["操作ID"])[0]["理由"] == "有効な予約がなくなりました"  # done by staff: kept


def test_an_addition_not_ticked_when_the_tag_goes_is_closed_and_the_removal_listed(mapping):
    """A person may have added the tag in the LINE tool and not ticked it: left there, it would lock
    the customer out of the rebooking calendar. So the removal is listed whatever the addition's row says."""
    book = book_of([customer("C1")], [booking("R1", "C1", AT)])
    step(book, mapping, at("09:00"))
    [added] = open_ops(book, 操作="タグ追加")
    book.set("予約", "R1", "ステータス", "キャンセル")
    step(book, mapping, at("10:00"))
    assert tags_of(book, "C1") is None
    assert not open_ops(book, 操作="タグ追加")
    assert ops(book, 操作ID=added["操作ID"])[0]["理由"] == "不要になりました（タグは今は不要です）"
    assert [o["操作ID"] for o in open_ops(book, 操作="タグ削除")] == [f"タグ削除:C1:{SEMINAR}:202611201000"]
    assert not rules_plan(book, mapping, at("10:00")) and not rules_plan(book, mapping, at("11:00"))


def test_a_menu_switch_undone_before_staff_acted_is_closed_and_the_switch_back_listed(mapping):
    start = pd.Timestamp(AT, tz="Asia/Tokyo")
    book = book_of([customer("C1")], [booking("R1", "C1", AT)])
    step(book, mapping)
    step(book, mapping, start)
    [switch] = open_ops(book, 操作="リッチメニュー切替")
    book.set("予約", "R1", "ステータス", "キャンセル料未払い")  # a no-show: no meeting after all
    step(book, mapping, start + pd.Timedelta(hours=2))
    assert menu_of(book, "C1") == "特典面談前"
    switches = [(o["内容"], o["対応済"]) for o in ops(book, 操作="リッチメニュー切替")]
    assert switches == [("特典面談後", True), ("特典面談前", False)]
    assert ops(book, 操作ID=switch["操作ID"])[0]["理由"].startswith("不要になりました")
    assert not rules_plan(book, mapping, start + pd.Timedelta(hours=3))


def test_a_message_for_a_booking_no_longer_cancelled_is_closed(mapping):
    book = book_of([customer("C1")], [booking("R1", "C1", AT, "キャンセル")])
    step(book, mapping)
    [message] = open_ops(book, 操作="メッセージ送信")
    book.set("予約", "R1", "ステータス", "予約中来店前")  # the cancel was a mistake
    step(book, mapping)
    assert not open_ops(book, 操作="メッセージ送信")
    assert ops(book, 操作ID=message["操作ID"])[0]["対応済"] is True


def test_a_booking_cancelled_again_after_an_undone_cancel_gets_its_message_again(mapping):
    """The first message was withdrawn when the cancel was undone; the second cancel is a new one
    (its id taken by the withdrawn row, it was never listed: no rebooking calendar for the customer)."""
    book = book_of([customer("C1")], [booking("R1", "C1", AT, "キャンセル", キャンセル区分="日程変更希望")])
    step(book, mapping)
    for minutes, status in ((10, "予約中来店前"), (20, "キャンセル")):
        book.set("予約", "R1", "ステータス", status)
        step(book, mapping, NOW + pd.Timedelta(minutes=minutes))
    assert [o["操作ID"] for o in open_ops(book, 操作="メッセージ送信")] == ["メッセージ送信:R1:日程変更希望#2"]
    assert ops(book, 操作ID="メッセージ送信:R1:日程変更希望")[0]["理由"].startswith("不要になりました")
    assert not rules_plan(book, mapping, NOW + pd.Timedelta(minutes=20))


def test_a_changed_cancel_kind_replaces_the_open_message(mapping):
    book = book_of([customer("C1")], [booking("R1", "C1", AT, "キャンセル")])
    step(book, mapping)
    book.set("予約", "R1", "キャンセル区分", "日程変更希望")
    step(book, mapping, NOW + pd.Timedelta(minutes=10))
    assert [o["操作ID"] for o in open_ops(book, 操作="メッセージ送信")] == ["メッセージ送信:R1:日程変更希望"]
    assert ops(book, 操作ID="メッセージ送信:R1:キャンセルのみ")[0]["理由"].startswith("不要になりました")


def test_an_open_operation_is_never_listed_twice(mapping):
    book = book_of([customer("C1", タグ=f"VIP、{SEMINAR}")], [])
    step(book, mapping)
    [removal] = open_ops(book, 操作="タグ削除")
    book.set("顧客", "C1", "タグ", f"VIP、{SEMINAR}")  # someone types it back before staff acted
    step(book, mapping, NOW + pd.Timedelta(hours=1))
    assert tags_of(book, "C1") == "VIP"
    assert [o["操作ID"] for o in ops(book, 操作="タグ削除")] == [removal["操作ID"]]


def test_a_second_change_in_the_same_minute_gets_its_own_id(mapping):
    book = book_of([customer("C1", タグ=SEMINAR)], [booking("R1", "C1", AT, "キャンセル")])
    step(book, mapping)
    tick(book, f"タグ削除:C1:{SEMINAR}:202611201000")
    book.set("予約", "R1", "ステータス", "予約中来店前")
    step(book, mapping)
    tick(book, f"タグ追加:C1:{SEMINAR}:202611201000")
    book.set("予約", "R1", "ステータス", "キャンセル")
    step(book, mapping)
    assert [o["操作ID"] for o in open_ops(book, 操作="タグ削除")] == [f"タグ削除:C1:{SEMINAR}:202611201000-2"]


def test_duplicate_open_rows_keep_the_oldest(mapping):
    rows = [OPS_HEADERS] + [
        [f"タグ追加:C1:{SEMINAR}:2026111{d}0900", dt.datetime(2026, 11, 10 + d, 9, 0), "C1", None, "山田 太郎", "佐藤",
         "タグ追加", SEMINAR, "有効な予約があります", None, None, None] for d in (1, 2)]
    book = book_of([customer("C1", タグ=SEMINAR)], [booking("R1", "C1", AT)], **{"L-Step操作": rows})
    step(book, mapping)
    assert [o["操作ID"] for o in open_ops(book)] == [f"タグ追加:C1:{SEMINAR}:202611110900"]
    assert "同じ操作" in ops(book, 操作ID=f"タグ追加:C1:{SEMINAR}:202611120900")[0]["理由"]


def test_done_at_is_stamped_when_done_is_first_seen(mapping):
    book = book_of([customer("C1")], [booking("R1", "C1", AT)])
    step(book, mapping)
    [op] = ops(book)
    tick(book, op["操作ID"])
    step(book, mapping, at("11:00"))
    assert ops(book)[0]["対応日時"] == dt.datetime(2026, 11, 20, 11, 0)
    step(book, mapping, at("12:00"))
    assert ops(book)[0]["対応日時"] == dt.datetime(2026, 11, 20, 11, 0)  # first seen, not last
    book.set("L-Step操作", op["操作ID"], "対応済", "")  # unticked: not done after all
    step(book, mapping, at("13:00"))
    assert ops(book)[0]["対応日時"] is None
    assert not rules_plan(book, mapping, at("14:00"))


def test_rows_ticked_by_the_adoption_run_keep_done_at_blank(mapping):
    book = book_of([customer("C1")], [booking("R1", "C1", AT)])
    step(book, mapping, baseline=True)
    assert ops(book)[0]["対応済"] is True and ops(book)[0]["対応日時"] is None
    assert not rules_plan(book, mapping, at("11:00"))


def test_an_unreadable_done_box_is_left_alone(mapping):
    book = book_of([customer("C1")], [booking("R1", "C1", AT)])
    step(book, mapping)
    [op] = ops(book)
    book.set("L-Step操作", op["操作ID"], "対応済", "たぶん")
    book.set("予約", "R1", "ステータス", "キャンセル")
    plan = rules_plan(book, mapping, at("11:00"))
    assert not [e for e in plan.edits if e.tab == "operations"]
    assert not [e for e in plan.edits if e.field == "tags"]  # the change waits for the row it depends on
    book.set("L-Step操作", op["操作ID"], "対応済", "済")
    step(book, mapping, at("12:00"))
    assert tags_of(book, "C1") is None and open_ops(book, 操作="タグ削除")
