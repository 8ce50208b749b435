"""The Sheets stand-in must answer like Google, or tests built on it prove nothing.

1. Cassettes: the Sheets requests recorded by gspread's own test suite against the real API are
   replayed in order, and each answer is compared with Google's: the status and the whole JSON
   body, after `comparable()`. Differences by design, and only these:
   - spreadsheets.get `properties`: only `title` is compared. The stand-in answers locale ja_JP and
     timeZone Asia/Tokyo (our team's sheets; the recordings are en_US / Etc/GMT) and omits
     autoRecalc, defaultFormat and spreadsheetTheme.
   - sheetIds of added sheets are Google's choice: each recorded addSheet reply teaches the id
     mapping, and later recorded ids (requests and answers) are translated through it.
   Not replayed: ClientTest.test_access_private_spreadsheet (its 403 needs Drive sharing, which the
   stand-in does not model); in WorksheetTest.test_add_validation the setDataValidation request is
   skipped (unsupported); the rest of that cassette, its 400 for `"values": "X"`, is compared.
   Drive requests in the cassettes are not Sheets API and are skipped everywhere.
2. The real gspread client, authenticated as a service account through the stand-in's /token.
3. Test controls: faults, hooks, counts, row edits by a "person".
4. The command line: serve a workbook, take a write, save on SIGTERM.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import date, datetime
from pathlib import Path

import gspread
import openpyxl
import pytest
import requests

from tests.sheets_standin import (
    QUOTA_429_BODY,
    SheetsStandin,
    format_serial,
    gspread_client,
    parse_cells,
    quote_title,
    split_range,
)

ROOT = Path(__file__).resolve().parents[1]
CASSETTES = Path(__file__).parent / "cassettes"  # recorded by gspread's own test suite (tests/cassettes/README.md)
GOOGLE_SHEETS = "https://sheets.googleapis.com"
ID = "1TeamSheetStandinTest"

# cassette -> request-body marker of requests to leave out (unsupported methods)
REPLAYED = {
    "ClientTest.test_open_by_key_has_metadata": None,
    "ClientTest.test_access_non_existing_spreadsheet": None,
    "SpreadsheetTest.test_values_get": None,
    "SpreadsheetTest.test_values_batch_get": None,
    "SpreadsheetTest.test_add_del_worksheet": None,
    "WorksheetTest.test_update_and_get": None,
    "WorksheetTest.test_update_cell": None,
    "WorksheetTest.test_batch_get": None,
    "WorksheetTest.test_batch_update": None,
    "WorksheetTest.test_append_row": None,
    "WorksheetTest.test_append_row_with_empty_value_and_table_range": None,
    "WorksheetTest.test_delete_row": None,
    "WorksheetTest.test_get_all_records": None,
    "WorksheetTest.test_get_all_records_with_all_values_blank": None,
    "WorksheetTest.test_get_all_records_value_render_options": None,
    "WorksheetTest.test_get_all_values_date_time_render_options": None,
    "WorksheetTest.test_get_all_values_title_is_a1_notation": None,
    "WorksheetTest.test_hide_show_worksheet": None,
    "WorksheetTest.test_add_validation": "setDataValidation",
}
PROPERTIES_COMPARED = {"title"}


@pytest.fixture
def standin():
    with SheetsStandin() as server:
        yield server


@pytest.fixture
def team(standin):
    bookings = [["予約ID", "開始日時", "担当"], ["B1", datetime(2026, 11, 20, 10, 0), "佐藤"]]
    standin.add_spreadsheet(ID, {"予約": bookings, "Sheet1": []}, title="営業チーム")
    return standin


def api(standin: SheetsStandin, method: str, path: str, **kwargs) -> requests.Response:
    """A bare HTTP call, for what gspread would hide."""
    headers = {"Authorization": "Bearer test", **kwargs.pop("headers", {})}
    return requests.request(method, standin.url + path, headers=headers, timeout=10, **kwargs)


# --------------------------------------------------------------------------
# 1. Honest against Google: replay the recorded requests, compare the answers
# --------------------------------------------------------------------------


def sheets_interactions(name: str) -> list[dict]:
    data = json.loads((CASSETTES / f"{name}.json").read_text(encoding="utf-8"))
    return [it for it in data["interactions"] if it["request"]["uri"].startswith(GOOGLE_SHEETS)]


def spreadsheet_id(uri: str) -> str:
    return re.match(r"https://sheets\.googleapis\.com/v4/spreadsheets/([^/:?]+)", uri)[1]


def recorded_body(interaction: dict) -> dict | None:
    text = interaction["response"]["body"]["string"]
    return json.loads(text) if text else None


def seed_like_recording(standin: SheetsStandin, interactions: list[dict], sid: str) -> None:
    """A spreadsheet id Google knew: create it as Google had it (titled, one empty 1000x26 Sheet1)."""
    mine = [it for it in interactions if spreadsheet_id(it["request"]["uri"]) == sid]
    found = [it for it in mine if it["response"]["status"]["code"] == 200 and "sheets" in (recorded_body(it) or {})]
    if found:
        standin.add_spreadsheet(sid, {"Sheet1": []}, title=recorded_body(found[0])["properties"]["title"])


def remap_sheet_ids(value, ids: dict[int, int]):
    """Translate Google's sheetIds into the stand-in's, anywhere in a JSON value."""
    if isinstance(value, dict):
        return {k: (ids.get(v, v) if k == "sheetId" else remap_sheet_ids(v, ids)) for k, v in value.items()}
    if isinstance(value, list):
        return [remap_sheet_ids(v, ids) for v in value]
    return value


def learn_sheet_ids(expected: dict, actual: dict, ids: dict[int, int]) -> None:
    for want, got in zip(expected.get("replies", []), actual.get("replies", []), strict=False):
        if "addSheet" in want and "addSheet" in got:
            ids[want["addSheet"]["properties"]["sheetId"]] = got["addSheet"]["properties"]["sheetId"]


def comparable(body):
    """Drop what differs by design (see the module docstring)."""
    if isinstance(body, dict) and "sheets" in body and "properties" in body:
        props = {k: v for k, v in body["properties"].items() if k in PROPERTIES_COMPARED}
        return {**body, "properties": props}
    return body


def assert_same_answer(expected: dict | None, actual: dict | None, ids: dict[int, int], where: str) -> None:
    """The comparison helper: Google's ids are translated, by-design fields dropped, the rest must be equal."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        learn_sheet_ids(expected, actual, ids)
    ours, google = comparable(actual), comparable(remap_sheet_ids(expected, ids))
    assert ours == google, where
    assert canonical(ours) == canonical(google), where  # also 2 vs 2.0: 2 == 2.0 in Python, not in JSON


