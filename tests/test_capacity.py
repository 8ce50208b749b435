"""A workbook nearly full is told to 運営 through the outbox, before its writes start being refused."""

from __future__ import annotations

import pandas as pd
import pytest

from flows.pipeline import run
from tasks.check import check
from tasks.frames import Capacity
from tasks.rules.capacity import workbook_capacity
from tasks.workbooks.local import MAX_ROW, LocalWorkbook
from tests.conftest import NOW, booking, customer, tab_records, team_tabs, write_book
from tests.test_spine import _log_down_to

GOOGLE = 10_000_000


def frames_with(mapping, *capacity: Capacity):
    return check(team_tabs([customer("C001")], [booking("R001", "C001", "2026/11/25 14:00")]), mapping, capacity)


@pytest.mark.parametrize(("used", "step"), [(7_999_999, None), (8_000_000, 80), (8_999_999, 80), (9_000_000, 90),
                                            (9_500_000, 95), (10_000_000, 95)])
def test_ops_are_told_at_80_90_and_95_percent_of_a_spreadsheets_cells(mapping, used, step):
    plan = workbook_capacity(frames_with(mapping, Capacity("cells", "main", used, GOOGLE)), NOW, mapping)
    if step is None:
        assert not plan
        return
    [a] = plan.appends
    assert (a.tab, a.key) == ("outbox", f"workbook_nearly_full:cells:main:{step}:2026-11")
    assert a.get("recipient") == "運営" and a.get("kind") == "シートの容量"
    assert a.get("body").startswith(f"スプレッドシート『main』が上限の{100 * used // GOOGLE}%です（{used:,}／10,000,000セル）。")
    assert "変更履歴タブを別のスプレッドシートに移してください" in a.get("body")


def test_an_xlsx_tab_is_told_in_rows_and_each_spreadsheet_on_its_own(mapping):
    frames = frames_with(mapping, Capacity("rows", "変更履歴", 900_000, MAX_ROW), Capacity("rows", "顧客", 10, MAX_ROW),
                         Capacity("cells", "log", 9_100_000, GOOGLE))
    bodies = {a.key: a.get("body") for a in workbook_capacity(frames, NOW, mapping).appends}
    assert set(bodies) == {"workbook_nearly_full:rows:変更履歴:80:2026-11", "workbook_nearly_full:cells:log:90:2026-11"}
    assert bodies["workbook_nearly_full:rows:変更履歴:80:2026-11"].startswith(
        "タブ『変更履歴』が上限の85%です（900,000／1,048,576行）。")
    assert "古い行を別のファイルに移してください" in bodies["workbook_nearly_full:rows:変更履歴:80:2026-11"]


def test_the_notice_is_a_rule_of_the_reconcile_and_is_told_once_a_month_a_step(tmp_path, mapping):
    """Through a real .xlsx: the run that reads the log past 80% tells 運営; a rerun does not; next
    month, still that full, tells again."""
    sent: list = []
    path = write_book(tmp_path / "team.xlsx", team_tabs([customer("C001")], [booking("R001", "C001", "2026/11/25 14:00")]))
    _log_down_to(path, int(0.85 * MAX_ROW), mapping)
    for now in (NOW, NOW + pd.Timedelta(hours=1), NOW + pd.Timedelta(days=31)):
        run(LocalWorkbook(path), mapping, now, lambda *m: sent.append(m))
    told = [(to, title) for to, title, _, _ in sent if title == "シートの容量"]
    assert told == [("運営", "シートの容量")] * 2
    ids = [r["通知ID"] for r in tab_records(path, "通知") if r["通知ID"].startswith("workbook_nearly_full")]
    assert ids == ["workbook_nearly_full:rows:変更履歴:80:2026-11", "workbook_nearly_full:rows:変更履歴:80:2026-12"]
