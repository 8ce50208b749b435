"""The Google Sheets adapter: real gspread over real HTTP to the stand-in (tests/sheets_standin.py).

Requests are counted by the stand-in. The service-account key is a throwaway RSA key made in the
test process (sheets_standin.service_account_info); nothing secret is committed.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import random
import time

import pandas as pd
import pytest
import requests
from typer.testing import CliRunner

from flows.cli import app
from flows.pipeline import run
from tasks.a1 import a1
from tasks.check import check
from tasks.mapping import Mapping, load_mapping
from tasks.reconcile import reconcile
from tasks.workbooks.credentials import CredentialsError, ServiceAccountKey, load_key
from tasks.workbooks.google import (
    Backoff,
    Fault,
    GoogleWorkbook,
    SheetsError,
    SheetsHTTPClient,
    SheetsUnavailable,
    parse_spreadsheets,
)
from tasks.workbooks.port import RunInfo, apply_plan
from tests import sheets_standin
from tests.conftest import NOW, booking, customer, team_tabs, write_book
from tests.sheets_standin import SheetsStandin, service_account_info
from tests.test_adapter_contract import grid

_ids = itertools.count(1)
KEY_MARKERS = ("BEGIN PRIVATE KEY", "private_key", "MII")


@pytest.fixture(scope="module")
def standin():
    with SheetsStandin() as server:
        yield server


def new_id() -> str:
    return f"1GoogleTest{next(_ids)}"


def book_for(standin: SheetsStandin, sids, mapping: Mapping, **options) -> GoogleWorkbook:
    options.setdefault("backoff", Backoff(sleep=lambda s: None))
    options.setdefault("timeout", (2, 10))
    return GoogleWorkbook(sids, service_account_info(standin.url), endpoint=standin.url, mapping=mapping, **options)


def api(standin: SheetsStandin, method: str, path: str, **kwargs) -> dict:
    answer = requests.request(method, standin.url + path, headers={"Authorization": "Bearer test"}, timeout=10, **kwargs)
    answer.raise_for_status()
    return answer.json()


def shrink(standin: SheetsStandin, sid: str, rows: int = 40, cols: int = 30) -> None:
    """Small grids keep the stand-in's whole-tab reads fast (it renders every grid cell)."""
    meta = api(standin, "GET", f"/v4/spreadsheets/{sid}")
    requests_ = [{"updateSheetProperties": {
        "properties": {"sheetId": s["properties"]["sheetId"], "gridProperties": {"rowCount": rows, "columnCount": cols}},
        "fields": "gridProperties(rowCount,columnCount)"}} for s in meta["sheets"]]
    api(standin, "POST", f"/v4/spreadsheets/{sid}:batchUpdate", json={"requests": requests_})
    standin.reset_counts()


def team():
    return team_tabs(
        [customer("C001", 電話番号="090-1234-5678"), customer("C002", "鈴木", "花子", 電話番号="電話なし")],
        [
            booking("R001", "C001", dt.datetime(2026, 11, 25, 14, 0)),
            booking("R002", "C001", "2026/11/10 10:00", "来店済み", 結果="成約"),
            booking("R003", "C002", "11/25 14:00"),
            booking("R005", "C002", "2026/11/12 10:00", "キャンセル料未払い"),
        ],
    )


TITLES = [t.title for t in load_mapping().tabs.values()]


def grid_cells(standin: SheetsStandin, sid: str) -> int:
    """Every tab's rows x columns, as Google counts them against the cell limit."""
    return sum(s["properties"]["gridProperties"]["rowCount"] * s["properties"]["gridProperties"]["columnCount"]
               for s in api(standin, "GET", f"/v4/spreadsheets/{sid}")["sheets"])


def cells(standin: SheetsStandin, sid: str) -> dict[str, list[list]]:
    """Every tab the mappings name, as the stand-in holds it (no HTTP: faults count requests)."""
    out = {}
    for title in TITLES:
        try:
            out[title] = grid(standin.tab_values(sid, title))
        except KeyError:
            continue
    return out


class Steps:
    """The pipeline's step hook: counts requests per step, and (memo=True) computes check and
    reconcile once per distinct input, so that runs that read the same sheet only redo the IO."""

    def __init__(self, standin: SheetsStandin | None = None, memo: bool = False):
        self.standin, self.memo = standin, memo
        self.requests: dict[str, int] = {}
        self._frames: dict[str, object] = {}
        self._plans: dict[tuple, object] = {}

    def __call__(self, fn):
        name = fn.__name__

        def counted(*args):
            before = self.standin.count() if self.standin else 0
            try:
                return self._memo(fn, args) if self.memo else fn(*args)
            finally:
                if self.standin:
                    self.requests[name] = self.requests.get(name, 0) + self.standin.count() - before

        return counted

    def _memo(self, fn, args):
        if fn.__name__ == "check_step":
            key = repr((sorted(args[0].items()), args[2:]))  # the cells and how full the workbook is
            if key not in self._frames:
                self._frames[key] = fn(*args)
            return self._frames[key]
        if fn.__name__ == "reconcile_step":
            key = (id(args[0]), args[1], args[3])
            if key not in self._plans:
                self._plans[key] = fn(*args)
            return self._plans[key]
        return fn(*args)


def quiet(*message):
    """A channel that accepts everything."""


# --------------------------------------------------------------------------- reading