def canonical(body) -> str:
    return json.dumps(body, sort_keys=True, ensure_ascii=False)


def replay(standin: SheetsStandin, interactions: list[dict], skip_marker: str | None) -> int:
    """Send each recorded Sheets request to the stand-in in order; compare every answer. Returns how many."""
    ids: dict[int, int] = {}
    seen: set[str] = set()
    compared = 0
    for n, it in enumerate(interactions):
        request = it["request"]
        if skip_marker and skip_marker in (request["body"] or ""):
            continue
        if spreadsheet_id(request["uri"]) not in seen:
            seen.add(spreadsheet_id(request["uri"]))
            seed_like_recording(standin, interactions, spreadsheet_id(request["uri"]))
        body = request["body"]
        if body:
            body = json.dumps(remap_sheet_ids(json.loads(body), ids))
        answer = api(standin, request["method"], request["uri"][len(GOOGLE_SHEETS):], data=body,
                     headers={"Content-Type": "application/json"} if body else {})
        where = f"#{n} {request['method']} {request['uri']}\nours: {answer.text[:2000]}"
        assert answer.status_code == it["response"]["status"]["code"], where
        assert_same_answer(recorded_body(it), answer.json(), ids, where)
        compared += 1
    return compared


@pytest.mark.parametrize("name", sorted(REPLAYED))
def test_answers_like_google(standin, name):
    interactions, marker = sheets_interactions(name), REPLAYED[name]
    left_out = [it for it in interactions if marker and marker in (it["request"]["body"] or "")]
    assert replay(standin, interactions, marker) == len(interactions) - len(left_out) > 0


def test_recorded_error_bodies_match_google(team):
    """The fault 429 is Google's own body; an unknown tab is 'Unable to parse range' like the recorded 400."""
    bodies = CASSETTES / "gargle_error_bodies"
    quota = json.loads((bodies / "sheets-spreadsheets-get-quota-exceeded-readgroup_429.json").read_text())
    assert quota["response"]["body"] == QUOTA_429_BODY
    recorded = json.loads((bodies / "sheets-spreadsheets-get-nonexistent-range_400.json").read_text())
    answer = api(team, "GET", f"/v4/spreadsheets/{ID}?ranges=NOPE%21A5%3AF15")
    assert (answer.status_code, answer.json()) == (400, recorded["response"]["body"])
    recorded = json.loads((bodies / "sheets-spreadsheets-get-nonexistent-sheet-id_404.json").read_text())
    answer = api(team, "GET", "/v4/spreadsheets/DOES_NOT_EXIST?fields=spreadsheetId")
    assert (answer.status_code, answer.json()) == (404, recorded["response"]["body"])


