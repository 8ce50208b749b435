"""アラート (CONTRACT.md, "Alerts on a booking" 1–9): each alert, when it holds, is in the booking's
アラート cell starting with the contract's words and is told once to the right person; when it no
longer holds it leaves the cell. Every test runs the whole pipeline (flows.pipeline.run) on a real
.xlsx through the local adapter, with a send function that records what is delivered to whom.
"""

from __future__ import annotations

import datetime as dt

import pytest

from tests.conftest import booking, customer
from tests.test_reminders import MIN, START, T0, D, H, Outbox, Sheet, rems, step, team

HELD = dt.datetime(2026, 11, 13, 14, 0)  # a week before T0: a first meeting that took place
WORDS = {  # CONTRACT.md, the words each alert's text starts with
    1: "アクション実行を『実行する』に",
    2: "Zoomリンクが変わらない場合は手動で送付",
    3: "予約が重複: ",
    4: "ブラックリストの顧客",
    5: "❗要注意: ",
    6: "2回目面談の担当が初回と異なる",
    7: "結果未入力",
    8: "お礼LINE未送付",
    9: "本日中の再予約なし",
}


def items(book: Sheet, bid: str) -> list[str]:
    """The booking's アラート cell, split into its alerts."""
    cell = book.by_key("予約")[bid]["アラート"]
    return cell.split("; ") if cell else []


def told(outbox: Outbox, bid: str) -> list[tuple[str, str]]:
    """(notice id, recipient) of every alert about the booking that was delivered."""
    return [(i, r) for i, r in outbox.to if i.startswith(f"alert:{bid}:")]


def said(outbox: Outbox, recipient: str) -> str:
    return "\n".join(body for to, _, body in outbox.messages if to == recipient)


def alert_notices(outbox: Outbox) -> list[str]:
    return [i for i in outbox.ids if i.startswith("alert:")]


# --------------------------------------------------------------------------- 1. rescheduled


@pytest.mark.parametrize("moved", [START + D, START - 2 * D], ids=["later", "earlier"])
def test_1_rescheduled_without_running_actions(tmp_path, mapping, moved):
    book = team(tmp_path, bookings=[booking("R001", "C001", START, アクション実行="実行しない"),
                                    booking("R002", "C001", START + 3 * D)])
    outbox = Outbox()
    step(book, T0, mapping, outbox)
    assert items(book, "R001") == [] and not alert_notices(outbox)  # first sight is not a reschedule
    assert book.by_key("予約")["R001"]["前回開始日時"] == START
    book.set("予約", "R001", "開始日時", moved)
    book.set("予約", "R002", "開始日時", START + 4 * D)  # アクション実行 is 実行する: no alert
    step(book, T0 + H, mapping, outbox)
    [item] = items(book, "R001")
    assert item.startswith(WORDS[1]) and "2026/11/27 14:00" in item  # the time it was moved from
    assert items(book, "R002") == []
    assert told(outbox, "R001") == [(f"alert:R001:reschedule:{moved:%Y%m%d%H%M}", "佐藤")]
    assert not told(outbox, "R002")
    assert "予約 R001" in said(outbox, "佐藤") and WORDS[1] in said(outbox, "佐藤")
    rows = book.by_key("予約")
    assert (rows["R001"]["前回開始日時"], rows["R002"]["前回開始日時"]) == (START, START + 4 * D)  # held while it holds
    assert rems(book)["R001:個別相談設定中:1時間前"]["送信予定日時"] == moved - H  # the reminders followed anyway

    again = step(book, T0 + 2 * H, mapping, outbox)
    assert items(book, "R001") == [item] and len(told(outbox, "R001")) == 1 and not again.deliveries

    book.set("予約", "R001", "アクション実行", "実行する")
    step(book, T0 + 3 * H, mapping, outbox)
    assert items(book, "R001") == []
    assert book.by_key("予約")["R001"]["前回開始日時"] == moved
    assert len(told(outbox, "R001")) == 1