def test_a_read_is_two_requests_and_guesses_no_type(standin, mapping):
    sid = new_id()
    tabs = team_tabs([customer("0012", 電話番号="09012345678", 初回登録日=dt.date(2026, 4, 1), 個別メモ="=1+1")],
                     [booking("R001", "0012", dt.datetime(2026, 11, 25, 14, 0), お礼LINE=True)])
    tabs["予約"].append(booking("R002", "0012", 12, "仮予約中"))  # a number in a date column: not a date
    tabs["メモ"] = [["not in the mappings"]]
    standin.add_spreadsheet(sid, tabs)
    standin.reset_counts()
    raw = book_for(standin, sid, mapping).read()
    assert standin.count("spreadsheets.get", sid) == 1 and standin.count("values.batchGet", sid) == 1
    assert standin.count(spreadsheet_id=sid) == 2
    assert "メモ" not in raw  # only the tabs the mappings name
    row = dict(zip(raw["顧客"][0], raw["顧客"][1], strict=False))
    assert row["お客様番号"] == "0012" and row["電話番号"] == "09012345678"
    assert row["個別メモ"] == 2  # a formula a person typed reads as its value, as staff see it
    assert row["初回登録日"] == dt.datetime(2026, 4, 1)
    first, second = (dict(zip(raw["予約"][0], r, strict=False)) for r in raw["予約"][1:])
    assert first["開始日時"] == dt.datetime(2026, 11, 25, 14, 0) and first["お礼LINE"] is True
    assert second["開始日時"] == 12  # check reports it (out of range), as for the .xlsx


class _NewYork(sheets_standin.Spreadsheet):
    """A spreadsheet whose settings say America/New_York (the stand-in answers Asia/Tokyo otherwise)."""

    def metadata(self) -> dict:
        answer = super().metadata()
        answer["properties"]["timeZone"] = "America/New_York"
        return answer


def test_a_spreadsheet_in_another_time_zone_is_converted_both_ways(standin, mapping):
    sid = new_id()
    tabs = team_tabs([customer("C001")], [booking("R001", "C001", dt.datetime(2026, 11, 25, 0, 0))])  # 00:00 in NY
    tabs["予約"][0] = [*tabs["予約"][0], "終了日時"]
    standin.add_spreadsheet(sid, tabs)
    standin._book(sid).__class__ = _NewYork  # test-only: the stand-in has no time-zone setting
    book = book_for(standin, sid, mapping)
    raw = book.read()
    assert book.time_zones == {"main": "America/New_York"}
    start = dict(zip(raw["予約"][0], raw["予約"][1], strict=False))["開始日時"]
    assert start == dt.datetime(2026, 11, 25, 14, 0)  # the same instant, in Tokyo
    plan = reconcile(check(raw, mapping), NOW, mapping)
    end = next(e for e in plan.edits if e.field == "end")
    assert end.new == pd.Timestamp("2026-11-25T15:30", tz="Asia/Tokyo")
    apply_plan(book, plan, mapping, RunInfo("tz", NOW))
    row = dict(zip(*standin.tab_values(sid, "予約")[:2], strict=False))
    assert row["終了日時"] == dt.datetime(2026, 11, 25, 1, 30)  # written as New York wall time
    again = reconcile(check(book_for(standin, sid, mapping).read(), mapping), NOW, mapping)
    assert not [e for e in again.edits if e.tab == "bookings" and e.field == "end"]


# --------------------------------------------------------------------------- the request budget


def counted_runs(standin: SheetsStandin, mapping: Mapping, tabs: dict) -> tuple[dict, dict]:
    sid = new_id()
    standin.add_spreadsheet(sid, tabs)
    standin.reset_counts()
    first, second = Steps(standin), Steps(standin)
    run(book_for(standin, sid, mapping), mapping, NOW, quiet, run_id="b1", step=first)
    run(book_for(standin, sid, mapping), mapping, NOW, quiet, run_id="b2", step=second)
    return first.requests, second.requests


def test_the_request_budget_holds_whatever_the_number_of_rows(standin, mapping):
    small = counted_runs(standin, mapping, team())
    many = team_tabs(
        [customer(f"C{i:03d}", f"山田{i}", 電話番号=f"090-1234-{i:04d}") for i in range(60)],
        [booking(f"R{i:03d}", f"C{i % 60:03d}", dt.datetime(2026, 11, 21 + i % 9, 10 + i % 8, 0)) for i in range(90)],
    )
    large = counted_runs(standin, mapping, many)
    for first, second in (small, large):
        assert first["read_step"] == 2  # metadata + one batchGet
        assert first["write_step"] == 2  # re-read + one batchUpdate: new tabs and columns, the outbox's attempts in it
        assert first["read_step"] + first["write_step"] <= 5  # the budget for a run that changes
        assert first["tell_step"] == 2  # after sending: re-read + one write marking 送信済
        assert sum(second.values()) == 2  # nothing changed: metadata + one batchGet
    assert small == large  # the same, for 4 bookings or 90


def test_the_tabs_a_run_creates_are_as_wide_as_their_headers(standin, mapping):
    """Google counts every grid cell against a spreadsheet's 10M-cell limit, and 変更履歴 grows by a
    row per change: a tab the pipeline creates takes its headers' width, not the UI's 26 columns."""
    sid = new_id()
    standin.add_spreadsheet(sid, team())
    run(book_for(standin, sid, mapping), mapping, NOW, quiet)
    grids = {s["properties"]["title"]: s["properties"]["gridProperties"]
             for s in api(standin, "GET", f"/v4/spreadsheets/{sid}")["sheets"]}
    created = {t.title: len(t.columns) for t in mapping.tabs.values() if t.kind == "pipeline"}
    assert len(created) >= 8 and {title: grids[title]["columnCount"] for title in created} == created
    assert len(standin.tab_values(sid, mapping.tabs["changelog"].title)) > 1  # its rows went in, 8 wide