# --------------------------------------------------------------------------
# Semantics the cassettes do not show
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A1", (0, 0, 1, 1)), ("c5", (4, 2, 5, 3)), ("A1:C5", (0, 0, 5, 3)), ("A:A", (0, 0, None, 1)),
        ("2:3", (1, 0, 3, None)), ("A2:Z", (1, 0, None, 26)), ("A1:1", (0, 0, 1, None)), ("$B$2:$C$3", (1, 1, 3, 3)),
        ("C5:A1", (0, 0, 5, 3)),
    ],
)
def test_parse_cells(text, expected):
    rect = parse_cells(text)
    assert (rect.r0, rect.c0, rect.r1, rect.c1) == expected


@pytest.mark.parametrize("text", ["A0", "A", "1", "A1:B2:C3", "AAAA1", "A1!"])
def test_parse_cells_rejects(text):
    with pytest.raises(ValueError):
        parse_cells(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Tab!A1:C5", ("Tab", "A1:C5")), ("'quoted tab'!A:A", ("quoted tab", "A:A")), ("Tab", (None, "Tab")),
     ("'Jon''s'", ("Jon's", None)), ("My Tab!A1", ("My Tab", "A1"))],
)
def test_split_range(text, expected):
    assert split_range(text) == expected


@pytest.mark.parametrize(
    ("title", "expected"),
    [("Sheet1", "Sheet1"), ("D3", "'D3'"), ("R1C1", "'R1C1'"), ("my tab", "'my tab'"), ("Jon's", "'Jon''s'"),
     ("予約", "'予約'"), ("2024", "'2024'")],
)
def test_quote_title_only_where_needed(title, expected):
    assert quote_title(title) == expected


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [("yyyy/mm/dd hh:mm", "2026/11/20 09:05"), ("yyyy/mm/dd", "2026/11/20"),
     ("yyyy-mm-dd hh:mm:ss", "2026-11-20 09:05:30"), ("m/d", "11/20"), ("yyyy/mm/dd(ddd)", "2026/11/20(金)")],
)
def test_date_patterns(pattern, expected):
    serial = (datetime(2026, 11, 20, 9, 5, 30) - datetime(1899, 12, 30)).total_seconds() / 86400
    assert format_serial(serial, pattern) == expected


def test_ranges_are_clipped_and_trimmed(team):
    got = api(team, "GET", f"/v4/spreadsheets/{ID}/values:batchGet",
              params={"ranges": ["予約", "'予約'!A:A", "予約!B2:Z", "Sheet1!A1:B2", "A1"]}).json()
    assert [v["range"] for v in got["valueRanges"]] == [
        "'予約'!A1:Z1000", "'予約'!A1:A1000", "'予約'!B2:Z1000", "Sheet1!A1:B2", "'予約'!A1"]
    assert got["valueRanges"][0]["values"] == [["予約ID", "開始日時", "担当"], ["B1", "2026/11/20 10:00", "佐藤"]]
    assert "values" not in got["valueRanges"][3]


def test_datetimes_render_by_option(team):
    def read(**params):
        return api(team, "GET", f"/v4/spreadsheets/{ID}/values/予約!B2", params=params).json()["values"][0][0]

    assert read() == "2026/11/20 10:00"
    assert read(valueRenderOption="UNFORMATTED_VALUE") == pytest.approx(46346.416666)
    assert read(valueRenderOption="UNFORMATTED_VALUE", dateTimeRenderOption="FORMATTED_STRING") == "2026/11/20 10:00"
    assert read(valueRenderOption="FORMULA") == pytest.approx(46346.416666)


def test_user_entered_and_raw(team):
    values = [["=1+1", "0042", "2026/11/21 09:30", "TRUE", "'0042", "1,234", "+81 90", 3.0]]
    for option, row in (("RAW", 2), ("USER_ENTERED", 3)):
        api(team, "PUT", f"/v4/spreadsheets/{ID}/values/Sheet1!A{row}", params={"valueInputOption": option},
            json={"values": values}).raise_for_status()
    got = api(team, "GET", f"/v4/spreadsheets/{ID}/values/Sheet1!A2:H3",
              params={"valueRenderOption": "UNFORMATTED_VALUE"}).json()["values"]
    assert got[0] == ["=1+1", "0042", "2026/11/21 09:30", "TRUE", "'0042", "1,234", "+81 90", 3]
    assert got[1] == [2, 42, pytest.approx(46347.395833), True, "0042", 1234, "+81 90", 3]
    shown = api(team, "GET", f"/v4/spreadsheets/{ID}/values/Sheet1!A3:H3").json()["values"][0]
    assert shown == ["2", "42", "2026/11/21 09:30", "TRUE", "0042", "1,234", "+81 90", "3"]


def test_null_leaves_and_empty_string_clears(team):
    api(team, "PUT", f"/v4/spreadsheets/{ID}/values/予約!A2:C2", params={"valueInputOption": "RAW"},
        json={"values": [[None, "", "鈴木"]]}).raise_for_status()
    assert team.tab_values(ID, "予約")[1] == ["B1", "", "鈴木"]