# --------------------------------------------------------------------------- 2. salesperson changed


def test_2_salesperson_changed_is_told_to_the_new_salesperson_until_the_meeting_starts(tmp_path, mapping):
    book = team(tmp_path)
    outbox = Outbox()
    step(book, T0, mapping, outbox)
    book.set("予約", "R001", "営業担当", "鈴木")
    step(book, T0 + H, mapping, outbox)
    [item] = items(book, "R001")
    assert item.startswith(WORDS[2]) and "佐藤" in item
    assert told(outbox, "R001") == [("alert:R001:salesperson:鈴木", "鈴木")]
    assert WORDS[2] in said(outbox, "鈴木") and WORDS[2] not in said(outbox, "佐藤")
    assert book.by_key("予約")["R001"]["前回担当"] == "佐藤"
    assert {r["営業担当"] for r in rems(book).values() if r["状態"] == "予定"} == {"鈴木"}

    step(book, T0 + 2 * H, mapping, outbox)
    assert items(book, "R001") == [item] and len(told(outbox, "R001")) == 1

    step(book, START + 30 * MIN, mapping, outbox)  # the meeting has started: the Zoom link no longer matters
    assert items(book, "R001") == []
    assert book.by_key("予約")["R001"]["前回担当"] == "鈴木"
    assert len(told(outbox, "R001")) == 1


def test_1_and_2_reschedule_and_salesperson_change_in_the_same_run(tmp_path, mapping):
    book = team(tmp_path, bookings=[booking("R001", "C001", START, アクション実行="実行しない")])
    outbox = Outbox()
    step(book, T0, mapping, outbox)
    book.set("予約", "R001", "開始日時", START + D)
    book.set("予約", "R001", "営業担当", "鈴木")
    step(book, T0 + H, mapping, outbox)
    first, second = items(book, "R001")  # in the contract's order
    assert first.startswith(WORDS[1]) and second.startswith(WORDS[2])
    assert sorted(told(outbox, "R001")) == [("alert:R001:reschedule:202611281400", "鈴木"),
                                           ("alert:R001:salesperson:鈴木", "鈴木")]
    r = rems(book)
    for s in ("3日前", "前日", "1時間前"):
        row = r[f"R001:個別相談設定中:{s}"]
        assert (row["状態"], row["営業担当"]) == ("予定", "鈴木")
    assert r["R001:個別相談設定中:前日"]["送信予定日時"] == START
    assert not [o for o in book.by_key("L-Step操作").values() if o["操作"] == "リマインド削除"]

    book.set("予約", "R001", "アクション実行", "実行する")
    step(book, T0 + 2 * H, mapping, outbox)
    [left] = items(book, "R001")
    assert left.startswith(WORDS[2])
    rows = book.by_key("予約")
    assert (rows["R001"]["前回開始日時"], rows["R001"]["前回担当"]) == (START + D, "佐藤")
    assert len(told(outbox, "R001")) == 2


# --------------------------------------------------------------------------- 3. overlap


@pytest.mark.parametrize("gone", ["cancel", "delete"])
def test_3_overlapping_bookings_of_one_salesperson_on_both(tmp_path, mapping, gone):
    book = team(tmp_path, [customer("C001"), customer("C002", "鈴木", "花子")], [
        booking("R001", "C001", START),  # 14:00-15:30
        booking("R002", "C002", START + H),  # 15:00-16:30: overlaps R001
        booking("R003", "C001", START + 150 * MIN),  # 16:30: only touches R002 (half-open)
        booking("R004", "C002", START, 営業担当="鈴木"),  # same time, another salesperson
    ])
    outbox = Outbox()
    step(book, T0, mapping, outbox)
    assert items(book, "R001") == [WORDS[3] + "R002"] and items(book, "R002") == [WORDS[3] + "R001"]
    assert items(book, "R003") == [] and items(book, "R004") == []
    assert sorted(outbox.to) == [("alert:R001:overlap:R002", "佐藤"), ("alert:R002:overlap:R001", "佐藤")]

    if gone == "cancel":
        book.set("予約", "R002", "ステータス", "キャンセル")
    else:
        book.delete("予約", "R002")
    step(book, T0 + H, mapping, outbox)
    assert items(book, "R001") == [] and items(book, "R003") == []
    assert gone == "delete" or items(book, "R002") == []
    assert len(alert_notices(outbox)) == 2


