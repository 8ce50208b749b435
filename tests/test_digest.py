"""The end-of-day digest: each person's open items in one message, once a day."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
import yaml
from prefect import Flow
from typer.testing import CliRunner

from flows.cli import app
from flows.digest import digest_flow
from flows.pipeline import run
from tasks.check import check
from tasks.rules.digest import digest, digest_plan, open_items
from tasks.workbooks.local import LocalWorkbook
from tests.conftest import STAFF_HEADERS, booking, customer, set_cell, tab_records, team_tabs, write_book

EVENING = pd.Timestamp("2026-11-20T18:00", tz="Asia/Tokyo")
OPS = ["操作ID", "作成日時", "お客様番号", "LINEユーザーID", "顧客名", "営業担当", "操作", "内容", "理由", "期限",
       "対応済", "対応日時"]
LINKS = ["依頼ID", "依頼日時", "予約ID", "お客様番号", "顧客名", "営業担当", "プラン", "作成担当", "決済リンク", "状態",
         "送付済", "更新日時"]
REQUESTED = dt.datetime(2026, 11, 20, 9, 0)


def workbook(tmp_path, *, staff=None, operations=None, links=None, alerts=None):
    bookings = [booking("R001", "C001", dt.datetime(2026, 11, 25, 14, 0)),
                booking("R002", "C002", dt.datetime(2026, 11, 26, 10, 0), 営業担当="鈴木")]
    tabs = team_tabs([customer("C001", 電話番号="090-1234-5678"), customer("C002", "鈴木", "花子", 営業担当="鈴木")], bookings)
    if alerts:
        tabs["予約"][0] = [*tabs["予約"][0], "アラート"]
        for row in tabs["予約"][1:]:
            row.append(alerts.get(row[0], ""))
    if staff:
        tabs["担当者"] = [STAFF_HEADERS, *staff]
    tabs["L-Step操作"] = [OPS, *(operations or [])]
    tabs["決済リンク依頼"] = [LINKS, *(links or [])]
    return write_book(tmp_path / "team.xlsx", tabs)


def op(op_id, salesperson, done="", due=dt.datetime(2026, 11, 22, 13, 0), customer=("C001", "山田 太郎")):
    cid, name = customer
    return [op_id, REQUESTED, cid, "", name, salesperson, "タグ削除", "【セミナー】個別相談予約完了", "キャンセル",
            due, done, None]


def request(rid, state, salesperson="佐藤", maker="高橋"):
    return [rid, REQUESTED, rid[3:], "C001", "山田 太郎", salesperson, "スタンダード", maker, None, state, "", REQUESTED]


def test_each_person_gets_their_own_open_items(tmp_path, mapping):
    path = workbook(
        tmp_path,
        alerts={"R001": "結果未入力; お礼LINE未送付", "R002": "予約が重複: R003"},
        operations=[op("OP1", "佐藤"), op("OP2", "佐藤", done="TRUE"), op("OP3", "鈴木", customer=("C002", "鈴木 花子"))],
        links=[request("PL-R1", "作成済"), request("PL-R2", "依頼中"), request("PL-R3", "送付済"), request("PL-R4", "不要")],
    )
    frames = check(LocalWorkbook(path).read(), mapping)
    plan = digest(frames, EVENING, mapping)
    by = {a.get("recipient"): a for a in plan.appends}
    assert set(by) == {"佐藤", "鈴木", "高橋"}  # 田中 (運営) gets no digest; nobody without items either
    assert by["佐藤"].key == "digest:佐藤:2026-11-20"
    sato = by["佐藤"].get("body")
    assert "未対応: 4件" in sato
    assert sato.index("予約 R001") < sato.index("L-Step操作") < sato.index("PL-R1")  # alerts, operations, requests
    assert "結果未入力; お礼LINE未送付 —『予約』M2" in sato  # where: the アラート cell
    assert "OP2" not in sato and "PL-R3" not in sato and "PL-R4" not in sato and "R002" not in sato
    assert "決済リンク送付 PL-R1" in sato and "送付済にチェック" in sato and "決済リンク作成待ち PL-R2" in sato
    assert "『L-Step操作』K2" in sato  # where: the 対応済 cell
    assert "予約 R002" in by["鈴木"].get("body") and "R001" not in by["鈴木"].get("body")
    takahashi = by["高橋"].get("body")
    assert "決済リンク作成 PL-R2" in takahashi and "『決済リンク依頼』I3 にURLを入力" in takahashi and "PL-R1" not in takahashi


def test_an_open_operation_is_in_the_digest_of_the_customers_salesperson_now(tmp_path, mapping):
    """Listed for 佐藤, then C002 (鈴木's customer) was reassigned before any reconcile wrote it:
    the digest already tells 鈴木, and never 佐藤, about someone else's customer."""
    path = workbook(tmp_path, operations=[op("OP1", "佐藤", customer=("C002", "鈴木 花子"))])
    by = {a.get("recipient"): a.get("body") for a in digest(check(LocalWorkbook(path).read(), mapping), EVENING, mapping).appends}
    assert set(by) == {"鈴木"} and "鈴木 花子 様" in by["鈴木"]


@pytest.mark.parametrize("memo_now", ["", "今は別の内容", "大声; 結果未入力", "大声"])
def test_a_caution_flag_written_before_its_memo_changed_is_still_never_told(tmp_path, mapping, memo_now):
    """The reconcile wrote alert 5 quoting the memo of the time; the memo was cleared or edited before
    the digest (a memo may hold "; " and an alert's words): the old text stays out all the same."""
    cell = "予約が重複: R009; ❗要注意: 大声; 自宅090 1234 5678; 結果未入力 と言う; 結果未入力; お礼LINE未送付"
    path = workbook(tmp_path, alerts={"R001": cell})
    set_cell(path, "顧客", "C001", "要注意メモ", memo_now or None)
    sato = digest(check(LocalWorkbook(path).read(), mapping), EVENING, mapping).appends[0].get("body")
    assert "予約が重複: R009; 結果未入力; お礼LINE未送付 —『予約』" in sato
    assert "要注意" not in sato and "大声" not in sato and "自宅" not in sato and "と言う" not in sato


def test_a_caution_memo_ending_in_an_alerts_words_is_not_told_as_that_alert(tmp_path, mapping):
    path = workbook(tmp_path, alerts={"R001": "❗要注意: 大声; 結果未入力"})
    set_cell(path, "顧客", "C001", "要注意メモ", "大声; 結果未入力")
    assert not digest(check(LocalWorkbook(path).read(), mapping), EVENING, mapping)  # nothing open: no message


def test_items_are_in_time_order_across_new_year(tmp_path, mapping):
    path = workbook(tmp_path, operations=[op("OP-JAN", "佐藤", due=dt.datetime(2027, 1, 5, 9, 0)),
                                          op("OP-NONE", "佐藤", due=None),
                                          op("OP-DEC", "佐藤", due=dt.datetime(2026, 12, 28, 17, 0))])
    sato = digest(check(LocalWorkbook(path).read(), mapping), EVENING, mapping).appends[0].get("body")
    assert sato.index("期限 12/28 17:00") < sato.index("期限 01/05 09:00") < sato.index("期限 なし")


def test_inactive_staff_and_empty_lists_get_nothing(tmp_path, mapping):
    staff = [["佐藤", "営業", "sato", "FALSE"], ["鈴木", "営業", "suzuki", "TRUE"]]
    path = workbook(tmp_path, staff=staff, operations=[op("OP1", "佐藤")])
    assert not digest(check(LocalWorkbook(path).read(), mapping), EVENING, mapping)


def test_a_caution_flag_is_never_told_not_even_in_the_digest(tmp_path, mapping):
    """Alert 5 (a caution person) is on the booking, "no notification" (the contract): left out of
    the salesperson's items by its whole text (a memo may hold "; "), the other alerts kept."""
    memo = "大声; 要録音"
    path = workbook(tmp_path, alerts={"R001": f"❗要注意: {memo}", "R002": f"結果未入力; ❗要注意: {memo}"})
    wb = openpyxl.load_workbook(path)
    ws = wb["顧客"]
    column = [c.value for c in ws[1]].index("要注意メモ") + 1
    for row in range(2, ws.max_row + 1):
        ws.cell(row, column, memo)
    wb.save(path)
    items = open_items(check(LocalWorkbook(path).read(), mapping), mapping)
    assert items["text"].str.contains("要注意|大声").sum() == 0
    assert [t.split("）: ")[1].split(" —")[0] for t in items["text"]] == ["結果未入力"]


def test_long_lists_are_cut_and_counted(tmp_path, mapping):
    ops = [op(f"OP{i:02d}", "佐藤") for i in range(mapping.digest.max_items + 5)]
    path = workbook(tmp_path, operations=ops)
    [a] = digest(check(LocalWorkbook(path).read(), mapping), EVENING, mapping).appends
    assert f"未対応: {len(ops)}件" in a.get("body") and "…ほか5件" in a.get("body")


def test_items_are_masked(tmp_path, mapping):
    path = workbook(tmp_path, alerts={"R001": "電話 090-1234-5678 に折り返し"})
    [a] = digest(check(LocalWorkbook(path).read(), mapping), EVENING, mapping).appends
    assert "090-1234-5678" not in a.get("body") and "090-****-5678" in a.get("body")


def test_open_items_without_any_pipeline_tab(tmp_path, mapping):
    path = write_book(tmp_path / "t.xlsx", team_tabs([customer("C001")], []))
    assert open_items(check(LocalWorkbook(path).read(), mapping), mapping).empty


def test_digest_run_sends_once_a_day_and_writes_only_its_notices(tmp_path, mapping):
    path = workbook(tmp_path, operations=[op("OP1", "佐藤")])
    sent = []
    run(LocalWorkbook(path), mapping, EVENING, lambda *a: sent.append(a), plan_with=digest_plan)
    run(LocalWorkbook(path), mapping, EVENING + pd.Timedelta(minutes=30), lambda *a: sent.append(a), plan_with=digest_plan)
    assert [(r, t) for r, t, *_ in sent] == [("佐藤", "本日の未対応")]
    assert {r["通知ID"] for r in tab_records(path, "通知")} == {"digest:佐藤:2026-11-20"}
    assert not tab_records(path, "リマインド")  # the rules did not run
    run(LocalWorkbook(path), mapping, EVENING + pd.Timedelta(days=1), lambda *a: sent.append(a), plan_with=digest_plan)
    assert len(sent) == 2


def test_the_digest_plans_as_reconcile_does_on_pandas_own_strings(tmp_path, mapping):
    """Its planner replaces reconcile in the run, so it runs under the same settings (tasks/pure_step.py):
    asked for Arrow-backed strings (which CI does not even have installed), it still plans."""
    path = workbook(tmp_path, operations=[op("OP1", "佐藤")])
    with pd.option_context("mode.string_storage", "pyarrow"):
        summary = run(LocalWorkbook(path), mapping, EVENING, lambda *a: None, dry_run=True, plan_with=digest_plan)
    assert [a.key for a in summary.plan.appends] == ["digest:佐藤:2026-11-20"]


def test_salesops_digest_command_through_a_route(tmp_path, mapping):
    from tests.test_notify import Receiver

    path = workbook(tmp_path, operations=[op("OP1", "佐藤")])
    receiver = Receiver()
    try:
        result = CliRunner().invoke(
            app, ["digest", "--workbook", str(path), "--now", "2026-11-20T18:00+09:00"],
            env={"SALESOPS_ROUTE_SATO": f"json://{receiver.base}/hook/sato", "PREFECT_API_URL": ""},
        )
        assert result.exit_code == 0, result.output
        [req] = receiver.at("/hook/sato")
        assert "L-Step操作" in json.loads(req["body"])["message"]
    finally:
        receiver.close()


def test_the_daily_digest_deployment_fits_the_flow():
    """prefect.yaml's daily-digest: its entrypoint is a Prefect flow that takes every parameter it is given."""
    root = Path(__file__).resolve().parent.parent
    [deployment] = [d for d in yaml.safe_load((root / "prefect.yaml").read_text(encoding="utf-8"))["deployments"]
                    if d["name"] == "daily-digest"]
    assert deployment["entrypoint"] == "flows/digest.py:digest_flow" and isinstance(digest_flow, Flow)
    parameters = digest_flow.validate_parameters(deployment["parameters"])  # raises on a parameter the flow lacks
    assert parameters["max_lateness_minutes"] == 60 and parameters["dry_run"] is False