def test_writes_beyond_the_grid_are_refused(team):
    answer = api(team, "PUT", f"/v4/spreadsheets/{ID}/values/Sheet1!A1000", params={"valueInputOption": "RAW"},
                 json={"values": [["a"], ["b"]]})
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == (
        "Range (Sheet1!A1000:A1001) exceeds grid limits. Max rows: 1000, max columns: 26")
    answer = api(team, "PUT", f"/v4/spreadsheets/{ID}/values/Sheet1!A1:B1", params={"valueInputOption": "RAW"},
                 json={"values": [["a", "b", "c"]]})
    assert answer.json()["error"]["message"] == (
        "Requested writing within range [Sheet1!A1:B1], but tried writing to column [C]")
    assert team.tab_values(ID, "Sheet1") == []


def test_batch_update_is_atomic(team):
    requests_ = [{"addSheet": {"properties": {"title": "新規"}}},
                 {"deleteDimension": {"range": {"sheetId": 999, "dimension": "ROWS", "startIndex": 0, "endIndex": 1}}}]
    answer = api(team, "POST", f"/v4/spreadsheets/{ID}:batchUpdate", json={"requests": requests_})
    assert answer.status_code == 400
    assert answer.json()["error"] == {"code": 400, "status": "INVALID_ARGUMENT",
                                      "message": "Invalid requests[1].deleteDimension: No grid with id: 999"}
    titles = [s["properties"]["title"] for s in api(team, "GET", f"/v4/spreadsheets/{ID}").json()["sheets"]]
    assert titles == ["予約", "Sheet1"]


def test_the_cell_limit_counts_whole_grids_and_refuses_the_write_that_passes_it(standin):
    """Google's limit is per spreadsheet, over every tab's rows x columns, blank cells included
    (the pygsheets issue #589 quotes its answer). A write past it changes nothing; one that stays
    under it goes through."""
    standin.add_spreadsheet(ID, {"Sheet1": [["a"]]}, cell_limit=27_000)  # one 1000 x 26 grid: 26,000
    grow = {"requests": [{"addSheet": {"properties": {"title": "新規", "gridProperties": {"rowCount": 100, "columnCount": 8}}}},
                         {"appendDimension": {"sheetId": 0, "dimension": "ROWS", "length": 10}}]}
    answer = api(standin, "POST", f"/v4/spreadsheets/{ID}:batchUpdate", json=grow)
    assert answer.status_code == 400
    assert answer.json()["error"] == {"code": 400, "status": "INVALID_ARGUMENT", "message": (
        "Invalid requests[1].appendDimension: This action would increase the number of cells in the workbook "
        "above the limit of 27000 cells.")}
    appended = api(standin, "POST", f"/v4/spreadsheets/{ID}/values/Sheet1!A1:append",
                   params={"valueInputOption": "RAW"}, json={"values": [["b"]] * 2000})  # 2,001 rows x 26
    assert appended.status_code == 400 and "above the limit of 27000 cells" in appended.json()["error"]["message"]
    sheets = api(standin, "GET", f"/v4/spreadsheets/{ID}").json()["sheets"]
    assert [s["properties"]["gridProperties"]["rowCount"] for s in sheets] == [1000]  # neither write landed
    assert standin.tab_values(ID, "Sheet1") == [["a"]]
    grow["requests"] = grow["requests"][:1]  # 26,800 cells: under the limit
    assert api(standin, "POST", f"/v4/spreadsheets/{ID}:batchUpdate", json=grow).status_code == 200


def test_a_spreadsheet_past_the_limit_can_shrink_but_not_grow_and_none_is_built_past_it(standin):
    standin.add_spreadsheet(ID, {"Sheet1": [["a"]], "ログ": [["h1", "h2"], ["x", "y"]]}, fitted=["ログ"])
    sizes = [s["properties"]["gridProperties"] for s in api(standin, "GET", f"/v4/spreadsheets/{ID}").json()["sheets"]]
    assert sizes == [{"rowCount": 1000, "columnCount": 26}, {"rowCount": 2, "columnCount": 2}]  # fitted: its rows
    with standin._lock:
        standin._book(ID).cell_limit = 20_000  # Google lowered it under a spreadsheet (it was 5M once)
    shrink = {"deleteDimension": {"range": {"sheetId": 0, "dimension": "ROWS", "startIndex": 500, "endIndex": 600}}}
    assert api(standin, "POST", f"/v4/spreadsheets/{ID}:batchUpdate", json={"requests": [shrink]}).status_code == 200
    typed = api(standin, "PUT", f"/v4/spreadsheets/{ID}/values/Sheet1!B2", params={"valueInputOption": "RAW"},
                json={"values": [["b"]]})
    assert typed.status_code == 200  # values within the grid: no cell more
    grow = {"appendDimension": {"sheetId": 0, "dimension": "ROWS", "length": 1}}
    assert api(standin, "POST", f"/v4/spreadsheets/{ID}:batchUpdate", json={"requests": [grow]}).status_code == 400
    with pytest.raises(ValueError, match="over the limit"):
        standin.add_spreadsheet("other", {"Sheet1": []}, cell_limit=25_999)