# --------------------------------------------------------------------------- 4. blacklist


def test_4_blacklisted_customer_is_urgent_to_ops_even_in_quiet_hours(tmp_path, mapping):
    book = team(tmp_path, [customer("C001"), customer("C002", "鈴木", "花子", ブラックリストメモ="無断キャンセル3回")], [
        booking("R001", "C001", START), booking("R002", "C002", START + D),
        booking("R003", "C002", START + 2 * D, "キャンセル"),  # not an active booking: no alert
    ])
    night = T0 + 12 * H  # 22:00, quiet hours: only urgent notices go
    outbox = Outbox()
    step(book, night, mapping, outbox)
    assert items(book, "R002") == [WORDS[4]] and items(book, "R003") == [] and items(book, "R001") == []
    assert outbox.to == [("alert:R002:blacklisted", "運営")]
    [(to, title, body)] = outbox.messages
    assert (to, title) == ("運営", mapping.templates["blacklisted"].title) and mapping.templates["blacklisted"].urgent
    assert "鈴木 花子" in body and "R002" in body
    assert not [r for r in rems(book).values() if r["予約ID"] == "R002"]  # nothing planned for them

    step(book, night, mapping, outbox)
    assert len(outbox.ids) == 1

    book.set("顧客", "C002", "ブラックリストメモ", "")
    step(book, night + H, mapping, outbox)
    assert items(book, "R002") == [] and len(alert_notices(outbox)) == 1


# --------------------------------------------------------------------------- 5. caution


def test_5_caution_person_is_flagged_on_the_booking_and_notified_to_nobody(tmp_path, mapping):
    book = team(tmp_path, [customer("C001", 要注意メモ="遅刻が多い"), customer("C002", "鈴木", "花子")], [
        booking("R001", "C001", START), booking("R002", "C001", START + D, "キャンセル"),
        booking("R003", "C002", START + 2 * D),
    ])
    outbox = Outbox()
    step(book, T0, mapping, outbox)
    assert items(book, "R001") == [WORDS[5] + "遅刻が多い"]
    assert items(book, "R002") == [] and items(book, "R003") == []
    assert not alert_notices(outbox) and not [k for k in book.by_key("通知") if k.startswith("alert:")]

    book.set("顧客", "C001", "要注意メモ", "")
    step(book, T0 + H, mapping, outbox)
    assert items(book, "R001") == [] and not alert_notices(outbox)


# --------------------------------------------------------------------------- 6. second meeting


def test_6_second_meeting_with_another_salesperson(tmp_path, mapping):
    book = team(tmp_path, [customer("C001"), customer("C002", "鈴木", "花子")], [
        booking("R001", "C001", HELD, "来店済み"),
        booking("R002", "C001", START, メニュー="2回目面談", 営業担当="鈴木"),
        booking("R003", "C002", HELD + H, "来店済み"),
        booking("R004", "C002", START + D, メニュー="2回目面談"),  # the same salesperson as the first
        booking("R005", "C001", START + 2 * D, 営業担当="鈴木"),  # a 個別相談, not a second meeting
    ])
    outbox = Outbox()
    step(book, T0, mapping, outbox)
    assert items(book, "R002") == [WORDS[6]]
    assert items(book, "R004") == [] and items(book, "R005") == []
    assert outbox.to == [("alert:R002:second_meeting", "鈴木")] and WORDS[6] in said(outbox, "鈴木")

    book.set("予約", "R002", "営業担当", "佐藤")
    step(book, T0 + H, mapping, outbox)
    assert not [i for i in items(book, "R002") if i.startswith(WORDS[6])]
    [changed] = items(book, "R002")
    assert changed.startswith(WORDS[2])  # now a change of salesperson
    assert told(outbox, "R002") == [("alert:R002:second_meeting", "鈴木"), ("alert:R002:salesperson:佐藤", "佐藤")]