def test_a_write_past_googles_cell_limit_is_refused_whole_and_the_error_says_what_to_do(standin, mapping):
    """Google counts every tab's whole grid against a spreadsheet's limit and refuses a write that
    passes it; the run stops saying how to make room, and nothing is written."""
    sid = new_id()
    standin.add_spreadsheet(sid, team())
    used = grid_cells(standin, sid)
    standin.add_spreadsheet(sid, team(), cell_limit=used + 500)  # room for no new tab (100 rows each)
    before = cells(standin, sid)
    with pytest.raises(SheetsError) as refused:
        run(book_for(standin, sid, mapping), mapping, NOW, quiet)
    text = str(refused.value)
    assert f"above the limit of {used + 500} cells" in text and "変更履歴" in text and "was not applied" in text
    assert cells(standin, sid) == before
    standin.add_spreadsheet(sid, team(), cell_limit=used + 20_000)  # room for the new tabs: the same run goes through
    assert run(book_for(standin, sid, mapping), mapping, NOW, quiet).plan


def test_a_spreadsheet_near_googles_cell_limit_is_said_after_each_run(standin, mapping):
    """Past the limit every write is refused, run after run: the run says so from 80% on, while there
    is room to move 変更履歴 out (in the summary, the CLI's output and the flow's summary artifact)."""
    from rich.console import Console

    from flows.report import print_summary
    from flows.runs import summary_markdown

    sid = new_id()
    standin.add_spreadsheet(sid, team())
    assert run(book_for(standin, sid, mapping), mapping, NOW, quiet).notes == []
    memo = {"addSheet": {"properties": {"title": "メモ", "gridProperties": {"rowCount": 310_000, "columnCount": 26}}}}
    api(standin, "POST", f"/v4/spreadsheets/{sid}:batchUpdate", json={"requests": [memo]})  # staff's own tab, 8.06M cells
    used, log = grid_cells(standin, sid), mapping.tabs["changelog"].title
    for dry_run in (True, False):
        logged = len(standin.tab_values(sid, log))
        summary = run(book_for(standin, sid, mapping), mapping, NOW, quiet, dry_run=dry_run)
        logged = len(standin.tab_values(sid, log)) - logged  # the real run logs 運営's notice (below)
        [note] = summary.notes
        noted = int(note.removeprefix("spreadsheet main holds ").split()[0].replace(",", ""))
        assert used <= noted <= used + 8 * logged  # a log row counts as a grown row: at most (Google may fill an empty one)
        assert f" of Google's 10,000,000 cells ({noted / 10**7:.0%}): " in note
        assert "変更履歴" in note and "--spreadsheet ALIAS=ID" in note
    [told] = [d for d in summary.deliveries if d.notice_ids[0].startswith("workbook_nearly_full:")]  # 運営, by the outbox
    assert told.ok and told.notice_ids == ("workbook_nearly_full:cells:main:80:2026-11",)
    console = Console(record=True, width=400)
    print_summary(summary, mapping, console, show_diff=False)
    assert f"warning: {note}" in console.export_text()
    assert f"- **warning**: {note}" in summary_markdown(summary, "link").splitlines()  # the flow's artifact


def test_the_warning_counts_the_rows_this_run_appended_to_the_change_log(standin, mapping):
    """Google places 変更履歴's rows and grows its grid; the adapter does not read the log back, so it
    counts what it appended: the run that crosses 80% says so, not the next one."""
    sid = new_id()
    standin.add_spreadsheet(sid, team())
    run(book_for(standin, sid, mapping), mapping, NOW, quiet)
    rows = int(0.8 * 10**7) - grid_cells(standin, sid) - 4  # 4 cells short of 80%: one log row (8 cells) crosses it
    memo = {"addSheet": {"properties": {"title": "メモ", "gridProperties": {"rowCount": rows, "columnCount": 1}}}}
    api(standin, "POST", f"/v4/spreadsheets/{sid}:batchUpdate", json={"requests": [memo]})
    assert run(book_for(standin, sid, mapping), mapping, NOW, quiet, dry_run=True).notes == []
    header = standin.tab_values(sid, "予約")[0]
    standin.set_cell(sid, "予約", a1(2, header.index("ステータス") + 1), "キャンセル")  # a person cancels R001
    summary = run(book_for(standin, sid, mapping), mapping, NOW, quiet)
    assert summary.report.changes and len(summary.notes) == 1 and "(80%)" in summary.notes[0]


# --------------------------------------------------------------------------- a person at work


