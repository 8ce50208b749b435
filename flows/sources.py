"""Where a run reads and writes, and how it tells people: chosen in one place for every flow."""

from __future__ import annotations

import os
from pathlib import Path

from tasks.tell import Send, console
from tasks.workbooks.local import LocalWorkbook
from tasks.workbooks.port import Workbook


class SourceError(ValueError):
    """The run was not told where the sheets are, or told two places."""


def open_book(workbook: str | None, spreadsheet: str | None, *, credentials: str | None = None,
              endpoint: str | None = None) -> tuple[Workbook, str]:
    """The workbook port for a local file or a Google spreadsheet, and a link for people."""
    if bool(workbook) == bool(spreadsheet):
        raise SourceError("give exactly one of a workbook path or a spreadsheet id")
    if workbook:
        return LocalWorkbook(workbook), Path(workbook).resolve().as_uri()
    from tasks.workbooks.google import open_google

    endpoint = endpoint or os.environ.get("SALESOPS_SHEETS_ENDPOINT")
    return open_google(spreadsheet, credentials=credentials, endpoint=endpoint)


def sender() -> Send:
    """The configured notification routing, or the console when none is configured."""
    return console