# --------------------------------------------------------------------------- 7. no outcome


def test_7_meeting_over_without_a_result(tmp_path, mapping):
    book = team(tmp_path, bookings=[
        booking("R001", "C001", T0 - 3 * H),  # 07:00-08:30, still 予約中来店前
        booking("R002", "C001", T0 - H),  # 09:00-10:30: not over yet
        booking("R003", "C001", T0 - 20 * D),  # over, but longer ago than the lookback
        booking("R004", "C001", T0 - 5 * H, "来店済み"),  # held
        booking("R005", "C001", T0 - 3 * H, 営業担当=""),  # nobody's: 運営 is told
    ])
    outbox = Outbox()
    step(book, T0, mapping, outbox)
    assert items(book, "R001") == [WORDS[7]] and items(book, "R005") == [WORDS[7]]
    assert items(book, "R002") == items(book, "R003") == items(book, "R004") == []
    assert sorted(outbox.to) == [("alert:R001:no_outcome", "佐藤"), ("alert:R005:no_outcome", "運営")]

    step(book, T0 + H, mapping, outbox)  # 11:00: R002 is over now
    assert items(book, "R002") == [WORDS[7]]
    assert told(outbox, "R002") == [("alert:R002:no_outcome", "佐藤")] and len(told(outbox, "R001")) == 1

    book.set("予約", "R001", "ステータス", "来店済み")
    book.set("予約", "R001", "結果", "失注")
    step(book, T0 + 2 * H, mapping, outbox)
    assert items(book, "R001") == [] and items(book, "R002") == [WORDS[7]]
    assert len(alert_notices(outbox)) == 3


# --------------------------------------------------------------------------- 8. no thanks LINE


def test_8_no_thanks_line_24_hours_after_a_won_or_pending_meeting(tmp_path, mapping):
    book = team(tmp_path, bookings=[
        booking("R001", "C001", T0 - 26 * H, "来店済み", 結果="成約"),  # ended 24.5 h ago
        booking("R002", "C001", T0 - 24 * H, "来店済み", 結果="保留"),  # ended 22.5 h ago
        booking("R003", "C001", T0 - 26 * H, "来店済み", 結果="失注"),
        booking("R004", "C001", T0 - 26 * H, "来店済み", 結果="成約", お礼LINE="TRUE"),
        booking("R005", "C001", T0 - 26 * H, "来店済み", 結果="成約", お礼LINE="maybe"),  # unreadable: an error, no alert
    ])
    outbox = Outbox()
    step(book, T0, mapping, outbox)
    assert items(book, "R001") == [WORDS[8]]
    assert items(book, "R002") == items(book, "R003") == items(book, "R004") == items(book, "R005") == []
    assert [t for t in outbox.to if t[0].startswith("alert:")] == [("alert:R001:no_thanks", "佐藤")]

    step(book, T0 + 2 * H, mapping, outbox)
    assert items(book, "R002") == [WORDS[8]] and told(outbox, "R002") == [("alert:R002:no_thanks", "佐藤")]

    book.set("予約", "R001", "お礼LINE", "✓")
    step(book, T0 + 3 * H, mapping, outbox)
    assert items(book, "R001") == [] and items(book, "R002") == [WORDS[8]]
    assert len(alert_notices(outbox)) == 2


# --------------------------------------------------------------------------- 9. no rebooking