def test_a_person_sorting_and_typing_during_the_write_loses_nothing(standin, mapping):
    sid = new_id()
    bookings = [booking(f"R00{i}", "C001", dt.datetime(2026, 11, 20 + i, 10, 0)) for i in range(1, 6)]
    tabs = team_tabs([customer("C001")], bookings)
    tabs["予約"][0] = [*tabs["予約"][0], "終了日時"]
    standin.add_spreadsheet(sid, tabs)
    book = book_for(standin, sid, mapping)
    plan = reconcile(check(book.read(), mapping), NOW, mapping)

    def person(s: SheetsStandin) -> None:  # just before the write's re-read is served
        s.sort_rows(sid, "予約", 1, reverse=True)
        row = [r[0] for r in s.tab_values(sid, "予約")].index("R002") + 1
        s.set_cell(sid, "予約", f"M{row}", "手入力")

    standin.before("values.batchGet", person)
    report = apply_plan(book, plan, mapping, RunInfo("p", NOW))
    assert [s.key for s in report.skipped if s.why == "changed since read"] == ["R002"]
    rows = standin.tab_values(sid, "予約")
    assert [r[0] for r in rows[1:]] == ["R005", "R004", "R003", "R002", "R001"]
    for r in rows[1:]:
        assert r[12] == ("手入力" if r[0] == "R002" else r[4] + dt.timedelta(minutes=90)), r


def test_a_column_a_person_adds_before_the_write_is_not_overwritten(standin, mapping):
    sid = new_id()
    standin.add_spreadsheet(sid, team())
    book = book_for(standin, sid, mapping)
    plan = reconcile(check(book.read(), mapping), NOW, mapping)
    standin.set_cell(sid, "予約", "M1", "備考")  # where the pipeline's first new column would go
    standin.set_cell(sid, "予約", "M2", "VIP")
    apply_plan(book, plan, mapping, RunInfo("c", NOW))
    header, first = standin.tab_values(sid, "予約")[:2]
    assert header[12] == "備考" and first[12] == "VIP"
    assert header.count("終了日時") == 1 and header.index("終了日時") > 12
    assert first[header.index("終了日時")] == dt.datetime(2026, 11, 25, 15, 30)


# --------------------------------------------------------------------------- faults


SLOW = 0.9  # seconds a "slow" request is served late; the client's read timeout is shorter
FAULTS = ("429", "500", f"slow:{SLOW}")  # at every request position; more kinds at the writes
WRITE_FAULTS = ("503", "drop", "hang:0.7")


class Snapshots:
    """The states a run goes through: before each values.batchGet (so, after each write)."""

    def __init__(self, standin: SheetsStandin, sid: str):
        self.seen: list[dict] = []
        self.active = True
        standin.before("values.batchGet", self._take, once=False)
        self.sid = sid

    def _take(self, standin: SheetsStandin) -> None:
        if self.active:
            self.seen.append(cells(standin, self.sid))


def converged(got: dict, want: dict, mapping: Mapping) -> bool:
    """The same sheet, except what a rerun adds by design after a crash between telling steps: the
    outbox's attempt count and the change log's rows about the outbox."""
    outbox, log = mapping.tabs["outbox"].title, mapping.tabs["changelog"].title
    for title, rows in want.items():
        mine = got.get(title)
        if title == outbox:
            drop = rows[0].index("試行回数") if rows else None
            strip = (lambda g, d=drop: [[v for i, v in enumerate(r) if i != d] for r in g])  # noqa: E731
            if strip(mine) != strip(rows):
                return False
        elif title == log:
            tab_col = rows[0].index("タブ")
            if [r for r in mine if r[tab_col] != outbox] != [r for r in rows if r[tab_col] != outbox]:
                return False
        elif mine != rows:
            return False
    return set(got) == set(want)


def settle(kind: str, since: float) -> None:
    """A slow write is still served after the client gave up (as at Google): let it land."""
    if kind.startswith("slow"):
        time.sleep(max(0.0, since + SLOW + 0.2 - time.monotonic()))


def test_faults_at_every_request_position_end_complete_or_clean_and_a_rerun_converges(standin, mapping, tmp_path):
    path = write_book(tmp_path / "team.xlsx", team())
    memo = Steps(memo=True)

    def fresh() -> str:
        sid = new_id()
        standin.load_xlsx(sid, path)
        shrink(standin, sid)
        return sid

    def book(sid: str) -> GoogleWorkbook:
        backoff = Backoff(base=0.05, quota_base=0.05, sleep=time.sleep, rng=random.Random(3))
        return book_for(standin, sid, mapping, timeout=(2, 0.6), backoff=backoff)

    clean = fresh()
    states = Snapshots(standin, clean)
    run(book(clean), mapping, NOW, quiet, run_id="f", step=memo)
    states.active = False
    final = cells(standin, clean)
    allowed = [*states.seen[1:], final]  # never half: as before a write, or after it
    positions = standin.count(spreadsheet_id=clean)
    assert positions >= 6  # read 2, write 2 (the attempts in it), tell 2 (mark 送信済)
    cases = [(p, k) for p in range(1, positions + 1) for k in FAULTS]
    writes = [i + 1 for i, r in enumerate(r for r in standin.requests if r["spreadsheet_id"] == clean)
              if r["verb"] == "spreadsheets.batchUpdate"]
    cases += [(p, k) for p in writes for k in WRITE_FAULTS]
    outcomes = {}
    for position, kind in cases:
        sid = fresh()
        start = cells(standin, sid)
        standin.inject(position, kind)
        since = time.monotonic()
        try:
            run(book(sid), mapping, NOW, quiet, run_id="f", step=memo)
            outcome = "complete"
        except SheetsError as exc:
            outcome = "failed"
            message = str(exc)
            assert "\n" not in message and not any(m in message for m in KEY_MARKERS), message
            settle(kind, since)
            assert cells(standin, sid) in [start, *allowed], (position, kind, message)
            run(book(sid), mapping, NOW, quiet, run_id="f", step=memo)  # the rerun
        settle(kind, since)
        assert converged(cells(standin, sid), final, mapping), (position, kind, outcome)
        outcomes[(position, kind)] = outcome
    assert all(outcomes[(p, k)] == "complete" for p, k in outcomes if k in ("429", "500", "503"))
    assert "failed" in outcomes.values()  # a lost or timed-out write is never sent twice: it fails cleanly