def test_values_batch_update_is_atomic(team):
    data = [{"range": "Sheet1!A1", "values": [["ok"]]}, {"range": "Nope!A1", "values": [["x"]]}]
    answer = api(team, "POST", f"/v4/spreadsheets/{ID}/values:batchUpdate",
                 json={"valueInputOption": "RAW", "data": data})
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == "Invalid data[1]: Unable to parse range: Nope!A1"
    assert team.tab_values(ID, "Sheet1") == []


def test_batch_update_requests(team):
    sheet_id = api(team, "GET", f"/v4/spreadsheets/{ID}").json()["sheets"][0]["properties"]["sheetId"]
    grid = {"sheetId": sheet_id, "startRowIndex": 1, "endRowIndex": 3, "startColumnIndex": 3, "endColumnIndex": 4}
    batch = [
        {"insertDimension": {"range": {"sheetId": sheet_id, "dimension": "ROWS", "startIndex": 1, "endIndex": 2},
                             "inheritFromBefore": False}},  # the new row takes row 3's formats
        {"appendDimension": {"sheetId": sheet_id, "dimension": "COLUMNS", "length": 2}},
        {"updateCells": {"start": {"sheetId": sheet_id, "rowIndex": 1, "columnIndex": 0},
                         "rows": [{"values": [{"userEnteredValue": {"stringValue": "B0"}},
                                              {"userEnteredValue": {"numberValue": 46300.5}}]}],
                         "fields": "userEnteredValue"}},
        {"repeatCell": {"range": grid, "cell": {"userEnteredFormat": {"numberFormat": {
            "type": "DATE_TIME", "pattern": "yyyy-mm-dd hh:mm:ss"}}}, "fields": "userEnteredFormat.numberFormat"}},
        {"updateCells": {"range": {**grid, "endRowIndex": 2}, "rows": [{"values": [
            {"userEnteredValue": {"numberValue": 46300.25}}]}], "fields": "userEnteredValue"}},
        {"updateSheetProperties": {"properties": {"sheetId": sheet_id, "gridProperties": {"frozenRowCount": 1}},
                                   "fields": "gridProperties.frozenRowCount"}},
    ]
    answer = api(team, "POST", f"/v4/spreadsheets/{ID}:batchUpdate", json={"requests": batch}).json()
    assert answer["replies"] == [{}] * len(batch)
    got = api(team, "GET", f"/v4/spreadsheets/{ID}/values/予約").json()
    assert got["range"] == "'予約'!A1:AB1001"
    assert got["values"] == [["予約ID", "開始日時", "担当"], ["B0", "2026/10/05 12:00", "", "2026-10-05 06:00:00"],
                             ["B1", "2026/11/20 10:00", "佐藤"]]
    props = api(team, "GET", f"/v4/spreadsheets/{ID}").json()["sheets"][0]["properties"]
    assert props["gridProperties"] == {"rowCount": 1001, "columnCount": 28, "frozenRowCount": 1}


def test_append_cells_lands_after_the_last_row_with_data_and_grows_the_grid(team):
    sheet_id = api(team, "GET", f"/v4/spreadsheets/{ID}").json()["sheets"][0]["properties"]["sheetId"]
    shrink = {"updateSheetProperties": {"properties": {"sheetId": sheet_id, "gridProperties": {"rowCount": 4}},
                                        "fields": "gridProperties.rowCount"}}
    dated = {"repeatCell": {"range": {"sheetId": sheet_id, "startRowIndex": 1, "endRowIndex": 4, "startColumnIndex": 1,
                                      "endColumnIndex": 2},
                            "cell": {"userEnteredFormat": {"numberFormat": {"type": "DATE_TIME", "pattern": "yyyy/mm/dd hh:mm"}}},
                            "fields": "userEnteredFormat.numberFormat"}}  # formats alone are not data
    team.set_cell(ID, "予約", "C3", "メモ")  # a row with data anywhere is the last one, whatever column
    rows = [{"values": [{"userEnteredValue": {"stringValue": f"B{i}"}}]} for i in (2, 3, 4)]
    append = {"appendCells": {"sheetId": sheet_id, "rows": rows, "fields": "userEnteredValue"}}
    answer = api(team, "POST", f"/v4/spreadsheets/{ID}:batchUpdate", json={"requests": [shrink, dated, append]}).json()
    assert answer["replies"] == [{}, {}, {}]
    got = api(team, "GET", f"/v4/spreadsheets/{ID}/values/予約").json()
    assert got["values"][2:] == [["", "", "メモ"], ["B2"], ["B3"], ["B4"]]
    assert got["range"] == "'予約'!A1:Z6"  # 4 rows grew to 6