def test_9_cancel_wanting_a_new_date_with_no_rebooking_by_the_end_of_that_day(tmp_path, mapping):
    customers = [customer(f"C00{i}") for i in range(1, 5)]
    book = team(tmp_path, customers, [
        booking("R001", "C001", START), booking("R002", "C002", START + D), booking("R003", "C003", START + 2 * D),
        booking("R000", "C001", HELD, "来店済み", 結果="失注"),  # a meeting before the cancel is no rebooking
        # first seen already cancelled (no reminders to date the cancel): counts from its start
        booking("R006", "C004", T0 - 2 * D, "キャンセル", キャンセル区分="日程変更希望"),
    ])
    outbox = Outbox()
    step(book, T0, mapping, outbox)
    assert items(book, "R006") == [WORDS[9]] and told(outbox, "R006") == [("alert:R006:no_rebooking", "佐藤")]

    for bid, kind in (("R001", "日程変更希望"), ("R002", "日程変更希望"), ("R003", "キャンセルのみ")):
        book.set("予約", bid, "ステータス", "キャンセル")
        book.set("予約", bid, "キャンセル区分", kind)
    step(book, T0 + H, mapping, outbox)  # the cancels are seen on 11/20
    book.add("予約", booking("R004", "C002", START + 3 * D))  # C002 books a new date the same day
    step(book, T0 + 10 * H, mapping, outbox)
    step(book, dt.datetime(2026, 11, 20, 23, 59), mapping, outbox)
    assert items(book, "R001") == items(book, "R002") == []  # the day is not over yet

    step(book, dt.datetime(2026, 11, 21, 9, 30), mapping, outbox)
    assert items(book, "R001") == [WORDS[9]]
    assert items(book, "R002") == items(book, "R003") == items(book, "R004") == items(book, "R000") == []
    assert told(outbox, "R001") == [("alert:R001:no_rebooking", "佐藤")] and not told(outbox, "R002")

    book.add("予約", booking("R005", "C001", START + 4 * D))  # a late rebooking
    step(book, dt.datetime(2026, 11, 21, 10, 0), mapping, outbox)
    assert items(book, "R001") == [] and len(alert_notices(outbox)) == 2


def test_9_a_booking_first_seen_already_cancelled_counts_from_that_day_not_its_meeting(tmp_path, mapping):
    """Booked and cancelled between two runs, for a meeting a week ahead: no reminders date the
    cancel, the cancel message listed that day does."""
    book = team(tmp_path, [customer("C001")], [booking("R001", "C001", START, "キャンセル", キャンセル区分="日程変更希望")])
    outbox = Outbox()
    step(book, T0, mapping, outbox, full=True)  # full: the tags rule lists the cancel message
    step(book, dt.datetime(2026, 11, 20, 23, 59), mapping, outbox, full=True)
    assert items(book, "R001") == []  # the day it was first seen is not over
    step(book, dt.datetime(2026, 11, 21, 9, 0), mapping, outbox, full=True)
    assert items(book, "R001") == [WORDS[9]] and told(outbox, "R001") == [("alert:R001:no_rebooking", "佐藤")]


# --------------------------------------------------------------------------- edge cases


def test_unreadable_start_is_an_error_keeps_the_cell_and_changes_no_reminder(tmp_path, mapping):
    book = team(tmp_path, [customer("C001", 要注意メモ="遅刻が多い")], [
        booking("R001", "C001", START), booking("R002", "C001", "11/30 14:00"),  # no year: an error
    ])
    outbox = Outbox()
    step(book, T0, mapping, outbox)
    errors = book.by_key("エラー")
    assert "予約!R002!開始日時" in errors
    assert items(book, "R002") == [] and book.by_key("予約")["R002"]["前回開始日時"] is None
    assert {r["予約ID"] for r in rems(book).values()} == {"R001"}
    cell, before = items(book, "R001"), rems(book)

    book.set("予約", "R001", "開始日時", "来週のどこか")
    book.set("予約", "R001", "アクション実行", "実行しない")
    step(book, T0, mapping, outbox)  # the same moment: the greeting is not sent yet, every reminder as it was
    assert "予約!R001!開始日時" in book.by_key("エラー")
    assert items(book, "R001") == cell == [WORDS[5] + "遅刻が多い"]
    assert book.by_key("予約")["R001"]["前回開始日時"] == START
    assert rems(book) == before and not alert_notices(outbox)

    book.set("予約", "R001", "開始日時", START + D)  # fixed to another time: now a reschedule
    step(book, T0 + H, mapping, outbox)
    assert "予約!R001!開始日時" not in book.by_key("エラー")
    moved, flag = items(book, "R001")
    assert moved.startswith(WORDS[1]) and flag == WORDS[5] + "遅刻が多い"
    assert told(outbox, "R001") == [("alert:R001:reschedule:202611281400", "佐藤")]