def test_a_write_that_times_out_but_lands_is_seen_and_never_sent_twice(standin, mapping):
    sid = new_id()
    tabs = team()
    errors = mapping.tabs["errors"]
    stale = ["予約!R001!開始日時", "予約", "E2", "R001", "開始日時", "x", "古い問題",
             dt.datetime(2026, 11, 19, 10, 0), dt.datetime(2026, 11, 19, 10, 0)]
    tabs[errors.title] = [errors.headers, stale]  # a fixed problem: the write deletes its row
    standin.add_spreadsheet(sid, tabs)
    shrink(standin, sid)
    book = book_for(standin, sid, mapping, timeout=(2, 0.3),
                    backoff=Backoff(base=0.4, sleep=time.sleep, rng=random.Random(1)))
    raw = book.read()
    plan = reconcile(check(raw, mapping), NOW, mapping)
    assert plan.deletes
    standin.inject(2, "slow:0.8")  # the re-read, then the write: served 0.8 s late, after the client gave up
    report = apply_plan(book, plan, mapping, RunInfo("slow", NOW))
    assert report.rows_deleted == 1
    assert standin.count("spreadsheets.batchUpdate", sid) == 1  # looked, saw it landed, never resent
    assert {r[0] for r in standin.tab_values(sid, errors.title)[1:]} == {
        a.key for a in plan.appends if a.tab == "errors"}


def test_retries_run_out_in_one_clean_line(standin, mapping):
    sid = new_id()
    standin.add_spreadsheet(sid, team())
    for n in range(1, 6):
        standin.inject(n, "503")
    book = book_for(standin, sid, mapping, retries=5)
    with pytest.raises(SheetsUnavailable) as err:
        run(book, mapping, NOW, quiet)
    message = str(err.value)
    assert "\n" not in message and "503" in message and "5 attempts" in message and "main" in message
    assert not any(m in message for m in KEY_MARKERS)
    assert len(book.backoff.waits) == 4  # 5 attempts, 4 pauses


def test_backoff_is_bounded_capped_and_jittered():
    backoff = Backoff(attempts=6, base=1, quota_base=8, cap=30, sleep=lambda s: None, rng=random.Random(7))
    server, quota = Fault("HTTP 503", answered=True), Fault("HTTP 429", quota=True, answered=True)
    assert [backoff.ceiling(n, server) for n in range(1, 6)] == [1, 2, 4, 8, 16]
    assert [backoff.ceiling(n, quota) for n in range(1, 6)] == [8, 16, 30, 30, 30]
    for n in range(1, 6):
        backoff.pause(n, quota)
    assert all(0 <= w <= c for w, c in zip(backoff.waits, [8, 16, 30, 30, 30], strict=True))
    assert len(set(backoff.waits)) == 5  # full jitter: no two runs wait in lockstep


def test_the_http_client_rewrites_only_with_an_endpoint_and_always_has_a_timeout(standin):
    client = SheetsHTTPClient(sheets_standin.standin_credentials(standin.url))
    assert client.timeout is not None
    url = "https://sheets.googleapis.com/v4/spreadsheets/x"
    assert client.url(url) == url
    client.configure("http://127.0.0.1:9/", None, Backoff())
    assert client.url(url) == "http://127.0.0.1:9/v4/spreadsheets/x" and client.timeout is not None


def test_the_token_flow_goes_to_the_endpoint_too(standin, mapping, tmp_path):
    sid = new_id()
    standin.add_spreadsheet(sid, team())
    info = service_account_info("https://oauth2.googleapis.com")  # as Google issues it
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(info))
    before = standin.count("token")
    GoogleWorkbook(sid, str(key_file), endpoint=standin.url, mapping=mapping).read()
    assert standin.count("token") == before + 1


def test_an_unshared_or_unknown_spreadsheet_is_one_line_naming_what_to_do(standin, mapping):
    with pytest.raises(SheetsError, match=r"not found; check the id"):
        book_for(standin, "1NoSuchSheet", mapping).read()


# --------------------------------------------------------------------------- the change log


def old_log(mapping: Mapping, rows: int) -> list[list]:
    """A 変更履歴 of earlier runs (synthetic)."""
    header = mapping.tabs["changelog"].headers
    return [header, *([f"old{i}", dt.datetime(2026, 11, 1, 10, 0), "予約", f"R{i:04d}", "終了日時", "", "x", "終了日時"]
                      for i in range(rows))]


def test_the_change_log_is_read_by_its_header_and_appended_to_where_it_ends_at_write_time(standin, mapping):
    """変更履歴 grows by a row per changed cell and no rule reads it: never downloaded, only its header.
    Its rows go after the last row with data as the write lands, below a row a person added meanwhile."""
    sid, log = new_id(), mapping.tabs["changelog"].title
    standin.add_spreadsheet(sid, {**team(), log: old_log(mapping, 300)})
    standin.reset_counts()
    standin.before("spreadsheets.batchUpdate", lambda s: s.set_cell(sid, log, "A303", "手で追記"))  # after the re-read
    summary = run(book_for(standin, sid, mapping), mapping, NOW, quiet, run_id="new")
    ranges = [r for q in standin.requests if q["verb"] == "values.batchGet" for r in q["ranges"] if log in r]
    assert len(ranges) >= 3 and set(ranges) == {f"'{log}'!1:1"}  # the read, the write's and the tell's re-reads
    rows = standin.tab_values(sid, log)
    assert grid(rows[:301]) == grid(old_log(mapping, 300)) and not any(rows[301])
    assert rows[302] == ["手で追記"] and all(r[0] == "new" for r in rows[303:])
    assert len(rows[303:]) >= len(summary.report.changes) > 0