def test_append_overwrite_and_insert_rows(team):
    team.set_cell(ID, "予約", "A5", "メモ")  # not connected to the table: OVERWRITE still lands on row 3
    answer = api(team, "POST", f"/v4/spreadsheets/{ID}/values/予約!A1:append",
                 params={"valueInputOption": "USER_ENTERED", "insertDataOption": "INSERT_ROWS"},
                 json={"values": [["B2", "2026/11/21 11:00", "鈴木"]]}).json()
    assert answer["tableRange"] == "'予約'!A1:C2"
    assert answer["updates"]["updatedRange"] == "'予約'!A3:C3"
    rows = team.tab_values(ID, "予約")
    assert rows[2] == ["B2", datetime(2026, 11, 21, 11, 0), "鈴木"] and rows[5] == ["メモ"]


def test_columns_major_dimension(team):
    api(team, "PUT", f"/v4/spreadsheets/{ID}/values/Sheet1!A1", params={"valueInputOption": "RAW"},
        json={"values": [["a", "b"], ["c"]], "majorDimension": "COLUMNS"}).raise_for_status()
    got = api(team, "GET", f"/v4/spreadsheets/{ID}/values/Sheet1!A1:B2", params={"majorDimension": "COLUMNS"}).json()
    assert got["values"] == [["a", "b"], ["c"]]
    assert team.tab_values(ID, "Sheet1") == [["a", "c"], ["b"]]


def test_clear_keeps_formats_and_grid_data(team):
    api(team, "POST", f"/v4/spreadsheets/{ID}/values/予約!B2:clear").raise_for_status()
    api(team, "PUT", f"/v4/spreadsheets/{ID}/values/予約!B2", params={"valueInputOption": "RAW"},
        json={"values": [[46300]]}).raise_for_status()
    grid = api(team, "GET", f"/v4/spreadsheets/{ID}", params={"includeGridData": "true"}).json()
    cell = grid["sheets"][0]["data"][0]["rowData"][1]["values"][1]
    assert cell == {"userEnteredValue": {"numberValue": 46300}, "effectiveValue": {"numberValue": 46300},
                    "formattedValue": "2026/10/05 00:00",
                    "userEnteredFormat": {"numberFormat": {"type": "DATE_TIME", "pattern": "yyyy/mm/dd hh:mm"}}}


def test_bare_ranges_and_hidden_tabs(team):
    sheet_id = api(team, "GET", f"/v4/spreadsheets/{ID}").json()["sheets"][0]["properties"]["sheetId"]
    hide = {"updateSheetProperties": {"properties": {"sheetId": sheet_id, "hidden": True}, "fields": "hidden"}}
    api(team, "POST", f"/v4/spreadsheets/{ID}:batchUpdate", json={"requests": [hide]}).raise_for_status()
    assert api(team, "GET", f"/v4/spreadsheets/{ID}/values/A1").json()["range"] == "Sheet1!A1"
    assert api(team, "GET", f"/v4/spreadsheets/{ID}/values/予約").json()["range"] == "'予約'!A1:Z1000"


def test_aware_datetimes_are_stored_as_tokyo_wall_time(standin):
    from zoneinfo import ZoneInfo

    utc = datetime(2026, 11, 20, 1, 0, tzinfo=ZoneInfo("UTC"))
    standin.add_spreadsheet(ID, {"Sheet1": [[utc, float("nan"), None, "x"]]})
    assert standin.tab_values(ID, "Sheet1") == [[datetime(2026, 11, 20, 10, 0), "", "", "x"]]


def test_unauthenticated_is_401(team):
    answer = requests.get(f"{team.url}/v4/spreadsheets/{ID}", timeout=10)
    assert answer.status_code == 401
    assert answer.json()["error"]["status"] == "UNAUTHENTICATED"


