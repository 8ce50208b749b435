"""The workbook file itself: replaced as the same file to its people, or refused in one line."""

from __future__ import annotations

import datetime as dt
import os
import stat

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.pipeline import run
from tasks.workbooks.local import LocalWorkbook
from tests.conftest import NOW, booking, customer, tab_records, team_tabs, write_book

SENT: list = []


def record(recipient, title, body, key):
    SENT.append((recipient, title, body, key))


@pytest.fixture
def team(tmp_path):
    tabs = team_tabs([customer("C001", 電話番号="090-1234-5678")], [booking("R001", "C001", dt.datetime(2026, 11, 25, 14))])
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