@pytest.mark.parametrize("fault", ["500", "slow:0.8"])
def test_a_failed_change_log_write_alone_in_its_spreadsheet_is_resent_or_seen_landed_once(standin, mapping, fault):
    """The log's spreadsheet gets only appended rows, which the write's look cannot compare by header:
    it looks for them. A 500 (not applied) is sent again; a slow write (landed late) is not."""
    log_spec = mapping.tabs["changelog"].model_copy(update={"spreadsheet": "log"})
    placed = mapping.model_copy(update={"tabs": {**mapping.tabs, "changelog": log_spec}})
    logs = {}
    for case in ("clean", fault):
        main, log = new_id(), new_id()
        standin.add_spreadsheet(main, team())
        standin.add_spreadsheet(log, {log_spec.title: old_log(mapping, 5)})
        book = book_for(standin, {"main": main, "log": log}, placed, timeout=(2, 0.3),
                        backoff=Backoff(base=0.4, sleep=time.sleep, rng=random.Random(1)))
        if case != "clean":
            standin.inject(2, fault, verb="spreadsheets.batchUpdate")  # main's write, then the log's
        since = time.monotonic()
        run(book, placed, NOW, quiet, run_id="L")
        settle(fault if case != "clean" else "", since)
        logs[case] = standin.tab_values(log, log_spec.title)
        assert standin.count("spreadsheets.batchUpdate", log) == (3 if case == "500" else 2)  # write, tell (+ the resend)
    assert len(logs["clean"]) > 6 and logs[fault] == logs["clean"]


def test_a_writes_growth_counts_every_way_a_batch_grows_the_grids():
    """New tabs whole; rows and columns appended (each at the width or height the tab has by then);
    log rows appended as whole rows of their tab."""
    from zoneinfo import ZoneInfo

    from tasks.workbooks.google import _Batch, _Book, _growth, _Tab

    book = _Book("main", "sid", ZoneInfo("Asia/Tokyo"), {"予約": _Tab(1, 10, 5)})
    batch = _Batch(new_tabs={"変更履歴": _Tab(2, 100, 8)})
    batch.requests += [
        {"addSheet": {"properties": {"sheetId": 2}}},
        {"appendDimension": {"sheetId": 1, "dimension": "COLUMNS", "length": 3}},  # 3 x 10 rows
        {"appendDimension": {"sheetId": 1, "dimension": "ROWS", "length": 20}},  # 20 x 8 columns by now
        {"updateCells": {"start": {"sheetId": 1}}},
        {"appendDimension": {"sheetId": 2, "dimension": "ROWS", "length": 50}},  # 50 x 8
        {"appendCells": {"sheetId": 2, "rows": [{}] * 7}},  # 7 x 8
    ]
    assert _growth(book, batch) == 100 * 8 + 3 * 10 + 20 * 8 + 50 * 8 + 7 * 8


def test_a_log_spreadsheet_without_room_stops_the_run_before_the_main_one_is_written(standin, mapping):
    """Each spreadsheet's write is atomic, the run's two are not: with 変更履歴 apart, its write (sent
    last) refused at the cell limit would leave the main spreadsheet's changes without their log rows.
    Each write is measured against the limit before any is sent; then the run goes through once the
    log has room."""
    log_spec = mapping.tabs["changelog"].model_copy(update={"spreadsheet": "log"})
    placed = mapping.model_copy(update={"tabs": {**mapping.tabs, "changelog": log_spec}})
    main, log = new_id(), new_id()
    standin.add_spreadsheet(main, team())
    tabs = {log_spec.title: old_log(mapping, 5)}
    standin.add_spreadsheet(log, tabs, fitted=tabs)
    rows = 10**7 - grid_cells(standin, log) - 8 * 10  # a staff tab leaves the log room for 10 rows (8 wide)
    memo = {"addSheet": {"properties": {"title": "メモ", "gridProperties": {"rowCount": rows, "columnCount": 1}}}}
    api(standin, "POST", f"/v4/spreadsheets/{log}:batchUpdate", json={"requests": [memo]})
    before = {sid: cells(standin, sid) for sid in (main, log)}
    standin.reset_counts()
    with pytest.raises(SheetsError) as refused:
        run(book_for(standin, {"main": main, "log": log}, placed), placed, NOW, quiet)
    assert "spreadsheet log: this run's write would take its grids from 9,999,920 to" in str(refused.value)
    assert "nothing was written to any spreadsheet" in str(refused.value) and "--spreadsheet ALIAS=ID" in str(refused.value)
    assert {sid: cells(standin, sid) for sid in (main, log)} == before
    assert standin.count("spreadsheets.batchUpdate") == 0
    standin.add_spreadsheet(log, tabs, fitted=tabs)  # the team gave the log room
    summary = run(book_for(standin, {"main": main, "log": log}, placed), placed, NOW, quiet)
    assert len(standin.tab_values(log, log_spec.title)) >= 6 + len(summary.report.changes) > 16  # (and the tell's)