def test_token_needs_a_jwt_bearer_grant(standin):
    answer = requests.post(f"{standin.url}/token", data={"grant_type": "password"}, timeout=10)
    assert answer.status_code == 400
    answer = requests.post(f"{standin.url}/token", timeout=10, data={
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": "a.b.c"})
    assert answer.json()["token_type"] == "Bearer" and answer.json()["expires_in"] == 3600


# --------------------------------------------------------------------------
# 2. The real gspread client
# --------------------------------------------------------------------------


def test_gspread_open_by_key_and_batch_get(team):
    book = gspread_client(team.url).open_by_key(ID)
    assert (book.title, book.locale, book.timezone) == ("営業チーム", "ja_JP", "Asia/Tokyo")
    assert [ws.title for ws in book.worksheets()] == ["予約", "Sheet1"]
    got = book.worksheet("予約").batch_get(["A1:C1", "B2"])
    assert got == [[["予約ID", "開始日時", "担当"]], [["2026/11/20 10:00"]]]
    assert team.count("token") == 1


def test_gspread_raw_keeps_text_user_entered_parses(team):
    ws = gspread_client(team.url).open_by_key(ID).worksheet("Sheet1")
    ws.update([["=1+1", "0042"]], "A1", raw=True)
    ws.update([["=1+1", "0042"]], "A2", raw=False)
    assert ws.get_all_values() == [["=1+1", "0042"], ["2", "42"]]
    assert ws.get("A2:B2", value_render_option="UNFORMATTED_VALUE") == [[2, 42]]
    assert team.tab_values(ID, "Sheet1") == [["=1+1", "0042"], [2, 42]]


def test_gspread_append_and_errors(team):
    book = gspread_client(team.url).open_by_key(ID)
    book.worksheet("予約").append_row(["B2", "2026/11/21 11:00", "鈴木"], value_input_option="USER_ENTERED")
    assert team.tab_values(ID, "予約")[2] == ["B2", datetime(2026, 11, 21, 11, 0), "鈴木"]
    with pytest.raises(gspread.exceptions.APIError) as err:
        book.values_get("存在しない!A1")
    assert err.value.code == 400 and "Unable to parse range: 存在しない!A1" in str(err.value)
    with pytest.raises(gspread.exceptions.SpreadsheetNotFound):
        gspread_client(team.url).open_by_key("missing")


# --------------------------------------------------------------------------
# 3. Faults, hooks, counts and a person's edits
# --------------------------------------------------------------------------


def test_inject_429_gives_googles_body(team):
    ws = gspread_client(team.url).open_by_key(ID).worksheet("予約")
    team.inject(1, "429", verb="values.get")
    with pytest.raises(gspread.exceptions.APIError) as err:
        ws.acell("A1")
    assert err.value.code == 429 and err.value.response.json() == QUOTA_429_BODY
    assert ws.acell("A1").value == "予約ID"


def test_faulted_write_changes_nothing(team):
    ws = gspread_client(team.url).open_by_key(ID).worksheet("Sheet1")
    for code in (500, 503):
        team.inject(1, str(code), verb="values.update")
        with pytest.raises(gspread.exceptions.APIError) as err:
            ws.update([["x"]], "A1")
        assert err.value.code == code
    assert team.tab_values(ID, "Sheet1") == []
    assert [r["status"] for r in team.requests if r["verb"] == "values.update"] == [500, 503]


def test_inject_counts_from_now(team):
    api(team, "GET", f"/v4/spreadsheets/{ID}")
    team.inject(2, "503")
    statuses = [api(team, "GET", f"/v4/spreadsheets/{ID}").status_code for _ in range(3)]
    assert statuses == [200, 503, 200]


def test_drop_and_slow(team):
    team.inject(1, "drop")
    with pytest.raises(requests.ConnectionError):
        api(team, "GET", f"/v4/spreadsheets/{ID}")
    team.inject(1, "slow:0.6")
    with pytest.raises(requests.Timeout):
        requests.get(f"{team.url}/v4/spreadsheets/{ID}", headers={"Authorization": "Bearer t"}, timeout=0.2)
    team.inject(1, "slow:0.3")
    started = time.monotonic()
    assert api(team, "GET", f"/v4/spreadsheets/{ID}").status_code == 200
    assert time.monotonic() - started >= 0.3
    assert team.requests[0]["status"] is None


def test_slow_write_lands_after_the_client_gave_up_hang_does_not(team):
    team.inject(1, "slow:0.4", verb="values.update")
    with pytest.raises(requests.Timeout):
        requests.put(f"{team.url}/v4/spreadsheets/{ID}/values/Sheet1!A1?valueInputOption=RAW", timeout=0.1,
                     headers={"Authorization": "Bearer t"}, json={"values": [["late"]]})
    team.inject(1, "hang:0.2", verb="values.update")
    with pytest.raises(requests.ConnectionError):
        api(team, "PUT", f"/v4/spreadsheets/{ID}/values/Sheet1!A2?valueInputOption=RAW", json={"values": [["no"]]})
    deadline = time.monotonic() + 5
    while team.tab_values(ID, "Sheet1") != [["late"]] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert team.tab_values(ID, "Sheet1") == [["late"]]


def test_dropped_write_reaches_gspread_as_connection_error(team):
    ws = gspread_client(team.url).open_by_key(ID).worksheet("Sheet1")
    team.inject(1, "drop", verb="values.update")
    with pytest.raises(requests.ConnectionError):
        ws.update([["x"]], "A1")
    assert team.tab_values(ID, "Sheet1") == []
    ws.update([["y"]], "A1")
    assert team.tab_values(ID, "Sheet1") == [["y"]]


def test_before_hook_plays_an_edit_between_read_and_write(team):
    ws = gspread_client(team.url).open_by_key(ID).worksheet("予約")
    seen = ws.get_all_values()
    team.before("values.batchUpdate", lambda s: s.set_cell(ID, "予約", "C2", "高橋"))
    ws.batch_update([{"range": "A3", "values": [["B9"]]}])
    ws.batch_update([{"range": "A4", "values": [["B10"]]}])
    assert seen[1][2] == "佐藤"
    assert [row[:3] for row in team.tab_values(ID, "予約")[1:]] == [
        ["B1", datetime(2026, 11, 20, 10, 0), "高橋"], ["B9"], ["B10"]]


def test_counts_by_verb_and_reset(team):
    book = gspread_client(team.url).open_by_key(ID)
    book.values_batch_get(["予約!A1"])
    book.values_batch_get(["予約!A2"])
    assert team.count("values.batchGet") == 2
    assert team.count("spreadsheets.get", spreadsheet_id=ID) == 1
    assert team.count() == 3 and team.count("token") == 1
    team.reset_counts()
    assert team.count() == 0 and team.requests == []


def test_person_inserts_deletes_and_sorts_rows(team):
    team.insert_row(ID, "予約", 2, ["B0", date(2026, 11, 19), "鈴木"])
    team.insert_row(ID, "予約", 4, ["B2", 5, "田中"])
    assert [r[0] for r in team.tab_values(ID, "予約")] == ["予約ID", "B0", "B1", "B2"]
    team.sort_rows(ID, "予約", key_col=3, reverse=True)
    assert [r[2] for r in team.tab_values(ID, "予約")] == ["担当", "鈴木", "田中", "佐藤"]
    team.delete_row(ID, "予約", 2)
    assert team.tab_values(ID, "予約") == [["予約ID", "開始日時", "担当"], ["B2", 5, "田中"],
                                          ["B1", datetime(2026, 11, 20, 10, 0), "佐藤"]]
    got = api(team, "GET", f"/v4/spreadsheets/{ID}/values/予約!A:B").json()
    assert got["range"] == "'予約'!A1:B1001"  # two rows inserted, one deleted


def test_xlsx_round_trip(standin, tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "予約"
    ws.append(["予約ID", "開始日時", "金額", "税込", "メモ"])
    ws.append(["B1", datetime(2026, 11, 20, 10, 0), 1000, "=C2*1.1", "=text"])
    ws["B2"].number_format = "yyyy/mm/dd hh:mm"
    ws["E2"].data_type = "s"
    wb.create_sheet("担当者").append(["佐藤"])
    wb.save(tmp_path / "in.xlsx")
    standin.load_xlsx(ID, tmp_path / "in.xlsx")
    got = api(standin, "GET", f"/v4/spreadsheets/{ID}/values/予約!A2:E2").json()["values"]
    assert got == [["B1", "2026/11/20 10:00", "1000", "1100", "=text"]]
    standin.save_xlsx(ID, tmp_path / "out.xlsx")
    out = openpyxl.load_workbook(tmp_path / "out.xlsx")
    assert out.sheetnames == ["予約", "担当者"]
    row = [c.value for c in out["予約"][2]]
    assert row == ["B1", datetime(2026, 11, 20, 10, 0), 1000, "=C2*1.1", "=text"]
    assert out["予約"]["D2"].data_type == "f" and out["予約"]["E2"].data_type == "s"
    assert out["予約"]["B2"].number_format == "yyyy/mm/dd hh:mm"


# --------------------------------------------------------------------------
# 4. The command line
# --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_command_line_serves_and_saves_on_sigterm(tmp_path):
    wb = openpyxl.Workbook()
    wb.active.title = "予約"
    wb.active.append(["予約ID", "担当"])
    wb.save(tmp_path / "team.xlsx")
    port = free_port()
    cmd = [sys.executable, "-m", "tests.sheets_standin", "--port", str(port), "--id", ID,
           "--load", str(tmp_path / "team.xlsx"), "--save", str(tmp_path / "out.xlsx"),
           "--log-requests", str(tmp_path / "requests.jsonl")]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == f"listening on http://127.0.0.1:{port}"
        ws = gspread_client(f"http://127.0.0.1:{port}").open_by_key(ID).worksheet("予約")
        ws.update([["B1", "佐藤"]], "A2")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, proc.stderr.read()
    finally:
        proc.kill()
    out = openpyxl.load_workbook(tmp_path / "out.xlsx")
    assert [[c.value for c in row] for row in out["予約"].iter_rows()] == [["予約ID", "担当"], ["B1", "佐藤"]]
    lines = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    assert lines[0]["verb"] == "token" and lines[-1]["verb"] == "values.update"
    assert set(lines[-1]) == {"method", "path", "verb", "status"} and lines[-1]["status"] == 200