# --------------------------------------------------------------------------- whole runs


def test_every_alert_at_once_with_every_rule_and_two_runs_at_one_moment_tell_each_once(tmp_path, mapping):
    day0 = T0 - D
    customers = [customer("C001"), customer("C002", "鈴木", "花子"), customer("C003", 要注意メモ="遅刻が多い"),
                 customer("C004"), customer("C005")]
    book = team(tmp_path, customers, [
        booking("R01", "C001", START, アクション実行="実行しない"),
        booking("R02", "C001", START + 2 * D),
        booking("R03", "C001", START + 4 * D), booking("R04", "C001", START + 5 * D),
        booking("R05", "C002", START + 6 * D),
        booking("R06", "C003", START + 7 * D),
        booking("R07", "C004", HELD, "来店済み", 結果="失注"),
        booking("R09", "C001", dt.datetime(2026, 11, 20, 7, 0)),
        booking("R10", "C001", dt.datetime(2026, 11, 18, 14, 0), "来店済み", 結果="成約", プラン="スタンダード"),
        booking("R11", "C005", dt.datetime(2026, 11, 19, 14, 0), "キャンセル", キャンセル区分="日程変更希望"),
    ])
    outbox = Outbox()
    step(book, day0, mapping, outbox, full=True)
    assert not alert_notices(outbox)
    assert items(book, "R06") == [WORDS[5] + "遅刻が多い"]

    book.set("予約", "R01", "開始日時", START + D)  # 1
    book.set("予約", "R02", "営業担当", "鈴木")  # 2
    book.set("予約", "R04", "開始日時", START + 4 * D + H)  # 3 (アクション実行 is 実行する)
    book.set("顧客", "C002", "ブラックリストメモ", "出禁")  # 4
    book.add("予約", booking("R08", "C004", START + 8 * D, メニュー="2回目面談", 営業担当="鈴木"))  # 6
    first = step(book, T0, mapping, outbox, full=True)  # 7, 8 and 9 come due by time alone
    assert first.deliveries
    expected = {
        ("alert:R01:reschedule:202611281400", "佐藤"), ("alert:R02:salesperson:鈴木", "鈴木"),
        ("alert:R03:overlap:R04", "佐藤"), ("alert:R04:overlap:R03", "佐藤"), ("alert:R05:blacklisted", "運営"),
        ("alert:R08:second_meeting", "鈴木"), ("alert:R09:no_outcome", "佐藤"), ("alert:R10:no_thanks", "佐藤"),
        ("alert:R11:no_rebooking", "佐藤"),
    }
    assert {(i, r) for i, r in outbox.to if i.startswith("alert:")} == expected
    for bid, n in (("R01", 1), ("R02", 2), ("R03", 3), ("R04", 3), ("R05", 4), ("R06", 5), ("R08", 6), ("R09", 7),
                   ("R10", 8), ("R11", 9)):
        [item] = items(book, bid)
        assert item.startswith(WORDS[n]), (bid, item)
    assert items(book, "R07") == []

    second = step(book, T0, mapping, outbox, full=True)
    assert not second.plan, second.plan
    assert not second.deliveries
    assert len(outbox.ids) == len(set(outbox.ids))
    notices = book.by_key("通知")
    assert all(notices[i]["状態"] == "送信済" for i, _ in expected)