def test_one_spreadsheet_is_left_to_googles_exact_count(standin, mapping):
    """The check before sending counts a log row as a new grid row, which over-counts when the log
    tab has empty rows at its bottom (one made in Google's UI has 1000). One spreadsheet's write is
    atomic on its own, so there Google's exact count decides: a run that fits goes through."""
    log = mapping.tabs["changelog"].title

    def spreadsheet(room: int | None) -> str:
        sid = new_id()
        standin.add_spreadsheet(sid, {**team(), log: [mapping.tabs["changelog"].headers]})  # 1000 x 26, by a person
        if room is not None:
            rows = 10**7 - grid_cells(standin, sid) - room
            memo = {"addSheet": {"properties": {"title": "メモ", "gridProperties": {"rowCount": rows, "columnCount": 1}}}}
            api(standin, "POST", f"/v4/spreadsheets/{sid}:batchUpdate", json={"requests": [memo]})
        return sid

    sid = spreadsheet(None)
    used = grid_cells(standin, sid)
    summary = run(book_for(standin, sid, mapping), mapping, NOW, quiet)
    growth = grid_cells(standin, sid) - used  # the new tabs; the log rows went into empty rows
    assert summary.report.changes and growth > 0
    sid = spreadsheet(growth)  # room for exactly that
    assert run(book_for(standin, sid, mapping), mapping, NOW, quiet).report.changes
    assert grid_cells(standin, sid) == 10**7


def test_marks_of_messages_sent_land_even_when_the_log_spreadsheet_has_no_room_for_their_rows(standin, mapping):
    """The run's plan is written whole or not at all, but the tell's marks record messages that have
    gone: 送信済 must land in the main spreadsheet even if the log cannot take its rows, or the next
    run sends them again."""
    log_spec = mapping.tabs["changelog"].model_copy(update={"spreadsheet": "log"})
    placed = mapping.model_copy(update={"tabs": {**mapping.tabs, "changelog": log_spec}})
    tabs = {log_spec.title: old_log(mapping, 5)}

    def pair(room_rows: int | None) -> tuple[str, str]:
        main, log = new_id(), new_id()
        standin.add_spreadsheet(main, team())
        standin.add_spreadsheet(log, tabs, fitted=tabs)
        if room_rows is not None:
            rows = 10**7 - grid_cells(standin, log) - 8 * room_rows
            memo = {"addSheet": {"properties": {"title": "メモ", "gridProperties": {"rowCount": rows, "columnCount": 1}}}}
            api(standin, "POST", f"/v4/spreadsheets/{log}:batchUpdate", json={"requests": [memo]})
        return main, log

    main, log = pair(None)  # how many log rows the plan's write and the marks take
    assert run(book_for(standin, {"main": main, "log": log}, placed), placed, NOW, quiet).deliveries
    reasons = [r[7] for r in standin.tab_values(log, log_spec.title)[6:]]
    planned, marks = sum(r != "送信結果" for r in reasons), sum(r == "送信結果" for r in reasons)
    assert planned and marks
    main, log = pair(planned + 1)  # room for the plan's log rows (and 運営's notice of a full log), not the marks'
    sent: list = []
    with pytest.raises(SheetsError, match="cell limit"):
        run(book_for(standin, {"main": main, "log": log}, placed), placed, NOW, lambda *m: sent.append(m))
    assert any("スプレッドシート『test』の使用量が上限の99%" in body for _, _, body, _ in sent)  # 運営, in one message
    outbox = [dict(zip(r[0], x, strict=False)) for r in [standin.tab_values(main, "通知")] for x in r[1:]]
    assert outbox and {o["状態"] for o in outbox} == {"送信済"}
    memo = next(s["properties"]["sheetId"] for s in api(standin, "GET", f"/v4/spreadsheets/{log}")["sheets"]
                if s["properties"]["title"] == "メモ")
    api(standin, "POST", f"/v4/spreadsheets/{log}:batchUpdate", json={"requests": [{"deleteSheet": {"sheetId": memo}}]})
    again: list = []
    run(book_for(standin, {"main": main, "log": log}, placed), placed, NOW, lambda *m: again.append(m))
    assert again == []  # nothing sent twice


# --------------------------------------------------------------------------- several spreadsheets


def test_tabs_live_in_the_spreadsheets_the_mappings_name(standin, mapping):
    links = mapping.tabs["payment_links"].model_copy(update={"spreadsheet": "links"})
    placed = mapping.model_copy(update={"tabs": {**mapping.tabs, "payment_links": links}})
    main, other = new_id(), new_id()
    standin.add_spreadsheet(main, team())
    standin.add_spreadsheet(other, {"シート1": []})
    with pytest.raises(SheetsError, match="--spreadsheet links=ID"):
        book_for(standin, main, placed)
    standin.reset_counts()
    steps = Steps(standin)
    run(book_for(standin, {"main": main, "links": other}, placed), placed, NOW, quiet, run_id="m", step=steps)
    requests_ = standin.count(spreadsheet_id=other)
    assert "決済リンク依頼" not in cells(standin, main)
    link_rows = cells(standin, other)["決済リンク依頼"]
    assert [r[0] for r in link_rows[1:]] == ["PL-R002"]
    assert requests_ <= 3  # metadata (no tab to read yet), one batchUpdate; budget 5
    standin.reset_counts()
    again = run(book_for(standin, {"main": main, "links": other}, placed), placed, NOW, quiet, run_id="m2")
    assert not again.plan
    assert standin.count(spreadsheet_id=other) == 2 and standin.count(spreadsheet_id=main) == 2


