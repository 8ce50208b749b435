"""The workbook file itself: replaced as the same file to its people, or refused in one line."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import re
import stat
import zipfile
from pathlib import Path

import openpyxl
import pytest
from openpyxl.utils import get_column_letter
from typer.testing import CliRunner

from flows.cli import app
from flows.pipeline import run
from tasks.files import CannotWrite, replace_atomically
from tasks.mapping import load_mapping
from tasks.workbooks.local import LocalWorkbook
from tests.conftest import NOW, booking, customer, tab_records, team_tabs, write_book

SENT: list = []


def record(recipient, title, body, key):
    SENT.append((recipient, title, body, key))


@pytest.fixture
def team(tmp_path):
    """A first run writes and sends: a booking for a customer 顧客 does not have tells 運営."""
    bookings = [booking("R001", "C001", dt.datetime(2026, 11, 25, 14)), booking("R002", "C999", dt.datetime(2026, 11, 26, 10))]
    tabs = team_tabs([customer("C001", 電話番号="090-1234-5678")], bookings)
    return write_book(tmp_path / "team.xlsx", tabs)


def salesops(*args: str):
    return CliRunner().invoke(app, list(args), env={"PREFECT_API_URL": ""})


def said(cli, text: str) -> None:
    """Refused in one line, exit 2, no traceback."""
    assert cli.exit_code == 2, cli.output
    assert cli.output.startswith("error: ") and cli.output.count("\n") == 1 and text in cli.output, cli.output


def test_a_run_keeps_the_workbooks_permissions_owner_and_group(team, mapping):
    """The temporary file is created 0600 and owned by whoever runs the job: swapped in as it was, a
    shared workbook became unreadable to the team (and, by a job run as root, unwritable)."""
    os.chmod(team, 0o664)
    if os.geteuid() == 0:
        os.chown(team, 4321, 8765)
    before = team.stat()
    assert run(LocalWorkbook(team), mapping, NOW, record).report.wrote
    after = team.stat()
    assert stat.S_IMODE(after.st_mode) == 0o664
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)


def test_a_symlinked_workbook_is_written_through_to_its_target(tmp_path, team, mapping):
    """The link stays a link and the file it points at gets the rows; the run replaced the link with a
    regular file, and the workbook people open through the target never changed."""
    elsewhere = tmp_path / "shared"
    elsewhere.mkdir()
    target = team.rename(elsewhere / "team.xlsx")
    link = tmp_path / "link.xlsx"
    link.symlink_to(target)
    run(LocalWorkbook(link), mapping, NOW, record)
    assert link.is_symlink() and link.resolve() == target
    assert tab_records(target, "予約")[0]["終了日時"] == dt.datetime(2026, 11, 25, 15, 30)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.xlsx", "shared"]  # no temporary file left
    assert [p.name for p in elsewhere.iterdir()] == ["team.xlsx"]


def test_a_workbook_in_a_folder_the_user_cannot_write_is_refused_in_one_line(team, monkeypatch):
    """The temporary file cannot be made there (a PermissionError and its traceback); the tests run as
    root, who can write anywhere, so the refusal is simulated where the file is made."""
    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("tasks.files.tempfile.mkstemp", refused)
    before = team.read_bytes()
    said(salesops("reconcile", "--workbook", str(team), "--now", "2026-11-20T10:00+09:00"),
         f"cannot write team.xlsx in the folder {team.parent}: Permission denied; nothing was written")
    assert team.read_bytes() == before


def test_an_export_into_a_missing_folder_names_the_folder(team, tmp_path):
    """It named the temporary file (.x.csv.manzl06_.tmp), which the person never asked for."""
    out = tmp_path / "missing" / "x.csv"
    said(salesops("export-operations", "--workbook", str(team), "--out", str(out)),
         f"cannot write x.csv in the folder {out.parent}: No such file or directory; nothing was written")


def test_a_new_file_gets_the_mode_any_program_would_give_it(tmp_path):
    """mkstemp makes its file 0600: a first export (or workbook) would be unreadable to the group."""
    out = tmp_path / "new.csv"
    replace_atomically(out, lambda tmp: Path(tmp).write_text("x", encoding="utf-8"))
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask


def _zip_with(path, drop=(), damage=()):
    """A copy of the demo-sized workbook with parts left out or their XML cut short."""
    source = write_book(path.with_name("source.xlsx"), team_tabs([customer("C001")], []))
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(path, "w") as new:
        for item in old.infolist():
            if item.filename not in drop:
                new.writestr(item, b"<unclosed" if item.filename in damage else old.read(item.filename))
    source.unlink()


NOT_XLSX = {
    "folder": (lambda p: p.mkdir(), "(it is a folder)"),
    "text": (lambda p: p.write_text("お客様番号,姓\n"), "(not the zip archive every .xlsx is"),
    "empty": (lambda p: p.write_bytes(b""), "(not the zip archive every .xlsx is"),
    "old xls renamed": (lambda p: p.write_bytes(bytes.fromhex("D0CF11E0A1B11AE1") + bytes(504)), "(not the zip"),
    "zip of something else": (lambda p: _zip_with(p, drop=("[Content_Types].xml",)),
                              "(a zip archive, but there is no item named '[Content_Types].xml' in the archive)"),
    "damaged sheet": (lambda p: _zip_with(p, damage=("xl/worksheets/sheet1.xml",)), "(damaged XML inside: unclosed"),
}


@pytest.mark.parametrize("kind", NOT_XLSX)
def test_a_path_that_is_not_an_xlsx_is_refused_in_one_line(tmp_path, kind):
    """A folder, a renamed file or a damaged archive gave a hundred-line traceback (IsADirectoryError,
    BadZipFile, KeyError, ParseError)."""
    make, why = NOT_XLSX[kind]
    path = tmp_path / "fake.xlsx"
    make(path)
    before = None if path.is_dir() else path.read_bytes()
    said(salesops("reconcile", "--workbook", str(path), "--now", "2026-11-20T10:00+09:00"),
         f"error: {path} is not an .xlsx workbook {why}")
    assert before is None or path.read_bytes() == before


@pytest.mark.parametrize("command", [["digest"], ["merge"], ["export-operations", "--out", "ops.csv"]])
def test_every_command_that_opens_a_workbook_refuses_one_that_is_not(tmp_path, command, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("fake.xlsx").write_text("not a workbook")
    said(salesops(*command, "--workbook", "fake.xlsx"), "error: fake.xlsx is not an .xlsx workbook (not the zip")
    assert Path("fake.xlsx").read_text() == "not a workbook" and not Path("ops.csv").exists()


@pytest.mark.parametrize("name", ["team.xlsm", "team.xls", "team.xltx", "team"])
def test_any_suffix_but_xlsx_is_refused(tmp_path, name):
    """openpyxl saved an .xlsm without its macros, and with a content type Excel then refuses."""
    path = write_book(tmp_path / "team.xlsx", team_tabs([customer("C001")], [])).rename(tmp_path / name)
    before = path.read_bytes()
    said(salesops("reconcile", "--workbook", str(path), "--now", "2026-11-20T10:00+09:00"),
         f"error: {path} is not an .xlsx workbook: only .xlsx is read and written (openpyxl would drop an .xlsm's macros")
    assert path.read_bytes() == before
    assert LocalWorkbook(tmp_path / "TEAM.XLSX").path.name == "TEAM.XLSX"  # the case of the suffix is no matter


def _open_in_excel(path):
    (path.parent / f"~${path.name}").write_bytes(b"\x07person" + bytes(150))


def _open_in_libreoffice(path):
    (path.parent / f".~lock.{path.name}#").write_text("person,host,/home/person,20.11.2026 09:58,/home/person/.config;\n")


def _made_read_only(path):
    path.chmod(0o444)


@pytest.mark.parametrize(("person", "says"), [
    (_open_in_excel, "is open in Excel or LibreOffice (~$team.xlsx is next to it): close it there and run again, "
                     "or delete ~$team.xlsx if nobody has it open; nothing was written"),
    (_open_in_libreoffice, "is open in Excel or LibreOffice (.~lock.team.xlsx# is next to it)"),
    (_made_read_only, "is read-only: make it writable to let the run write; nothing was written"),
])
def test_a_workbook_open_elsewhere_or_read_only_is_refused_before_anything_is_sent(team, mapping, person, says):
    """It was replaced anyway: the person's next save in Excel put their copy back over the run's rows,
    送信済 marks among them (the notices would go again), and a read-only file was overwritten without
    a word. The check is at the write, which comes before the tell: nothing is sent, the file is as it
    was, and a run that writes nothing (a dry run, an export) still reads it."""
    person(team)
    before = team.read_bytes()
    SENT.clear()
    with pytest.raises(CannotWrite, match=re.escape(says)):
        run(LocalWorkbook(team), mapping, NOW, record)
    assert SENT == [] and team.read_bytes() == before
    said(salesops("reconcile", "--workbook", str(team), "--now", "2026-11-20T10:00+09:00"), f"error: {team} {says}")
    assert team.read_bytes() == before
    assert run(LocalWorkbook(team), mapping, NOW, record, dry_run=True).plan
    for lock in team.parent.glob("*team.xlsx*"):
        if lock != team:
            lock.unlink()  # the person closed it
    team.chmod(0o644)
    assert run(LocalWorkbook(team), mapping, NOW, record).sent and SENT  # the same run writes and sends



def test_columns_the_run_adds_are_wide_enough_for_a_date_time(tmp_path):
    """Excel's default column (8.43 characters) shows yyyy/mm/dd hh:mm as ####; a width a person
    gave a column stays."""
    path = write_book(tmp_path / "team.xlsx", team_tabs([customer("C001")], [booking("R001", "C001", "2026/11/25 14:00")]))
    wb = openpyxl.load_workbook(path)
    first = wb["予約"].max_column + 1  # where the run puts 予約's first pipeline column
    first_new, second_new = get_column_letter(first), get_column_letter(first + 1)
    wb["予約"].column_dimensions.group(first_new, second_new)  # one <col> over both, as Excel saves a selection
    wb["予約"].column_dimensions[first_new].width = 11
    wb.save(path)
    run(LocalWorkbook(path), load_mapping(), NOW, lambda *m: None)
    wb = openpyxl.load_workbook(path)

    def widths(title: str) -> dict[str, float | None]:
        """Each header's width, from the <col> range that holds its column (openpyxl keys a range by
        its first letter, and looking another up would add a column of the default width)."""
        dims = list(wb[title].column_dimensions.values())
        return {c.value: next((d.width for d in dims if d.min <= c.column <= d.max), None) for c in wb[title][1]}

    spans = sorted((d.min, d.max) for d in wb["予約"].column_dimensions.values())
    assert all(a[1] < b[0] for a, b in itertools.pairwise(spans))  # no two <col> ranges overlap
    bookings = widths("予約")
    assert bookings.pop(wb["予約"][f"{first_new}1"].value) == bookings.pop(wb["予約"][f"{second_new}1"].value) == 11
    assert all(bookings[h] >= 18 for h in ("前回担当", "アラート"))
    assert min(widths("通知").values()) >= 18 and min(widths("変更履歴").values()) >= 18
