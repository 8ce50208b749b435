"""The bulk-tag CSV of the open operations: key, one 1/0 column per tag, UTF-8 with BOM or CP932."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tasks.check import check
from tasks.lstep_export import ExportError, build_export, export_bytes, write_export
from tests.conftest import booking, customer, write_book
from tests.test_tags import AT, HELD, LOST, SEMINAR, book_of, ops, step

U1, U2 = "U" + "1" * 32, "U" + "2" * 32


def _book(mapping):
    book = book_of(
        [customer("C1", LINEユーザーID=U1, タグ=LOST), customer("C2", "鈴木", "花子🌸", LINEユーザーID=U2),
         customer("C3", "佐藤", "次郎")],
        [booking("R1", "C1", AT), booking("R2", "C2", dt.datetime(2026, 11, 10, 10, 0), "来店済み"),
         booking("R3", "C3", AT)],
    )
    step(book, mapping)
    return book


def test_one_row_per_customer_one_column_per_tag(mapping):
    book = _book(mapping)
    export = build_export(check(book.read(), mapping), mapping)
    assert export.header == ("ユーザーID", SEMINAR, HELD, LOST)
    assert export.rows == ((U1, "1", "0", "0"), (U2, "0", "1", "0"))  # C2 has no seminar tag: 0 from its cell
    assert set(export.operations) == {o["操作ID"] for o in ops(book) if o["お客様番号"] in ("C1", "C2")}
    assert [why for _, why in export.skipped] == ["LINEユーザーIDがありません"]  # C3


def test_done_rows_leave_the_export_and_the_newest_open_row_wins(mapping):
    book = _book(mapping)
    for o in ops(book, お客様番号="C1"):
        book.set("L-Step操作", o["操作ID"], "対応済", "TRUE")
    export = build_export(check(book.read(), mapping), mapping)
    assert [r[0] for r in export.rows] == [U2]


def test_column_names_come_from_the_mapping(mapping):
    tags = mapping.tags.model_copy(update={"export": mapping.tags.export.model_copy(update={
        "key_column": "友だちID", "name_column": "表示名", "tag_columns": {SEMINAR: "タグ_101"}})})
    custom = mapping.model_copy(update={"tags": tags})
    export = build_export(check(_book(mapping).read(), custom), custom)
    assert export.header == ("友だちID", "表示名", "タグ_101", HELD, LOST)
    assert export.rows[1][:2] == (U2, "鈴木 花子🌸")


def test_utf8_with_bom_and_cp932(mapping, tmp_path):
    tags = mapping.tags.model_copy(update={"export": mapping.tags.export.model_copy(update={"name_column": "表示名"})})
    custom = mapping.model_copy(update={"tags": tags})
    export = build_export(check(_book(mapping).read(), custom), custom)
    utf8 = export_bytes(export, "utf-8-sig")
    assert utf8.startswith(b"\xef\xbb\xbf") and b"\r\n" in utf8
    rows = list(csv.reader(io.StringIO(utf8.decode("utf-8-sig"), newline="")))
    assert rows[0] == list(export.header) and rows[2][1] == "鈴木 花子🌸"
    path = write_export(tmp_path / "ops.csv", export, "cp932")
    rows = list(csv.reader(io.StringIO(path.read_bytes().decode("cp932"), newline="")))
    assert rows[0][2] == SEMINAR and rows[2][:2] == [U2, "鈴木 花子?"]  # as the tool's own exports do


def test_a_header_cp932_cannot_hold_is_an_error(mapping):
    export = build_export(check(_book(mapping).read(), mapping), mapping)
    bad = export.__class__(("ユーザーID", "🌸タグ"), (), (), ())
    with pytest.raises(ExportError, match="CP932"):
        export_bytes(bad, "cp932")
    assert export_bytes(bad, "utf-8-sig")
    with pytest.raises(ExportError):
        export_bytes(export, "shift_jis")


def test_the_command_line_writes_the_file(mapping, tmp_path):
    memory = book_of([customer("C1", LINEユーザーID=U1)], [booking("R1", "C1", AT)])
    step(memory, mapping)
    path = write_book(tmp_path / "t.xlsx", memory.tabs)
    out = tmp_path / "ops.csv"
    result = CliRunner().invoke(app, ["export-operations", "--workbook", str(path), "--out", str(out),
                                      "--encoding", "cp932"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes().decode("cp932").splitlines() == ["ユーザーID,【セミナー】個別相談予約完了", f"{U1},1"]
    result = CliRunner().invoke(app, ["export-operations", "--workbook", str(path), "--out", str(out),
                                      "--encoding", "latin-1"])
    assert result.exit_code == 2


@pytest.mark.parametrize("name", ["=HYPERLINK(\"http://x\")", "+1", "-2+3", "@SUM(A1)", "\tA", "\rB"])
def test_a_cell_excel_would_run_as_a_formula_gets_a_leading_quote(mapping, name):
    export = build_export(check(_book(mapping).read(), mapping), mapping)
    hostile = export.__class__(("ユーザーID", "表示名", "=タグ"), ((U1, name, "1"), (U2, "鈴木 花子", "0")), (), (), 1)
    for encoding in ("utf-8-sig", "cp932"):
        rows = list(csv.reader(io.StringIO(export_bytes(hostile, encoding).decode(encoding), newline="")))
        assert rows == [["ユーザーID", "表示名", "'=タグ"], [U1, "'" + name, "1"], [U2, "鈴木 花子", "0"]]