def test_spreadsheet_ids_and_urls_are_parsed():
    url = "https://docs.google.com/spreadsheets/d/1AbC-d_9/edit#gid=0"
    assert parse_spreadsheets([url, "links=1Links"]) == {"main": "1AbC-d_9", "links": "1Links"}
    assert parse_spreadsheets("1Main,links=1Links") == {"main": "1Main", "links": "1Links"}
    with pytest.raises(SheetsError):
        parse_spreadsheets([])


# --------------------------------------------------------------------------- credentials


def test_credentials_from_a_file_or_an_environment_variable(tmp_path):
    """The third source, a Prefect Secret block, is exercised on a real server by tests/test_e2e_prefect.py."""
    info = service_account_info("http://127.0.0.1:1")
    path = tmp_path / "key.json"
    path.write_text(json.dumps(info))
    key = load_key(path)
    assert key.email == info["client_email"]
    assert info["private_key"] not in repr(key) and "private_key" not in str(key)
    assert list(key.credentials().scopes) == ["https://www.googleapis.com/auth/spreadsheets"]
    assert load_key(None, environ={"SALESOPS_GOOGLE_CREDENTIALS": json.dumps(info)}).source.endswith(
        "$SALESOPS_GOOGLE_CREDENTIALS")
    assert load_key("env:MY_KEY", environ={"MY_KEY": json.dumps(info)}).email == info["client_email"]


@pytest.mark.parametrize("content, why", [
    ("", "variable is not set"),
    ("{not json, -----BEGIN PRIVATE KEY-----", "not valid JSON"),
    ('{"type": "authorized_user", "client_id": "x"}', "missing client_email, private_key, token_uri"),
])
def test_bad_credentials_name_the_source_never_the_content(content, why):
    with pytest.raises(CredentialsError) as err:
        load_key("env:SHEETS_KEY", environ={"SHEETS_KEY": content})
    message = str(err.value)
    assert why in message and "$SHEETS_KEY" in message
    assert "BEGIN" not in message and "{" not in message


def test_an_unreadable_private_key_is_not_echoed(tmp_path):
    info = service_account_info("http://127.0.0.1:1") | {"private_key": "-----BEGIN PRIVATE KEY-----\nSECRETSTUFF\n"}
    key = ServiceAccountKey(info, "file key.json")
    with pytest.raises(CredentialsError) as err:
        key.credentials()
    assert "SECRETSTUFF" not in str(err.value) and "key.json" in str(err.value)
    missing = tmp_path / "nope.json"
    with pytest.raises(CredentialsError, match="no such file"):
        load_key(missing)


# --------------------------------------------------------------------------- the command line


def test_the_command_line_reconciles_a_google_sheet(standin, tmp_path):
    sid = new_id()
    standin.add_spreadsheet(sid, team())
    key = json.dumps(service_account_info("https://oauth2.googleapis.com"))
    runner = CliRunner()
    env = {"SALESOPS_SHEETS_ENDPOINT": standin.url, "SALESOPS_GOOGLE_CREDENTIALS": key, "PREFECT_API_URL": ""}
    result = runner.invoke(app, ["reconcile", "--spreadsheet", sid, "--now", "2026-11-20T10:00+09:00"], env=env)
    assert result.exit_code == 0, result.output
    assert "終了日時" in standin.tab_values(sid, "予約")[0]
    assert key not in result.output and "BEGIN" not in result.output
    # a failure is one line on stderr, exit code 2, no stack trace and no key
    key_file = tmp_path / "key.json"
    key_file.write_text(key)
    for n in range(1, 6):
        standin.inject(n, "500")
    failed = runner.invoke(app, ["reconcile", "--spreadsheet", sid, "--credentials", str(key_file),
                                 "--sheets-endpoint", standin.url, "--now", "2026-11-20T10:00+09:00"],
                           env={"PREFECT_API_URL": ""})
    assert failed.exit_code == 2, failed.output
    said = " ".join(failed.output.split())  # one message (rich wraps it at the terminal's width)
    assert said.startswith("error: Google Sheets did not answer") and "HTTP 500" in said, said
    assert "BEGIN" not in said and "Traceback" not in said


def test_the_command_line_wants_one_source(standin):
    result = CliRunner().invoke(app, ["reconcile", "--workbook", "x.xlsx", "--spreadsheet", "1X"])
    assert result.exit_code == 2 and "--workbook PATH or --spreadsheet ID" in result.output



def test_no_network_is_said_in_one_line_naming_the_host_and_retried_quietly(mapping, caplog):
    """A host DNS cannot find is no network, not Google failing: said so; and the token requests are
    retried by the adapter's backoff alone (google-auth's own session retried each try three times
    more, each a urllib3 warning: fifteen on the console before the error)."""
    info = {**service_account_info("https://oauth2.nonexistent.invalid"), "token_uri": "https://oauth2.nonexistent.invalid/token"}
    book = GoogleWorkbook("1NoNetwork", info, mapping=mapping, backoff=Backoff(attempts=3, sleep=lambda s: None))
    with caplog.at_level(logging.DEBUG), pytest.raises(SheetsUnavailable) as refused:
        book.read()
    said = str(refused.value)
    assert "oauth2.nonexistent.invalid could not be found (no network, or DNS cannot resolve it) (3 attempts)" in said
    assert not [r for r in caplog.records if "Retrying" in r.getMessage()]
