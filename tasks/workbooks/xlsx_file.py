"""What the local adapter refuses, in one line, before openpyxl or a person could lose something.

- Any suffix but .xlsx: openpyxl drops an .xlsm's macros (and its content type, so Excel refuses
  the file it saves), and reads no .xls.
- A path that is not an .xlsx inside (a folder, an empty or renamed file, a damaged archive):
  openpyxl raises one of several exceptions, each with a long traceback.
- Replacing a workbook that is read-only, or open in Excel or LibreOffice (their lock file is next
  to it): the person's next save there would replace the run's rows, its 送信済 marks among them,
  and the notices would go again. Checked when the run writes, which is before it sends.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from xml.etree.ElementTree import ParseError

from tasks.files import CannotWrite


class NotAWorkbook(ValueError):
    """The path is not an .xlsx workbook; nothing was read or written."""


def check_suffix(path: Path) -> None:
    if path.suffix.lower() != ".xlsx":
        raise NotAWorkbook(f"{path} is not an .xlsx workbook: only .xlsx is read and written (openpyxl would drop "
                           "an .xlsm's macros, and reads no .xls); save a copy as .xlsx")


@contextmanager
def opened_as_xlsx(path: Path) -> Iterator[None]:
    """openpyxl's errors for a file that is not an .xlsx, as one line."""
    try:
        yield
    except IsADirectoryError:
        raise NotAWorkbook(f"{path} is not an .xlsx workbook (it is a folder)") from None
    except zipfile.BadZipFile:
        raise NotAWorkbook(f"{path} is not an .xlsx workbook (not the zip archive every .xlsx is: "
                           "an old .xls, or another file renamed?)") from None
    except KeyError as exc:  # zipfile's: a part every workbook has is missing
        missing = str(exc.args[0])  # "There is no item named '[Content_Types].xml' in the archive"
        raise NotAWorkbook(f"{path} is not an .xlsx workbook (a zip archive, but {missing[:1].lower()}{missing[1:]})") from None
    except ParseError as exc:
        raise NotAWorkbook(f"{path} is not an .xlsx workbook (damaged XML inside: {exc})") from None


def check_replaceable(path: Path) -> None:
    """Read-only is the file's mode as well as this user's access: root may write any file, but a
    workbook someone made read-only is not the run's to change."""
    target = path.resolve()
    for place in dict.fromkeys((path, target)):  # a symlink: Excel may have opened either name
        for lock in (place.with_name(f"~${place.name}"), place.with_name(f".~lock.{place.name}#")):
            if lock.exists():
                raise CannotWrite(f"{path} is open in Excel or LibreOffice ({lock.name} is next to it): close it there and "
                                  f"run again, or delete {lock.name} if nobody has it open; nothing was written")
    if not os.access(target, os.W_OK) or not target.stat().st_mode & 0o222:
        raise CannotWrite(f"{path} is read-only: make it writable to let the run write; nothing was written")
