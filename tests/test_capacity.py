"""A workbook nearly full is told to 運営 through the outbox, before its writes start being refused."""

from __future__ import annotations

import openpyxl
import pandas as pd
import pytest

from flows.pipeline import run
from tasks.check import check
from tasks.frames import Capacity
from tasks.rules.capacity import MOVE_LOG, NEW_LOG, OLD_LOG_ROWS, OLD_ROWS, TRIM, workbook_capacity
from tasks.workbooks.local import MAX_ROW, LocalWorkbook
from tests.conftest import NOW, booking, customer, log_down_to, tab_records, team_tabs, with_dimension, write_book

GOOGLE = 10_000_000


def frames_with(mapping, *capacity: Capacity):
    return check(team_tabs([customer("C001")], [booking("R001", "C001", "2026/11/25 14:00")]), mapping, capacity)


@pytest.mark.parametrize(("used", "step", "said"), [
    (7_999_999, None, None), (8_000_000, 80, "80%に達しました（8,000,000／10,000,000セル）"),
    (8_999_999, 80, "89%に達しました（8,999,999／10,000,000セル）"), (9_000_000, 90, "90%に達しました"),
    (9_500_000, 95, "95%に達しました"), (9_999_999, 95, "99%に達しました（9,999,999／10,000,000セル）"),
])
def test_ops_are_told_at_80_90_and_95_percent_of_a_spreadsheets_cells(mapping, used, step, said):
    plan = workbook_capacity(frames_with(mapping, Capacity("cells", "main", used, GOOGLE, "顧客管理")), NOW, mapping)
    if step is None:
        assert not plan
        return
    [a] = plan.appends
    assert (a.tab, a.key) == ("outbox", f"workbook_nearly_full:cells:main:{step}:2026-11")
    assert a.get("recipient") == "運営" and a.get("kind") == "シートの容量"
    assert a.get("body").startswith(f"スプレッドシート『顧客管理』の使用量が上限の{said}")
    assert a.get("body").endswith(MOVE_LOG)  # the log lives in main by default: it can move out


def test_the_advice_fits_what_fills_the_workbook(mapping):
    """The log on its own gets a new spreadsheet; a spreadsheet without the log is trimmed; in an
    .xlsx, 変更履歴's old rows go to another file, another tab's rows only with care."""
    log_spec = mapping.tabs["changelog"].model_copy(update={"spreadsheet": "log"})
    placed = mapping.model_copy(update={"tabs": {**mapping.tabs, "changelog": log_spec}})
    frames = frames_with(placed, Capacity("cells", "log", 9_100_000, GOOGLE, "履歴"),
                         Capacity("cells", "main", 8_100_000, GOOGLE),
                         Capacity("rows", "変更履歴", 900_000, MAX_ROW, "team.xlsx"), Capacity("rows", "顧客", 850_000, MAX_ROW),
                         Capacity("rows", "予約", 10, MAX_ROW))
    stops = "上限を超えると書き込みがすべて止まり、予約・リマインド・通知の処理が止まります。"
    bodies = {a.key: a.get("body") for a in workbook_capacity(frames, NOW, placed).appends}
    assert bodies == {
        "workbook_nearly_full:cells:log:90:2026-11":
            f"スプレッドシート『履歴』の使用量が上限の91%に達しました（9,100,000／10,000,000セル）。{stops}{NEW_LOG}",
        "workbook_nearly_full:cells:main:80:2026-11":
            f"スプレッドシート『main』の使用量が上限の81%に達しました（8,100,000／10,000,000セル）。{stops}{TRIM}",
        "workbook_nearly_full:rows:変更履歴:80:2026-11":
            f"ファイル『team.xlsx』のタブ『変更履歴』の使用量が上限の85%に達しました（900,000／1,048,576行）。{stops}{OLD_LOG_ROWS}",
        "workbook_nearly_full:rows:顧客:80:2026-11":
            f"ファイル『顧客』のタブ『顧客』の使用量が上限の81%に達しました（850,000／1,048,576行）。{stops}{OLD_ROWS}",
    }


def test_the_notice_is_a_rule_of_the_reconcile_and_is_told_once_a_month_a_step(tmp_path, mapping):
    """Through a real .xlsx: the run that reads the log past 80% tells 運営; a rerun does not; next
    month, still that full, tells again."""
    sent: list = []
    path = write_book(tmp_path / "team.xlsx", team_tabs([customer("C001")], [booking("R001", "C001", "2026/11/25 14:00")]))
    log_down_to(path, int(0.85 * MAX_ROW), mapping)
    for now in (NOW, NOW + pd.Timedelta(hours=1), NOW + pd.Timedelta(days=31)):
        run(LocalWorkbook(path), mapping, now, lambda *m: sent.append(m))
    told = [(to, title, body) for to, title, body, _ in sent if title == "シートの容量"]
    assert [(to, title) for to, title, _ in told] == [("運営", "シートの容量")] * 2
    assert "ファイル『team.xlsx』のタブ『変更履歴』の使用量が上限の84%に達しました（891,289／1,048,576行）" in told[0][2]
    ids = [r["通知ID"] for r in tab_records(path, "通知") if r["通知ID"].startswith("workbook_nearly_full")]
    assert ids == ["workbook_nearly_full:rows:変更履歴:80:2026-11", "workbook_nearly_full:rows:変更履歴:80:2026-12"]


def test_an_xlsx_written_without_its_dimension_is_measured_row_by_row(tmp_path):
    """Some writers leave out the <dimension> record that says how many rows a sheet has; then the
    rows are counted, not taken as none (which would never warn)."""
    path = tmp_path / "bare.xlsx"
    wb = openpyxl.Workbook()
    for r in range(1, 51):
        wb.active.cell(r, 1, f"row {r}")
    wb.active.title = "顧客"
    wb.save(path)
    bare = with_dimension(path, tmp_path / "bare2.xlsx", None)
    assert LocalWorkbook(bare).capacity() == [Capacity("rows", "顧客", 50, MAX_ROW, "bare2.xlsx")]


def test_the_baseline_still_tells_ops_that_the_workbook_is_nearly_full(tmp_path, mapping):
    """The adoption run marks every backlog notice sent; this one is about today, and marked sent
    it would wait for next month while the log runs out of room."""
    sent: list = []
    won = booking("R002", "C001", "2026/11/10 10:00", "来店済み", 結果="成約")  # the link maker is told
    path = write_book(tmp_path / "team.xlsx", team_tabs([customer("C001")], [booking("R001", "C001", "2026/11/25 14:00"), won]))
    log_down_to(path, int(0.85 * MAX_ROW), mapping)
    run(LocalWorkbook(path), mapping, NOW, lambda *m: sent.append(m), baseline=True)
    assert [(to, title) for to, title, _, _ in sent] == [("運営", "シートの容量")]
    states = {r["通知ID"]: r["状態"] for r in tab_records(path, "通知")}
    assert states.pop("workbook_nearly_full:rows:変更履歴:80:2026-11") == "送信済"
    assert states and set(states.values()) == {"送信済"}  # the backlog: marked, never sent
