"""A Google Sheets API v4 stand-in served over loopback HTTP, for tests.

No test machine reaches Google, so the real gspread client talks to this server
instead. It keeps spreadsheets in memory and answers the subset of Sheets API v4
that gspread and our adapter use, with the shapes and semantics recorded from
Google in tests/cassettes (tests/test_sheets_standin.py replays those
recordings against it and compares every answer).

Served: spreadsheets.get, spreadsheets.batchUpdate (addSheet, deleteSheet,
updateSheetProperties, insertDimension, deleteDimension, appendDimension,
updateCells, appendCells, repeatCell; atomic), values.get/batchGet/update/batchUpdate/append/
clear/batchClear, and POST /token for service-account JWT grants.

A write that takes a spreadsheet's grids (every tab's rows x columns) past 10 million cells is
refused whole with Google's 400 (`add_spreadsheet(..., cell_limit=N)` lowers the limit for a test).

Not modelled: Drive (files, sharing, 403s), other batchUpdate requests (answered
400 naming the request), cell formatting other than numberFormat, notes,
validation, protected ranges, dataFilters, quotas (inject "429" instead).
Formulas: arithmetic, & and same-sheet references with SUM/MIN/MAX/AVERAGE are
evaluated; any other formula shows its cached xlsx value, else #NAME?.

Use it in-process (``with SheetsStandin() as s: ...``; ``gspread_client(s.url)``)
or as a process:
``python -m tests.sheets_standin --port P --id ID --load team.xlsx --save out.xlsx``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import functools
import json
import numbers
import os
import random
import re
import secrets
import signal
import socket
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo

import gspread

# --------------------------------------------------------------------------
# Constants and Google's error bodies
# --------------------------------------------------------------------------

DEFAULT_ROWS = 1000
DEFAULT_COLS = 26
CELL_LIMIT = 10_000_000  # per spreadsheet, over every tab's whole grid
EPOCH = datetime(1899, 12, 30)
DATETIME_PATTERN = "yyyy/mm/dd hh:mm"
DATE_PATTERN = "yyyy/mm/dd"
SHEET_ZONE = ZoneInfo("Asia/Tokyo")
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
RENDER_OPTIONS = ("FORMATTED_VALUE", "UNFORMATTED_VALUE", "FORMULA")
DATETIME_OPTIONS = ("SERIAL_NUMBER", "FORMATTED_STRING")
INPUT_OPTIONS = ("RAW", "USER_ENTERED")
DIMENSIONS = ("ROWS", "COLUMNS")

# Recorded from sheets.googleapis.com (cassettes/gargle_error_bodies, quota 429).
QUOTA_429_BODY = {
    "error": {
        "code": 429,
        "message": (
            "Quota exceeded for quota metric 'Read requests' and limit 'Read requests "
            "per minute per user' of service 'sheets.googleapis.com' for consumer "
            "'project_number:603366585132'."
        ),
        "status": "RESOURCE_EXHAUSTED",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "RATE_LIMIT_EXCEEDED",
                "domain": "googleapis.com",
                "metadata": {
                    "quota_limit_value": "60",
                    "service": "sheets.googleapis.com",
                    "consumer": "projects/603366585132",
                    "quota_unit": "1/min/{project}/{user}",
                    "quota_location": "global",
                    "quota_metric": "sheets.googleapis.com/read_requests",
                    "quota_limit": "ReadRequestsPerMinutePerUser",
                },
            },
            {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [
                    {
                        "description": "Request a higher quota limit.",
                        "url": "https://cloud.google.com/docs/quotas/help/request_increase",
                    }
                ],
            },
        ],
    }
}
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
FAULT_MESSAGES = {
    500: "Internal error encountered.",
    503: "The service is currently unavailable.",
}
UNAUTHENTICATED_MESSAGE = (
    "Request is missing required authentication credential. Expected OAuth 2 access "
    "token, login cookie or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)


class ApiError(Exception):
    """A Google-shaped error; raising it anywhere answers the request with it."""

    def __init__(self, code: int, message: str, details: list | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def body(self) -> dict:
        """Google's error envelope."""
        error = {"code": self.code, "message": self.message, "status": STATUS_NAMES[self.code]}
        if self.details:
            error["details"] = self.details
        return {"error": error}


def bad_request(message: str) -> ApiError:
    """Most validation failures are 400 INVALID_ARGUMENT at Google."""
    return ApiError(400, message)


# --------------------------------------------------------------------------
# A1 notation
# --------------------------------------------------------------------------

CELL_RE = re.compile(r"\$?([A-Za-z]{0,3})\$?(\d*)")
PLAIN_TITLE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
CELL_LIKE_TITLE_RE = re.compile(r"[A-Za-z]{1,3}\d+|[Rr]\d*[Cc]\d*")


def col_letters(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def col_index(letters: str) -> int:
    """A -> 0, Z -> 25, AA -> 26."""
    index = 0
    for ch in letters.upper():
        index = index * 26 + ord(ch) - 64
    return index - 1


def quote_title(title: str) -> str:
    """Quote a tab name the way Google does in answers: only where needed."""
    if PLAIN_TITLE_RE.fullmatch(title) and not CELL_LIKE_TITLE_RE.fullmatch(title):
        return title
    return "'" + title.replace("'", "''") + "'"


@dataclass(frozen=True)
class Rect:
    """Half-open cell rectangle; r1/c1 None means 'to the end of the grid'."""

    r0: int
    c0: int
    r1: int | None
    c1: int | None
    anchor: bool = False  # written as one cell ("A1"): values may extend from it

    def clip(self, rows: int, cols: int) -> Rect:
        r1 = rows if self.r1 is None else min(self.r1, rows)
        c1 = cols if self.c1 is None else min(self.c1, cols)
        return Rect(self.r0, self.c0, r1, c1, self.anchor)


WHOLE = Rect(0, 0, None, None)


def a1(title: str, rect: Rect) -> str:
    """Format a concrete rectangle as Google writes it back ('Tab'!A1:B2 or Tab!A1)."""
    start = f"{col_letters(rect.c0)}{rect.r0 + 1}"
    if rect.r1 - rect.r0 <= 1 and rect.c1 - rect.c0 <= 1:
        return f"{quote_title(title)}!{start}"
    return f"{quote_title(title)}!{start}:{col_letters(rect.c1 - 1)}{rect.r1}"


def split_range(text: str) -> tuple[str | None, str | None]:
    """Split 'Tab'!A1:B2 / Tab!A1 / Tab / A1:B2 into (title, cells); bare -> (None, text)."""
    if text.startswith("'"):
        return _split_quoted(text)
    if "!" in text:
        title, cells = text.rsplit("!", 1)
        return title, cells
    return None, text


def _split_quoted(text: str) -> tuple[str, str | None]:
    """Read a quoted tab name ('' is an escaped quote) and what follows it."""
    chars, i = [], 1
    while i < len(text):
        if text[i] != "'":
            chars.append(text[i])
            i += 1
        elif text[i + 1 : i + 2] == "'":
            chars.append("'")
            i += 2
        else:
            rest = text[i + 1 :]
            if rest and not rest.startswith("!"):
                raise ValueError(text)
            return "".join(chars), (rest[1:] if rest else None)
    raise ValueError(text)


def _endpoint(text: str) -> tuple[int | None, int | None]:
    """One side of a range: (row, col), each None when not given."""
    m = CELL_RE.fullmatch(text)
    if not m or not (m[1] or m[2]) or (m[2] and int(m[2]) == 0):
        raise ValueError(text)
    return (int(m[2]) - 1 if m[2] else None), (col_index(m[1]) if m[1] else None)


def parse_cells(text: str) -> Rect:
    """Parse the cell part of A1 notation: A1, A1:C5, A:A, 2:3, A2:Z, A1:1."""
    parts = text.split(":")
    if len(parts) == 1:
        row, col = _endpoint(parts[0])
        if row is None or col is None:
            raise ValueError(text)
        return Rect(row, col, row + 1, col + 1, anchor=True)
    if len(parts) != 2:
        raise ValueError(text)
    (ra, ca), (rb, cb) = _endpoint(parts[0]), _endpoint(parts[1])
    r0, c0 = ra or 0, ca or 0
    r1 = None if rb is None else rb + 1
    c1 = None if cb is None else cb + 1
    if r1 is not None and r1 <= r0:
        r0, r1 = r1 - 1, r0 + 1
    if c1 is not None and c1 <= c0:
        c0, c1 = c1 - 1, c0 + 1
    return Rect(r0, c0, r1, c1)


# --------------------------------------------------------------------------
# Serial dates and display formats
# --------------------------------------------------------------------------

DATE_TOKEN_RE = re.compile(r'yyyy|yy|mmmm|mmm|mm|m|dddd|ddd|dd|d|hh|h|ss|s|"[^"]*"|\\.|.', re.I)
NUMBER_PATTERN_RE = re.compile(
    r'(?P<pre>(?:"[^"]*"|[^#0.,%"])*)(?P<int>[#0,]*[#0])(?:\.(?P<dec>[0#]+))?(?P<pct>%?)(?P<suf>.*)'
)
JA_WEEKDAYS = "月火水木金土日"


def to_serial(value: datetime | date) -> float | int:
    """Days since 1899-12-30, Google's (and Excel's) date serial; aware times in the sheet's zone."""
    if not isinstance(value, datetime):
        return (value - EPOCH.date()).days
    if value.tzinfo is not None:
        value = value.astimezone(SHEET_ZONE)
    delta = value.replace(tzinfo=None) - EPOCH
    serial = delta.days + delta.seconds / 86400 + delta.microseconds / 86_400_000_000
    return int(serial) if serial == int(serial) else serial


def from_serial(serial: float) -> datetime:
    """Inverse of to_serial, rounded to the second like Sheets' display."""
    return EPOCH + timedelta(seconds=round(serial * 86400))


def is_datetime_format(fmt: dict | None) -> bool:
    """A cell shows its number as a date when its format is a date/time one."""
    if not fmt:
        return False
    if fmt.get("type") in ("DATE", "TIME", "DATE_TIME"):
        return True
    pattern = re.sub(r'"[^"]*"', "", fmt.get("pattern") or "")
    return bool(re.search(r"[ydhsm]", pattern, re.I)) and not re.search(r"[0#@]", pattern)


def _default_pattern(fmt: dict) -> str:
    """ja_JP defaults when a format names only its type."""
    return {"DATE": DATE_PATTERN, "TIME": "h:mm:ss"}.get(fmt.get("type"), "yyyy/mm/dd h:mm:ss")


def _is_minute(tokens: list[str], i: int) -> bool:
    """'m' means minutes right after an hour token or right before a seconds token."""
    units = [t.lower()[0] if re.fullmatch(r"[a-z]+", t, re.I) else "" for t in tokens]
    before = next((u for u in reversed(units[:i]) if u), "")
    after = next((u for u in units[i + 1 :] if u), "")
    return before == "h" or after == "s"


def format_serial(serial: float, pattern: str) -> str:
    """Render a date serial with a Sheets pattern (yyyy, mm, dd, hh, mm, ss, ddd)."""
    dt = from_serial(serial)
    tokens = DATE_TOKEN_RE.findall(pattern)
    return "".join(_date_token(dt, tokens, i) for i in range(len(tokens)))


def _date_token(dt: datetime, tokens: list[str], i: int) -> str:
    tok = tokens[i]
    low = tok.lower()
    if low in ("m", "mm") and _is_minute(tokens, i):
        return f"{dt.minute:0{len(low)}d}"
    values = {
        "yyyy": f"{dt.year:04d}", "yy": f"{dt.year % 100:02d}",
        "mmmm": f"{dt.month}月", "mmm": f"{dt.month}月",
        "mm": f"{dt.month:02d}", "m": str(dt.month),
        "dddd": JA_WEEKDAYS[dt.weekday()] + "曜日", "ddd": JA_WEEKDAYS[dt.weekday()],
        "dd": f"{dt.day:02d}", "d": str(dt.day),
        "hh": f"{dt.hour:02d}", "h": str(dt.hour),
        "ss": f"{dt.second:02d}", "s": str(dt.second),
    }
    if low in values:
        return values[low]
    if tok.startswith('"'):
        return tok[1:-1]
    return tok[1:] if tok.startswith("\\") else tok


def format_general(value: float) -> str:
    """Sheets' automatic number display: no '.0', about 10 significant digits."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.10g}".replace("e", "E")


def format_number(value: float, pattern: str | None) -> str:
    """Render a number with a simple pattern (#,##0 / 0.00 / 0% / ¥#,##0), else generally."""
    m = NUMBER_PATTERN_RE.fullmatch((pattern or "").split(";")[0])
    if not m:
        return format_general(value)
    if m["pct"]:
        value = value * 100
    places = len(m["dec"] or "")
    text = f"{abs(value):{',' if ',' in m['int'] else ''}.{places}f}"
    sign = "-" if value < 0 and float(text.replace(",", "")) != 0 else ""
    return f"{sign}{_literal(m['pre'])}{text}{m['pct']}{_literal(m['suf'])}"


def _literal(text: str) -> str:
    """Pattern literals: "quoted text" and \\x escapes print as themselves."""
    return re.sub(r'"([^"]*)"|\\(.)', lambda x: x[1] or x[2] or "", text)


def json_number(value: Any) -> Any:
    """Google writes integral doubles without a fraction (2, not 2.0)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


# --------------------------------------------------------------------------
# Cells and what a person types into them (USER_ENTERED)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One cell; immutable so a spreadsheet copies cheaply for atomic writes."""

    value: Any = None  # str | int | float | bool | None (for formulas: cached value)
    formula: str | None = None
    fmt: dict | None = None  # Google NumberFormat {"type", "pattern"}

    @property
    def empty(self) -> bool:
        return self.value is None and self.formula is None


NUMBER_TEXT_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
GROUPED_TEXT_RE = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
PERCENT_TEXT_RE = re.compile(r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))%")
DATE_TEXT_RE = re.compile(r"(\d{4})([-/])(\d{1,2})\2(\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?")


def _number(text: str) -> int | float:
    """'0042' -> 42, '1.50' -> 1.5."""
    number = float(text)
    return int(number) if number.is_integer() and abs(number) < 2**53 else number


def _parse_date_text(text: str, fmt: dict | None) -> tuple[Any, dict] | None:
    """'2020-01-01' / '2024/05/01 10:30' -> (serial, date format), like Sheets' parser."""
    m = DATE_TEXT_RE.fullmatch(text)
    if not m:
        return None
    year, _, month, day, hour, minute, second = m.groups()
    try:
        dt = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))
    except ValueError:
        return None
    if is_datetime_format(fmt):
        return to_serial(dt), fmt
    pattern = f"yyyy{m[2]}mm{m[2]}dd"
    if hour is not None:
        pattern += " hh:mm:ss" if second is not None else " hh:mm"
    kind = "DATE_TIME" if hour is not None else "DATE"
    return to_serial(dt), {"type": kind, "pattern": pattern}


def parse_user_entered(text: str, fmt: dict | None) -> Cell:
    """Interpret a string as if a person typed it into a cell with this format."""
    stripped = text.strip()
    if fmt and (fmt.get("type") == "TEXT" or fmt.get("pattern") == "@"):
        return Cell(text, None, fmt)
    if text.startswith("'"):
        return Cell(text[1:], None, fmt)
    if text.startswith("=") and len(text) > 1:
        return Cell(None, text, fmt)
    if NUMBER_TEXT_RE.fullmatch(stripped):
        return Cell(_number(stripped), None, fmt)
    if GROUPED_TEXT_RE.fullmatch(stripped):
        pattern = "#,##0.00" if "." in stripped else "#,##0"
        return Cell(_number(stripped.replace(",", "")), None, fmt or {"type": "NUMBER", "pattern": pattern})
    if m := PERCENT_TEXT_RE.fullmatch(stripped):
        pattern = "0.00%" if "." in m[1] else "0%"
        return Cell(float(m[1]) / 100, None, {"type": "PERCENT", "pattern": pattern})
    if stripped.upper() in ("TRUE", "FALSE"):
        return Cell(stripped.upper() == "TRUE", None, fmt)
    if parsed := _parse_date_text(stripped, fmt):
        return Cell(parsed[0], None, parsed[1])
    return Cell(text, None, fmt)


def written_cell(raw: Any, option: str, old: Cell | None) -> Cell | None:
    """The cell after writing one JSON value with RAW or USER_ENTERED."""
    fmt = old.fmt if old else None
    if raw == "" or raw is None:
        return Cell(None, None, fmt) if fmt else None
    if isinstance(raw, (bool, int, float)):
        return Cell(raw, None, fmt)
    if not isinstance(raw, str):
        raise bad_request(f"Invalid values: {json.dumps(raw)} is not a scalar.")
    if option == "RAW":
        return Cell(raw, None, fmt)
    return parse_user_entered(raw, fmt)


def python_cell(value: Any) -> Cell | None:
    """Seed a cell from a Python value; datetimes become serials with a date format."""
    if value is None or value == "" or value != value:  # value != value: NaN / NaT
        return None
    if isinstance(value, datetime):
        return Cell(to_serial(value), None, {"type": "DATE_TIME", "pattern": DATETIME_PATTERN})
    if isinstance(value, date):
        return Cell(to_serial(value), None, {"type": "DATE", "pattern": DATE_PATTERN})
    if isinstance(value, bool):
        return Cell(value)
    if isinstance(value, numbers.Real):  # numpy numbers too
        return Cell(int(value) if isinstance(value, numbers.Integral) else float(value))
    text = str(value)
    return Cell(None, text) if text.startswith("=") and len(text) > 1 else Cell(text)


# --------------------------------------------------------------------------
# Formula evaluation (arithmetic, same-sheet references, SUM/MIN/MAX/AVERAGE)
# --------------------------------------------------------------------------

FORMULA_TOKEN_RE = re.compile(
    r'\s*(?:(?P<num>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)|(?P<str>"(?:[^"]|"")*")'
    r"|(?P<ref>\$?[A-Za-z]{1,3}\$?\d+(?::\$?[A-Za-z]{1,3}\$?\d+)?)(?![\w.(])(?!\s*\()"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_.]*)|(?P<op>[-+*/^&(),]))"
)
FUNCTIONS = {
    "SUM": sum,
    "MIN": lambda xs: min(xs, default=0),
    "MAX": lambda xs: max(xs, default=0),
    "AVERAGE": lambda xs: sum(xs) / len(xs) if xs else _raise("#DIV/0!"),
}


class FormulaError(Exception):
    """Carries a Sheets error value such as #DIV/0! or #VALUE!."""


class Unsupported(FormulaError):
    """Syntax or a function this evaluator does not know (the cell keeps its cached value)."""

    def __init__(self) -> None:
        super().__init__("#NAME?")


def _raise(code: str):
    raise FormulaError(code)


class Formula:
    """A tiny recursive-descent evaluator: enough for '=4/2' and '=SUM(B2:B9)*C1'."""

    def __init__(self, sheet: Sheet, text: str, depth: int):
        self.sheet, self.depth, self.pos = sheet, depth, 0
        self.tokens = self._tokenize(text)

    @staticmethod
    def _tokenize(text: str) -> list[tuple[str, str]]:
        tokens, pos = [], 0
        while pos < len(text):
            m = FORMULA_TOKEN_RE.match(text, pos)
            if not m or m.end() == pos:
                if text[pos:].strip():
                    raise Unsupported()
                break
            tokens.append((m.lastgroup, m[m.lastgroup]))
            pos = m.end()
        return tokens

    def evaluate(self) -> Any:
        value = self._concat()
        if self.pos != len(self.tokens) or isinstance(value, list):
            raise Unsupported()
        return value

    def _peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def _take(self) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            raise Unsupported()
        self.pos += 1
        return self.tokens[self.pos - 1]

    def _concat(self) -> Any:
        value = self._sum()
        while self._peek() == "&":
            self._take()
            value = _text(value) + _text(self._sum())
        return value

    def _sum(self) -> Any:
        value = self._product()
        while self._peek() in ("+", "-"):
            op, right = self._take()[1], _num(self._product())
            value = _num(value) + right if op == "+" else _num(value) - right
        return value

    def _product(self) -> Any:
        value = self._power()
        while self._peek() in ("*", "/"):
            op, right = self._take()[1], _num(self._power())
            if op == "/" and right == 0:
                raise FormulaError("#DIV/0!")
            value = _num(value) * right if op == "*" else _num(value) / right
        return value

    def _power(self) -> Any:
        value = self._unary()
        if self._peek() == "^":
            self._take()
            return _num(value) ** _num(self._unary())
        return value

    def _unary(self) -> Any:
        if self._peek() in ("-", "+"):
            sign = -1 if self._take()[1] == "-" else 1
            return sign * _num(self._unary())
        return self._atom()

    def _atom(self) -> Any:
        kind, text = self._take()
        if kind == "num":
            return float(text)
        if kind == "str":
            return text[1:-1].replace('""', '"')
        if kind == "ref":
            return self._reference(text)
        if kind == "name":
            return self._call(text.upper())
        if text == "(":
            value = self._concat()
            if self._take()[1] != ")":
                raise Unsupported()
            return value
        raise Unsupported()

    def _reference(self, text: str) -> Any:
        rect = parse_cells(text.replace("$", ""))
        if ":" in text:
            return [self._cell_value(r, c) for r in range(rect.r0, rect.r1) for c in range(rect.c0, rect.c1)]
        return self._cell_value(rect.r0, rect.c0)

    def _cell_value(self, row: int, col: int) -> Any:
        return self.sheet.effective(row, col, self.depth + 1)

    def _call(self, name: str) -> Any:
        if name in ("TRUE", "FALSE") and self._peek() != "(":
            return name == "TRUE"
        if name not in FUNCTIONS or self._take()[1] != "(":
            raise Unsupported()
        args = [] if self._peek() == ")" else self._arguments()
        self._take()
        numbers = [x for arg in args for x in (arg if isinstance(arg, list) else [arg])]
        return FUNCTIONS[name]([x for x in numbers if isinstance(x, (int, float)) and not isinstance(x, bool)])

    def _arguments(self) -> list:
        args = [self._concat()]
        while self._peek() == ",":
            self._take()
            args.append(self._concat())
        return args


def _num(value: Any) -> float:
    """Arithmetic operand: blanks are 0, text is #VALUE! (as in Sheets)."""
    if value is None or value == "":
        return 0.0
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and NUMBER_TEXT_RE.fullmatch(value.strip()):
        return float(value)
    raise FormulaError("#VALUE!")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    return format_general(value) if isinstance(value, (int, float)) else str(value)


# --------------------------------------------------------------------------
# Sheets and spreadsheets
# --------------------------------------------------------------------------


class Sheet:
    """One tab: a sparse grid of Cells with Google's grid size and properties."""

    def __init__(self, sheet_id: int, title: str, rows: int = DEFAULT_ROWS, cols: int = DEFAULT_COLS):
        self.sheet_id, self.title, self.rows, self.cols = sheet_id, title, rows, cols
        self.hidden = False
        self.frozen = {"frozenRowCount": 0, "frozenColumnCount": 0}
        self.cells: dict[tuple[int, int], Cell] = {}

    def copy(self) -> Sheet:
        other = copy.copy(self)
        other.cells, other.frozen = dict(self.cells), dict(self.frozen)
        return other

    def get(self, row: int, col: int) -> Cell | None:
        return self.cells.get((row, col))

    def put(self, row: int, col: int, cell: Cell | None) -> None:
        if cell is None or (cell.empty and not cell.fmt):
            self.cells.pop((row, col), None)
        else:
            self.cells[(row, col)] = cell

    def is_blank(self, row: int, col: int) -> bool:
        cell = self.cells.get((row, col))
        return cell is None or cell.empty

    def effective(self, row: int, col: int, depth: int = 0) -> Any:
        """The value a cell shows, with its formula evaluated."""
        cell = self.cells.get((row, col))
        if cell is None or cell.empty:
            return None
        if cell.formula is None:
            return cell.value
        if depth > 64:
            return "#REF!"
        try:
            return json_number(Formula(self, cell.formula[1:], depth).evaluate())
        except Unsupported:
            return "#NAME?" if cell.value is None else cell.value
        except FormulaError as err:
            return str(err)
        except (OverflowError, ValueError, ZeroDivisionError):
            return "#NUM!"

    def used_extent(self) -> tuple[int, int]:
        """(rows, cols) up to the last non-blank cell."""
        keys = [key for key, cell in self.cells.items() if not cell.empty]
        return (max((r for r, _ in keys), default=-1) + 1, max((c for _, c in keys), default=-1) + 1)

    def size(self, axis: int) -> int:
        return self.rows if axis == 0 else self.cols

    def resize(self, axis: int, size: int) -> None:
        """Set rowCount/columnCount; cells beyond the new edge are gone."""
        if axis == 0:
            self.rows = size
        else:
            self.cols = size
        self.cells = {k: v for k, v in self.cells.items() if k[axis] < size}

    def insert(self, axis: int, start: int, count: int, inherit_before: bool = False) -> None:
        """Insert rows (axis 0) or columns (axis 1), shifting later ones; formats inherit."""
        moved = {_shift(k, axis, count) if k[axis] >= start else k: v for k, v in self.cells.items()}
        source = start - 1 if inherit_before else start + count
        for key, cell in list(moved.items()):
            if key[axis] == source and cell.fmt:
                for i in range(start, start + count):
                    moved[_with(key, axis, i)] = Cell(fmt=cell.fmt)
        self.cells = moved
        self.resize(axis, self.size(axis) + count)

    def delete(self, axis: int, start: int, count: int) -> None:
        """Delete rows or columns, shifting later ones back."""
        end = start + count
        self.cells = {
            (_shift(k, axis, -count) if k[axis] >= end else k): v
            for k, v in self.cells.items()
            if not start <= k[axis] < end
        }
        self.resize(axis, self.size(axis) - count)

    def properties(self, index: int) -> dict:
        """SheetProperties as Google answers them."""
        grid = {"rowCount": self.rows, "columnCount": self.cols}
        grid.update({k: v for k, v in self.frozen.items() if v})
        props = {"sheetId": self.sheet_id, "title": self.title, "index": index, "sheetType": "GRID"}
        props["gridProperties"] = grid
        if self.hidden:
            props["hidden"] = True
        return props


def _shift(key: tuple[int, int], axis: int, delta: int) -> tuple[int, int]:
    return (key[0] + delta, key[1]) if axis == 0 else (key[0], key[1] + delta)


def _with(key: tuple[int, int], axis: int, value: int) -> tuple[int, int]:
    return (value, key[1]) if axis == 0 else (key[0], value)


class Spreadsheet:
    """A spreadsheet: ordered tabs plus the properties spreadsheets.get answers."""

    def __init__(self, spreadsheet_id: str, title: str, cell_limit: int = CELL_LIMIT):
        self.spreadsheet_id, self.title = spreadsheet_id, title
        self.cell_limit = cell_limit
        self.sheets: list[Sheet] = []
        self._rng = random.Random(spreadsheet_id)

    def cells(self) -> int:
        """Grid cells, as Google counts them against the limit: blank ones too."""
        return sum(s.rows * s.cols for s in self.sheets)

    def over_limit(self, before: int) -> str | None:
        """Google's words when a change took the grids past the limit (one already past may shrink)."""
        now = self.cells()
        if now > before and now > self.cell_limit:
            return f"This action would increase the number of cells in the workbook above the limit of {self.cell_limit} cells."
        return None

    def copy(self) -> Spreadsheet:
        other = copy.copy(self)
        other.sheets = [s.copy() for s in self.sheets]
        other._rng = random.Random()
        other._rng.setstate(self._rng.getstate())
        return other

    def new_sheet_id(self) -> int:
        """Google picks a random positive 31-bit id for every added sheet."""
        taken = {s.sheet_id for s in self.sheets}
        while (candidate := self._rng.randint(1, 2**31 - 1)) in taken:
            pass
        return candidate

    def add_sheet(self, title: str, rows: int = DEFAULT_ROWS, cols: int = DEFAULT_COLS) -> Sheet:
        sheet = Sheet(0 if not self.sheets else self.new_sheet_id(), title, rows, cols)
        self.sheets.append(sheet)
        return sheet

    def by_title(self, title: str) -> Sheet | None:
        """Exact title first, then case-insensitively (Sheets accepts either)."""
        exact = next((s for s in self.sheets if s.title == title), None)
        return exact or next((s for s in self.sheets if s.title.casefold() == title.casefold()), None)

    def by_id(self, sheet_id: int) -> Sheet | None:
        return next((s for s in self.sheets if s.sheet_id == sheet_id), None)

    def resolve(self, text: str) -> tuple[Sheet, Rect]:
        """A1 range -> (sheet, rect); a bare valid range means the first visible sheet."""
        try:
            title, cells = split_range(text)
            if title is None:
                return self._resolve_bare(text)
            sheet = self.by_title(title)
            rect = parse_cells(cells) if cells is not None else WHOLE
        except ValueError:
            sheet = None
        if sheet is None:
            raise bad_request(f"Unable to parse range: {text}")
        return sheet, rect

    def _resolve_bare(self, text: str) -> tuple[Sheet, Rect]:
        try:
            rect = parse_cells(text)
        except ValueError:
            sheet = self.by_title(text)
            if sheet is None:
                raise
            return sheet, WHOLE
        return next(s for s in self.sheets if not s.hidden), rect

    def metadata(self) -> dict:
        return {
            "spreadsheetId": self.spreadsheet_id,
            "properties": {"title": self.title, "locale": "ja_JP", "timeZone": "Asia/Tokyo"},
            "sheets": [{"properties": s.properties(i)} for i, s in enumerate(self.sheets)],
            "spreadsheetUrl": f"https://docs.google.com/spreadsheets/d/{self.spreadsheet_id}/edit",
        }


def grid_limits(sheet: Sheet, written: str) -> ApiError:
    return bad_request(
        f"Range ({written}) exceeds grid limits. Max rows: {sheet.rows}, max columns: {sheet.cols}"
    )


def clip_for_read(sheet: Sheet, rect: Rect) -> Rect:
    """Clip a requested range to the grid; a start outside the grid is an error."""
    if rect.r0 >= sheet.rows or rect.c0 >= sheet.cols:
        raise grid_limits(sheet, a1(sheet.title, Rect(rect.r0, rect.c0, rect.r0 + 1, rect.c0 + 1)))
    return rect.clip(sheet.rows, sheet.cols)


# --------------------------------------------------------------------------
# Reading values
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Render:
    """valueRenderOption and dateTimeRenderOption of a read."""

    value: str = "FORMATTED_VALUE"
    date_time: str = "SERIAL_NUMBER"


def render_cell(sheet: Sheet, row: int, col: int, how: Render) -> Any:
    """A cell as values.get answers it (None for blank)."""
    cell = sheet.get(row, col)
    if cell is None or cell.empty:
        return None
    if how.value == "FORMULA" and cell.formula:
        return cell.formula
    value = sheet.effective(row, col)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return ("TRUE" if value else "FALSE") if how.value == "FORMATTED_VALUE" else value
    if is_datetime_format(cell.fmt):
        pattern = cell.fmt.get("pattern") or _default_pattern(cell.fmt)
        if how.value == "FORMATTED_VALUE" or how.date_time == "FORMATTED_STRING":
            return format_serial(value, pattern)
        return json_number(value)
    if how.value == "FORMATTED_VALUE":
        return format_number(value, (cell.fmt or {}).get("pattern"))
    return json_number(value)


def trim_rows(matrix: list[list[Any]]) -> list[list[Any]]:
    """Drop trailing blanks of each row and trailing empty rows; blanks inside become ''."""
    rows = []
    for line in matrix:
        while line and line[-1] is None:
            line = line[:-1]
        rows.append(["" if v is None else v for v in line])
    while rows and not rows[-1]:
        rows.pop()
    return rows


def read_matrix(sheet: Sheet, rect: Rect, how: Render, major: str = "ROWS") -> list[list[Any]]:
    matrix = [[render_cell(sheet, r, c, how) for c in range(rect.c0, rect.c1)] for r in range(rect.r0, rect.r1)]
    if major == "COLUMNS":
        matrix = [list(col) for col in zip(*matrix, strict=True)]
    return trim_rows(matrix)


def value_range(sheet: Sheet, rect: Rect, how: Render, major: str) -> dict:
    """ValueRange: 'values' is absent when the range holds nothing."""
    answer = {"range": a1(sheet.title, rect), "majorDimension": major}
    values = read_matrix(sheet, rect, how, major)
    if values:
        answer["values"] = values
    return answer


# --------------------------------------------------------------------------
# Writing values
# --------------------------------------------------------------------------


@dataclass
class Write:
    """What one values write did, for UpdateValuesResponse."""

    sheet: Sheet
    rect: Rect
    rows: set = field(default_factory=set)
    cols: set = field(default_factory=set)
    cells: int = 0

    def response(self, spreadsheet_id: str, how: Render | None = None) -> dict:
        answer = {"spreadsheetId": spreadsheet_id, "updatedRange": a1(self.sheet.title, self.rect)}
        if self.cells:
            answer.update(updatedRows=len(self.rows), updatedColumns=len(self.cols), updatedCells=self.cells)
        if how is not None:
            answer["updatedData"] = value_range(self.sheet, self.rect, how, "ROWS")
        return answer


def check_values(values: Any, major: str | None = None) -> list[list[Any]]:
    """Validate the JSON 'values' field and return it as rows."""
    if values is None:
        return []
    if not isinstance(values, list) or not all(isinstance(v, list) for v in values):
        text = json.dumps(values, ensure_ascii=False)
        message = f"Invalid value at 'data.values' (type.googleapis.com/google.protobuf.ListValue), {text}"
        violation = {"field": "data.values", "description": message}
        details = [{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [violation]}]
        raise ApiError(400, message, details)
    if (major or "ROWS") == "COLUMNS":
        width = max((len(v) for v in values), default=0)
        values = [[col[i] if i < len(col) else None for col in values] for i in range(width)]
    return values


def _check_fits(sheet: Sheet, rect: Rect, text: str, height: int, width: int) -> None:
    """Writes must stay inside the requested range (unless it is one anchor cell) and the grid."""
    if not rect.anchor:
        area = rect.clip(sheet.rows, sheet.cols)
        if height > area.r1 - rect.r0:
            raise bad_request(f"Requested writing within range [{text}], but tried writing to row [{rect.r0 + height}]")
        if width > area.c1 - rect.c0:
            column = col_letters(rect.c0 + width - 1)
            raise bad_request(f"Requested writing within range [{text}], but tried writing to column [{column}]")
    if rect.r0 + max(height, 1) > sheet.rows or rect.c0 + max(width, 1) > sheet.cols:
        target = Rect(rect.r0, rect.c0, rect.r0 + max(height, 1), rect.c0 + max(width, 1))
        raise grid_limits(sheet, a1(sheet.title, target))


def write_values(sheet: Sheet, rect: Rect, text: str, values: list[list[Any]], option: str) -> Write:
    """values.update semantics: null leaves a cell, '' clears it, the rest is parsed."""
    height, width = len(values), max((len(v) for v in values), default=0)
    _check_fits(sheet, rect, text, height, width)
    if width:
        target = Rect(rect.r0, rect.c0, rect.r0 + height, rect.c0 + width)
    else:  # nothing to write: Google echoes the requested range
        target = Rect(rect.r0, rect.c0, rect.r0 + 1, rect.c0 + 1) if rect.anchor else rect.clip(sheet.rows, sheet.cols)
    done = Write(sheet, target)
    for i, line in enumerate(values):
        for j, raw in enumerate(line):
            if raw is None:
                continue
            row, col = rect.r0 + i, rect.c0 + j
            sheet.put(row, col, written_cell(raw, option, sheet.get(row, col)))
            done.rows.add(row)
            done.cols.add(col)
            done.cells += 1
    return done


def find_table(sheet: Sheet, rect: Rect) -> Rect | None:
    """Google's append 'table': the region connected to the first value in the range."""
    start = next(
        ((r, c) for r in range(rect.r0, rect.r1) for c in range(rect.c0, rect.c1) if not sheet.is_blank(r, c)),
        None,
    )
    if start is None:
        return None
    seen, todo = {start}, [start]
    while todo:
        r, c = todo.pop()
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                nxt = (r + dr, c + dc)
                if nxt not in seen and not sheet.is_blank(*nxt):
                    seen.add(nxt)
                    todo.append(nxt)
    rows, cols = [r for r, _ in seen], [c for _, c in seen]
    return Rect(min(rows), min(cols), max(rows) + 1, max(cols) + 1)


# --------------------------------------------------------------------------
# spreadsheets.batchUpdate requests
# --------------------------------------------------------------------------


def parse_field_mask(text: str | None) -> set[str]:
    """'a.b,c(d,e)' or 'a/b' -> {'a.b', 'c.d', 'c.e'}."""
    fields, depth, current = set(), 0, ""
    for ch in (text or "") + ",":
        if ch == "," and depth == 0:
            fields |= _expand_field(current.strip().replace("/", "."))
            current = ""
            continue
        depth += {"(": 1, ")": -1}.get(ch, 0)
        current += ch
    return {f for f in fields if f}


def _expand_field(name: str) -> set[str]:
    if "(" not in name:
        return {name}
    head, inner = name.split("(", 1)
    return {f"{head}.{sub}" for sub in parse_field_mask(inner[:-1])}


def covers(fields: set[str], path: str) -> bool:
    """Does the mask cover this field (directly, by a parent, or by '*')?"""
    return "*" in fields or any(path == f or path.startswith(f + ".") for f in fields)


def _sheet_for(book: Spreadsheet, sheet_id: Any) -> Sheet:
    sheet = book.by_id(sheet_id or 0)
    if sheet is None:
        raise bad_request(f"No grid with id: {sheet_id or 0}")
    return sheet


def _axis(dimension: Any) -> int:
    if dimension not in DIMENSIONS:
        raise bad_request("Invalid dimension: must be ROWS or COLUMNS.")
    return DIMENSIONS.index(dimension)


def _span(sheet: Sheet, spec: dict, axis: int, bounded: bool = False) -> tuple[int, int]:
    """DimensionRange start/end, defaulting to the whole dimension."""
    size = sheet.size(axis)
    start, end = spec.get("startIndex"), spec.get("endIndex")
    if bounded and (start is None or end is None):
        raise bad_request("Both the start and end indexes must be bounded.")
    start, end = start or 0, size if end is None else end
    if not 0 <= start < end:
        raise bad_request(f"Invalid dimension range: startIndex {start}, endIndex {end}.")
    return start, end


def _grid_rect(sheet: Sheet, spec: dict) -> Rect:
    """GridRange -> Rect; unbounded ends reach the edge of the grid."""
    end_row, end_col = spec.get("endRowIndex"), spec.get("endColumnIndex")
    rect = Rect(spec.get("startRowIndex") or 0, spec.get("startColumnIndex") or 0,
                sheet.rows if end_row is None else end_row, sheet.cols if end_col is None else end_col)
    if rect.r0 > rect.r1 or rect.c0 > rect.c1:
        raise bad_request("Invalid range: the start is after the end.")
    if rect.r1 > sheet.rows or rect.c1 > sheet.cols:
        raise grid_limits(sheet, a1(sheet.title, rect))
    return rect


def _extended_value(value: dict | None) -> tuple[Any, str | None]:
    """ExtendedValue -> (value, formula)."""
    value = value or {}
    if "formulaValue" in value:
        return None, value["formulaValue"]
    for key in ("stringValue", "numberValue", "boolValue"):
        if key in value:
            return value[key], None
    return None, None


def apply_cell_data(old: Cell | None, data: dict, fields: set[str]) -> Cell | None:
    """Write the masked parts of a CellData; only the value and numberFormat are kept."""
    value, formula, fmt = (old.value, old.formula, old.fmt) if old else (None, None, None)
    if covers(fields, "userEnteredValue"):
        value, formula = _extended_value(data.get("userEnteredValue"))
    if covers(fields, "userEnteredFormat.numberFormat"):
        fmt = (data.get("userEnteredFormat") or {}).get("numberFormat")
    cell = Cell(value, formula, fmt)
    return None if cell.empty and not fmt else cell


def req_add_sheet(book: Spreadsheet, spec: dict) -> dict:
    props = spec.get("properties") or {}
    title = props.get("title") or _free_title(book)
    if book.by_title(title):
        raise bad_request(f'A sheet with the name "{title}" already exists. Please enter another name.')
    sheet_id = props.get("sheetId")
    if sheet_id is not None and book.by_id(sheet_id):
        raise bad_request(f"A sheet with the id {sheet_id} already exists.")
    grid = props.get("gridProperties") or {}
    sheet = Sheet(book.new_sheet_id() if sheet_id is None else sheet_id, title,
                  grid.get("rowCount", DEFAULT_ROWS), grid.get("columnCount", DEFAULT_COLS))
    sheet.hidden = bool(props.get("hidden"))
    book.sheets.insert(min(props.get("index", len(book.sheets)), len(book.sheets)), sheet)
    return {"addSheet": {"properties": sheet.properties(book.sheets.index(sheet))}}


def _free_title(book: Spreadsheet) -> str:
    n = len(book.sheets) + 1
    while book.by_title(f"Sheet{n}"):
        n += 1
    return f"Sheet{n}"


def req_delete_sheet(book: Spreadsheet, spec: dict) -> dict:
    sheet = book.by_id(spec.get("sheetId"))
    if sheet is None:
        raise bad_request(f"No sheet with id: {spec.get('sheetId')}")
    if not [s for s in book.sheets if s is not sheet and not s.hidden]:
        raise bad_request("You can't remove all the visible sheets in a document.")
    book.sheets.remove(sheet)
    return {}


def req_update_sheet_properties(book: Spreadsheet, spec: dict) -> dict:
    props, fields = spec.get("properties") or {}, parse_field_mask(spec.get("fields"))
    if not fields:
        raise bad_request("At least one field must be specified.")
    sheet = _sheet_for(book, props.get("sheetId"))
    if covers(fields, "title") and props.get("title") and props["title"] != sheet.title:
        if book.by_title(props["title"]) not in (None, sheet):
            raise bad_request(f'A sheet with the name "{props["title"]}" already exists. Please enter another name.')
        sheet.title = props["title"]
    if covers(fields, "hidden"):
        _set_hidden(book, sheet, bool(props.get("hidden")))
    if covers(fields, "index") and props.get("index") is not None:
        book.sheets.remove(sheet)
        book.sheets.insert(min(props["index"], len(book.sheets)), sheet)
    _update_grid(sheet, props.get("gridProperties") or {}, fields)
    return {}


def _set_hidden(book: Spreadsheet, sheet: Sheet, hidden: bool) -> None:
    if hidden and not [s for s in book.sheets if s is not sheet and not s.hidden]:
        raise bad_request("You can't hide all the sheets in a document.")
    sheet.hidden = hidden


def _update_grid(sheet: Sheet, grid: dict, fields: set[str]) -> None:
    for axis, key in enumerate(("rowCount", "columnCount")):
        if covers(fields, f"gridProperties.{key}") and grid.get(key) is not None:
            if grid[key] < 1:
                raise bad_request(f"Invalid {key}: must be at least 1.")
            sheet.resize(axis, grid[key])
    for key in sheet.frozen:
        if covers(fields, f"gridProperties.{key}") and key in grid:
            sheet.frozen[key] = grid[key] or 0


def req_delete_dimension(book: Spreadsheet, spec: dict) -> dict:
    rng = spec.get("range") or {}
    sheet, axis = _sheet_for(book, rng.get("sheetId")), _axis(rng.get("dimension"))
    start, end = _span(sheet, rng, axis)
    if end > sheet.size(axis):
        span = Rect(start, 0, end, sheet.cols) if axis == 0 else Rect(0, start, sheet.rows, end)
        raise grid_limits(sheet, a1(sheet.title, span))
    if start == 0 and end == sheet.size(axis):
        raise bad_request(f"You can't delete all the {DIMENSIONS[axis].lower()} on the sheet.")
    sheet.delete(axis, start, end - start)
    return {}


def req_insert_dimension(book: Spreadsheet, spec: dict) -> dict:
    rng = spec.get("range") or {}
    sheet, axis = _sheet_for(book, rng.get("sheetId")), _axis(rng.get("dimension"))
    start, end = _span(sheet, rng, axis, bounded=True)
    if start > sheet.size(axis):
        raise bad_request(f"Cannot insert at index {start}: the sheet has {sheet.size(axis)}.")
    before = bool(spec.get("inheritFromBefore"))
    if before and start == 0:
        raise bad_request("Cannot inherit from before when inserting at index 0.")
    sheet.insert(axis, start, end - start, inherit_before=before)
    return {}


def req_append_dimension(book: Spreadsheet, spec: dict) -> dict:
    sheet, axis = _sheet_for(book, spec.get("sheetId")), _axis(spec.get("dimension"))
    if (spec.get("length") or 0) < 1:
        raise bad_request("length must be greater than zero.")
    sheet.resize(axis, sheet.size(axis) + spec["length"])
    return {}


def req_update_cells(book: Spreadsheet, spec: dict) -> dict:
    fields = parse_field_mask(spec.get("fields"))
    if not fields:
        raise bad_request("At least one field must be specified.")
    rows = spec.get("rows") or []
    if "range" in spec:
        sheet = _sheet_for(book, (spec["range"] or {}).get("sheetId"))
        rect = _grid_rect(sheet, spec["range"])
        cells = {(rect.r0 + i, rect.c0 + j): data for i, row in enumerate(rows)
                 for j, data in enumerate(row.get("values") or [])}
        keys = [(r, c) for r in range(rect.r0, rect.r1) for c in range(rect.c0, rect.c1)]
        cells = {key: cells.get(key, {}) for key in keys}
    else:
        start = spec.get("start") or {}
        sheet = _sheet_for(book, start.get("sheetId"))
        r0, c0 = start.get("rowIndex") or 0, start.get("columnIndex") or 0
        cells = {(r0 + i, c0 + j): data for i, row in enumerate(rows) for j, data in enumerate(row.get("values") or [])}
    _apply_cells(sheet, cells, fields)
    return {}


def req_append_cells(book: Spreadsheet, spec: dict) -> dict:
    """Rows after the last row with data (values or formulas; formats alone do not count),
    the grid growing by as many rows as they need (Google: "inserting new rows if necessary")."""
    fields = parse_field_mask(spec.get("fields"))
    if not fields:
        raise bad_request("At least one field must be specified.")
    sheet = _sheet_for(book, spec.get("sheetId"))
    rows = spec.get("rows") or []
    start = sheet.used_extent()[0]
    if start + len(rows) > sheet.rows:
        sheet.resize(0, start + len(rows))
    _apply_cells(sheet, {(start + i, j): data for i, row in enumerate(rows)
                         for j, data in enumerate(row.get("values") or [])}, fields)
    return {}


def _apply_cells(sheet: Sheet, cells: dict, fields: set[str]) -> None:
    for (row, col), data in cells.items():
        if row >= sheet.rows or col >= sheet.cols:
            raise grid_limits(sheet, a1(sheet.title, Rect(row, col, row + 1, col + 1)))
        sheet.put(row, col, apply_cell_data(sheet.get(row, col), data or {}, fields))


def req_repeat_cell(book: Spreadsheet, spec: dict) -> dict:
    fields = parse_field_mask(spec.get("fields"))
    if not fields:
        raise bad_request("At least one field must be specified.")
    sheet = _sheet_for(book, (spec.get("range") or {}).get("sheetId"))
    rect = _grid_rect(sheet, spec.get("range") or {})
    data = spec.get("cell") or {}
    _apply_cells(sheet, {(r, c): data for r in range(rect.r0, rect.r1) for c in range(rect.c0, rect.c1)}, fields)
    return {}


BATCH_REQUESTS: dict[str, Callable[[Spreadsheet, dict], dict]] = {
    "addSheet": req_add_sheet,
    "deleteSheet": req_delete_sheet,
    "updateSheetProperties": req_update_sheet_properties,
    "deleteDimension": req_delete_dimension,
    "insertDimension": req_insert_dimension,
    "appendDimension": req_append_dimension,
    "updateCells": req_update_cells,
    "appendCells": req_append_cells,
    "repeatCell": req_repeat_cell,
}


# --------------------------------------------------------------------------
# API methods: (book, request) -> answer body; they may raise ApiError
# --------------------------------------------------------------------------


@dataclass
class Call:
    """One parsed HTTP request."""

    verb: str
    spreadsheet_id: str | None
    range: str | None
    params: dict[str, list[str]]
    body: Any

    def param(self, name: str, default: str | None = None, choices: tuple = ()) -> str | None:
        """Last value of a query parameter, checked against its enum like Google does."""
        value = self.params.get(name, [default])[-1]
        if choices and value is not None and value not in choices:
            enum = name[0].upper() + name[1:]
            raise bad_request(
                f"Invalid value at '{_snake(name)}' (type.googleapis.com/google.apps.sheets.v4.{enum}), \"{value}\""
            )
        return value

    def flag(self, name: str) -> bool:
        """Booleans arrive as true/True/False (gspread sends Python's spelling)."""
        return (self.param(name) or "").lower() == "true"

    def render(self, response: bool = False) -> Render:
        """valueRenderOption/dateTimeRenderOption, or their response* twins for writes."""
        names = ("responseValueRenderOption", "responseDateTimeRenderOption") if response else (
            "valueRenderOption", "dateTimeRenderOption")
        return Render(self.param(names[0], "FORMATTED_VALUE", RENDER_OPTIONS),
                      self.param(names[1], "SERIAL_NUMBER", DATETIME_OPTIONS))

    def input_option(self, value: str | None = None) -> str:
        option = value or self.param("valueInputOption")
        if option is None:
            raise bad_request("'valueInputOption' is required but not specified")
        if option not in INPUT_OPTIONS:
            raise bad_request(f"Invalid valueInputOption: {option}")
        return option


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m[1].lower(), name)


def api_spreadsheets_get(book: Spreadsheet, call: Call) -> dict:
    for text in call.params.get("ranges", []):
        book.resolve(text)
    answer = book.metadata()
    if call.flag("includeGridData"):
        for entry, sheet in zip(answer["sheets"], book.sheets, strict=True):
            entry["data"] = [grid_data(sheet)]
    return answer


def grid_data(sheet: Sheet) -> dict:
    """GridData for includeGridData=true: value, formatted value and number format."""
    rows, cols = sheet.used_extent()
    return {"rowData": [{"values": [_cell_data(sheet, r, c) for c in range(cols)]} for r in range(rows)]}


def _cell_data(sheet: Sheet, row: int, col: int) -> dict:
    cell = sheet.get(row, col)
    if cell is None:
        return {}
    data: dict[str, Any] = {}
    if not cell.empty:
        data["userEnteredValue"] = _to_extended(cell.formula or cell.value, bool(cell.formula))
        data["effectiveValue"] = _to_extended(sheet.effective(row, col), False)
        data["formattedValue"] = render_cell(sheet, row, col, Render())
    if cell.fmt:
        data["userEnteredFormat"] = {"numberFormat": cell.fmt}
    return data


def _to_extended(value: Any, formula: bool) -> dict:
    if formula:
        return {"formulaValue": value}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, (int, float)):
        return {"numberValue": json_number(value)}
    return {"stringValue": "" if value is None else value}


def api_values_get(book: Spreadsheet, call: Call) -> dict:
    sheet, rect = book.resolve(call.range)
    major = call.param("majorDimension", "ROWS", DIMENSIONS)
    return value_range(sheet, clip_for_read(sheet, rect), call.render(), major)


def api_values_batch_get(book: Spreadsheet, call: Call) -> dict:
    major, how = call.param("majorDimension", "ROWS", DIMENSIONS), call.render()
    ranges = []
    for text in call.params.get("ranges", []):
        sheet, rect = book.resolve(text)
        ranges.append(value_range(sheet, clip_for_read(sheet, rect), how, major))
    answer = {"spreadsheetId": book.spreadsheet_id}
    if ranges:
        answer["valueRanges"] = ranges
    return answer


def _response_render(call: Call) -> Render | None:
    """What updatedData looks like, when includeValuesInResponse asks for it."""
    return call.render(response=True) if call.flag("includeValuesInResponse") else None


def api_values_update(book: Spreadsheet, call: Call) -> dict:
    option, body = call.input_option(), call.body or {}
    sheet, rect = book.resolve(call.range)
    values = check_values(body.get("values"), body.get("majorDimension"))
    done = write_values(sheet, rect, call.range, values, option)
    return done.response(book.spreadsheet_id, _response_render(call))


def api_values_batch_update(book: Spreadsheet, call: Call) -> dict:
    body = call.body or {}
    option = call.input_option(body.get("valueInputOption"))
    include = bool(body.get("includeValuesInResponse"))
    how = Render(body.get("responseValueRenderOption") or "FORMATTED_VALUE",
                 body.get("responseDateTimeRenderOption") or "SERIAL_NUMBER") if include else None
    writes = []
    for i, item in enumerate(body.get("data") or []):
        try:
            sheet, rect = book.resolve(item.get("range") or "")
            values = check_values(item.get("values"), item.get("majorDimension"))
            writes.append(write_values(sheet, rect, item.get("range"), values, option))
        except ApiError as err:
            err.message = f"Invalid data[{i}]: {err.message}"
            raise
    return _batch_update_answer(book.spreadsheet_id, writes, how)


def _batch_update_answer(spreadsheet_id: str, writes: list[Write], how: Render | None) -> dict:
    answer = {"spreadsheetId": spreadsheet_id}
    cells = sum(w.cells for w in writes)
    if cells:
        answer.update(
            totalUpdatedRows=len({(w.sheet.sheet_id, r) for w in writes for r in w.rows}),
            totalUpdatedColumns=len({(w.sheet.sheet_id, c) for w in writes for c in w.cols}),
            totalUpdatedCells=cells,
            totalUpdatedSheets=len({w.sheet.sheet_id for w in writes if w.cells}),
        )
    if writes:
        answer["responses"] = [w.response(spreadsheet_id, how) for w in writes]
    return answer


def api_values_append(book: Spreadsheet, call: Call) -> dict:
    option, body = call.input_option(), call.body or {}
    insert = call.param("insertDataOption", "OVERWRITE", ("OVERWRITE", "INSERT_ROWS")) == "INSERT_ROWS"
    sheet, rect = book.resolve(call.range)
    values = check_values(body.get("values"), body.get("majorDimension"))
    table = find_table(sheet, clip_for_read(sheet, rect))
    start = Rect(table.r1, table.c0, None, None, True) if table else Rect(rect.r0, rect.c0, None, None, True)
    if insert:
        sheet.insert(0, start.r0, len(values), inherit_before=start.r0 > 0)
    elif start.r0 + len(values) > sheet.rows:
        sheet.resize(0, start.r0 + len(values))
    done = write_values(sheet, start, call.range, values, option)
    answer = {"spreadsheetId": book.spreadsheet_id}
    if table:
        answer["tableRange"] = a1(sheet.title, table)
    answer["updates"] = done.response(book.spreadsheet_id, _response_render(call))
    return answer


def _clear(book: Spreadsheet, text: str) -> str:
    sheet, rect = book.resolve(text)
    rect = clip_for_read(sheet, rect)
    for row in range(rect.r0, rect.r1):
        for col in range(rect.c0, rect.c1):
            cell = sheet.get(row, col)
            if cell is not None:
                sheet.put(row, col, Cell(fmt=cell.fmt))
    return a1(sheet.title, rect)


def api_values_clear(book: Spreadsheet, call: Call) -> dict:
    return {"spreadsheetId": book.spreadsheet_id, "clearedRange": _clear(book, call.range)}


def api_values_batch_clear(book: Spreadsheet, call: Call) -> dict:
    cleared = [_clear(book, text) for text in (call.body or {}).get("ranges") or []]
    answer = {"spreadsheetId": book.spreadsheet_id}
    if cleared:
        answer["clearedRanges"] = cleared
    return answer


def api_batch_update(book: Spreadsheet, call: Call) -> dict:
    requests = (call.body or {}).get("requests") or []
    if not requests:
        raise bad_request("Must specify at least one request.")
    replies = [_one_request(book, i, request) for i, request in enumerate(requests)]
    return {"spreadsheetId": book.spreadsheet_id, "replies": replies}


def _one_request(book: Spreadsheet, i: int, request: dict) -> dict:
    kinds = [k for k, v in (request or {}).items() if v is not None]
    if len(kinds) != 1:
        raise bad_request(f"Invalid requests[{i}]: exactly one kind of request must be set.")
    kind = kinds[0]
    if kind not in BATCH_REQUESTS:
        raise bad_request(f"Invalid requests[{i}].{kind}: the Sheets stand-in does not support {kind}.")
    before = book.cells()
    try:
        answer = BATCH_REQUESTS[kind](book, request[kind])
        if too_many := book.over_limit(before):
            raise bad_request(too_many)
        return answer
    except ApiError as err:
        err.message = f"Invalid requests[{i}].{kind}: {err.message}"
        raise


API_METHODS: dict[str, tuple[Callable[[Spreadsheet, Call], dict], bool]] = {
    # verb: (method, writes)
    "spreadsheets.get": (api_spreadsheets_get, False),
    "spreadsheets.batchUpdate": (api_batch_update, True),
    "values.get": (api_values_get, False),
    "values.batchGet": (api_values_batch_get, False),
    "values.update": (api_values_update, True),
    "values.batchUpdate": (api_values_batch_update, True),
    "values.append": (api_values_append, True),
    "values.clear": (api_values_clear, True),
    "values.batchClear": (api_values_batch_clear, True),
}

SPREADSHEET = r"^/v4/spreadsheets/(?P<id>[^/:]+)"
ROUTES = [
    ("POST", re.compile(r"^/token$"), "token"),
    ("GET", re.compile(SPREADSHEET + r"$"), "spreadsheets.get"),
    ("POST", re.compile(SPREADSHEET + r":batchUpdate$"), "spreadsheets.batchUpdate"),
    ("GET", re.compile(SPREADSHEET + r"/values:batchGet$"), "values.batchGet"),
    ("POST", re.compile(SPREADSHEET + r"/values:batchUpdate$"), "values.batchUpdate"),
    ("POST", re.compile(SPREADSHEET + r"/values:batchClear$"), "values.batchClear"),
    ("POST", re.compile(SPREADSHEET + r"/values/(?P<range>.+):append$"), "values.append"),
    ("POST", re.compile(SPREADSHEET + r"/values/(?P<range>.+):clear$"), "values.clear"),
    ("GET", re.compile(SPREADSHEET + r"/values/(?P<range>.+)$"), "values.get"),
    ("PUT", re.compile(SPREADSHEET + r"/values/(?P<range>.+)$"), "values.update"),
]


def route(method: str, raw_path: str) -> tuple[str, str | None, str | None]:
    """Find the verb on the still-encoded path, then unquote the id and range."""
    for want, pattern, verb in ROUTES:
        m = pattern.match(raw_path)
        if m and want == method:
            groups = m.groupdict()
            rng = groups.get("range")
            return verb, unquote(groups["id"]) if "id" in groups else None, unquote(rng) if rng else None
    return "unknown", None, None


# --------------------------------------------------------------------------
# Faults, hooks and the HTTP server
# --------------------------------------------------------------------------


@dataclass
class Fault:
    """One injected fault. slow: answer late but for real; hang: wait, then drop."""

    kind: str  # "429" | "500" | "503" | "drop" | "slow" | "hang"
    target: int
    verb: str | None
    seconds: float = 0.0


def parse_fault(text: str) -> tuple[str, float]:
    if text in ("429", "500", "503", "drop"):
        return text, 0.0
    kind, _, seconds = text.partition(":")
    if kind in ("slow", "hang") and seconds:
        return kind, float(seconds)
    raise ValueError(f"unknown fault {text!r}: use 429, 500, 503, drop, slow:<seconds> or hang:<seconds>")


class _Handler(BaseHTTPRequestHandler):
    """Turns HTTP into SheetsStandin._serve calls; keeps connections alive like Google."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # headers and body are two writes: without this, Nagle + delayed ACK cost 40 ms a request
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def do_GET(self) -> None:
        self.server.standin._serve(self)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_json(self, status: int, body: dict) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log is SheetsStandin.requests."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], standin: SheetsStandin):
        self.standin = standin
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, conn: socket.socket, alive: bool) -> None:
        with self._open_lock:
            (self._open.add if alive else self._open.discard)(conn)

    def close_all(self) -> None:
        """Cut kept-alive connections so a stopped stand-in really stops answering."""
        with self._open_lock:
            for conn in list(self._open):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)


class SheetsStandin:
    """In-memory Google Sheets (API v4 subset) on http://127.0.0.1:<port>."""

    def __init__(self, port: int = 0, *, log_requests: str | os.PathLike | None = None):
        self.port = port
        self.url = ""
        self.requests: list[dict] = []
        self._books: dict[str, Spreadsheet] = {}
        self._lock = threading.RLock()
        self._faults: list[Fault] = []
        self._hooks: list[tuple[str, Callable[[SheetsStandin], None], bool]] = []
        self._seen: Counter = Counter()  # never reset: faults count from inject()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._log_path = log_requests

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> SheetsStandin:
        self._server = _Server(("127.0.0.1", self.port), self)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        serve = functools.partial(self._server.serve_forever, poll_interval=0.05)
        self._thread = threading.Thread(target=serve, name="sheets-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.close_all()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> SheetsStandin:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- spreadsheets --------------------------------------------------------

    def add_spreadsheet(self, spreadsheet_id: str, tabs: dict[str, list[list]], title: str = "test",
                        cell_limit: int = CELL_LIMIT, fitted: Iterable[str] = ()) -> None:
        """Create (or replace) a spreadsheet; each tab gets at least the default 1000x26 grid, but a
        `fitted` one exactly its rows (as the pipeline creates its tabs). Google holds no spreadsheet
        past its cell limit, so neither does this (ValueError)."""
        book = Spreadsheet(spreadsheet_id, title, cell_limit)
        fitted = set(fitted)
        for tab, rows in (tabs or {"Sheet1": []}).items():
            width = max((len(r) for r in rows), default=0)
            least = (1, 1) if tab in fitted else (DEFAULT_ROWS, DEFAULT_COLS)
            sheet = book.add_sheet(tab, max(least[0], len(rows)), max(least[1], width))
            for r, line in enumerate(rows):
                for c, value in enumerate(line):
                    sheet.put(r, c, python_cell(value))
        if book.cells() > cell_limit:
            raise ValueError(f"spreadsheet {spreadsheet_id}: {book.cells():,} grid cells, over the limit of {cell_limit:,}")
        with self._lock:
            self._books[spreadsheet_id] = book

    def load_xlsx(self, spreadsheet_id: str, path: str | os.PathLike) -> None:
        """Serve every sheet of a workbook; formulas stay formulas, dates become serials."""
        book = read_xlsx(spreadsheet_id, Path(path))
        with self._lock:
            self._books[spreadsheet_id] = book

    def save_xlsx(self, spreadsheet_id: str, path: str | os.PathLike) -> None:
        """Write the current state; date-formatted serials go back as datetimes."""
        with self._lock:
            book = self._book(spreadsheet_id).copy()
        write_xlsx(book, Path(path))

    def tab_values(self, spreadsheet_id: str, title: str) -> list[list]:
        """Python values of a tab for assertions: trailing blanks trimmed, inner blanks ''."""
        with self._lock:
            sheet = self._sheet(spreadsheet_id, title)
            rows, cols = sheet.used_extent()
            matrix = [[python_value(sheet, r, c) for c in range(cols)] for r in range(rows)]
        return trim_rows(matrix)

    def set_cell(self, spreadsheet_id: str, title: str, a1_cell: str, value: Any) -> None:
        """Play a person typing a Python value into one cell (grid grows if needed)."""
        rect = parse_cells(a1_cell)
        with self._lock:
            sheet = self._sheet(spreadsheet_id, title)
            sheet.rows, sheet.cols = max(sheet.rows, rect.r0 + 1), max(sheet.cols, rect.c0 + 1)
            sheet.put(rect.r0, rect.c0, python_cell(value))

    def insert_row(self, spreadsheet_id: str, title: str, row_index: int, values: list | None = None) -> None:
        """Insert a row at 1-based row_index, shifting the rows below down."""
        with self._lock:
            sheet = self._sheet(spreadsheet_id, title)
            sheet.insert(0, row_index - 1, 1, inherit_before=row_index > 1)
            for col, value in enumerate(values or []):
                sheet.cols = max(sheet.cols, col + 1)
                sheet.put(row_index - 1, col, python_cell(value))

    def delete_row(self, spreadsheet_id: str, title: str, row_index: int) -> None:
        """Delete the 1-based row, shifting the rows below up."""
        with self._lock:
            self._sheet(spreadsheet_id, title).delete(0, row_index - 1, 1)

    def sort_rows(self, spreadsheet_id: str, title: str, key_col: int, reverse: bool = False,
                  header_rows: int = 1) -> None:
        """Sort data rows by 1-based key_col like Sheets' 'Sort range': blanks always last."""
        with self._lock:
            sheet = self._sheet(spreadsheet_id, title)
            sort_sheet_rows(sheet, key_col - 1, reverse, header_rows)

    # -- test controls -------------------------------------------------------

    def count(self, verb: str | None = None, spreadsheet_id: str | None = None) -> int:
        """Requests seen since the last reset_counts (token requests only when asked by verb)."""
        with self._lock:
            return sum(
                1
                for r in self.requests
                if (r["verb"] == verb if verb else r["verb"] != "token")
                and (spreadsheet_id is None or r["spreadsheet_id"] == spreadsheet_id)
            )

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()

    def inject(self, at: int, fault: str, verb: str | None = None) -> None:
        """Fault the at-th coming request (of that verb, or any non-token one).

        "429" (Google's quota body), "500", "503", "drop" (close unanswered) and "hang:<s>" (wait,
        then drop) leave the state untouched. "slow:<s>" waits, then serves the request for real:
        like Google, a write whose client gave up still lands.
        """
        kind, seconds = parse_fault(fault)
        if at < 1:
            raise ValueError("at counts from 1")
        with self._lock:
            self._faults.append(Fault(kind, self._seen[verb or "*"] + at, verb, seconds))

    def before(self, verb: str, hook: Callable[[SheetsStandin], None], once: bool = True) -> None:
        """Run hook just before the next request of verb is served (e.g. a person's edit)."""
        with self._lock:
            self._hooks.append((verb, hook, once))

    # -- internals -------------------------------------------------------------

    def _book(self, spreadsheet_id: str) -> Spreadsheet:
        if spreadsheet_id not in self._books:
            raise KeyError(f"no spreadsheet {spreadsheet_id!r}")
        return self._books[spreadsheet_id]

    def _sheet(self, spreadsheet_id: str, title: str) -> Sheet:
        sheet = self._book(spreadsheet_id).by_title(title)
        if sheet is None:
            raise KeyError(f"no tab {title!r} in {spreadsheet_id!r}")
        return sheet

    def _serve(self, handler: _Handler) -> None:
        """Record, run hooks, then answer the request or play its fault."""
        parts = urlsplit(handler.path)
        verb, spreadsheet_id, rng = route(handler.command, parts.path)
        call = Call(verb, spreadsheet_id, rng, parse_qs(parts.query, keep_blank_values=True), handler.read_body())
        entry = {"method": handler.command, "path": unquote(parts.path), "verb": verb,
                 "status": None, "spreadsheet_id": spreadsheet_id, "ranges": call.params.get("ranges", [])}
        fault = self._arrive(entry)
        self._run_hooks(verb)
        if fault and fault.kind in ("slow", "hang"):
            time.sleep(fault.seconds)
        status, body = self._fault_answer(fault) if fault and fault.kind != "slow" else self._answer(call, handler)
        self._finish(entry, status)
        if status is None:
            handler.close_connection = True
        else:
            handler.send_json(status, body)

    def _arrive(self, entry: dict) -> Fault | None:
        """Log the request and count it; return the fault injected for this one, if any."""
        verb = entry["verb"]
        with self._lock:
            self.requests.append(entry)
            self._seen[verb] += 1
            if verb != "token":
                self._seen["*"] += 1
            for fault in self._faults:
                if fault.verb in (None, verb) and (fault.verb or verb != "token") \
                        and self._seen[fault.verb or "*"] == fault.target:
                    self._faults.remove(fault)
                    return fault
        return None

    def _run_hooks(self, verb: str) -> None:
        with self._lock:
            due = [h for h in self._hooks if h[0] == verb]
            self._hooks = [h for h in self._hooks if not (h[0] == verb and h[2])]
        for _, hook, _ in due:
            hook(self)

    @staticmethod
    def _fault_answer(fault: Fault) -> tuple[int | None, dict | None]:
        """The answer of a failed request; None means: close without answering."""
        if fault.kind in ("drop", "hang"):
            return None, None
        if fault.kind == "429":
            return 429, copy.deepcopy(QUOTA_429_BODY)
        code = int(fault.kind)
        return code, ApiError(code, FAULT_MESSAGES[code]).body()

    def _answer(self, call: Call, handler: _Handler) -> tuple[int, dict]:
        if call.verb == "token":
            return issue_token(call.body)
        try:
            if not (handler.headers.get("Authorization") or "").startswith("Bearer "):
                raise ApiError(401, UNAUTHENTICATED_MESSAGE)
            if call.verb == "unknown":
                raise ApiError(404, "Requested entity was not found.")
            call.body = json.loads(call.body) if call.body else None
            return 200, self._call_api(call)
        except ApiError as err:
            return err.code, err.body()
        except json.JSONDecodeError as err:
            return 400, bad_request(f"Invalid JSON payload received. {err}").body()
        except Exception as err:  # noqa: BLE001 - a stand-in bug: answer loudly, never hang the client
            traceback.print_exc()
            return 500, ApiError(500, f"Sheets stand-in failed: {err!r}").body()

    def _call_api(self, call: Call) -> dict:
        """Run one API method; writes work on a copy that replaces the book only on success."""
        method, writes = API_METHODS[call.verb]
        with self._lock:
            book = self._books.get(call.spreadsheet_id)
            if book is None:
                raise ApiError(404, "Requested entity was not found.")
            work = book.copy() if writes else book
            answer = method(work, call)
            if writes:
                if too_many := work.over_limit(book.cells()):  # values.update/append growing a grid
                    raise bad_request(too_many)
                self._books[call.spreadsheet_id] = work
            return answer

    def _finish(self, entry: dict, status: int | None) -> None:
        """Note the status (before answering, so a test never sees it missing) and log it."""
        with self._lock:
            entry["status"] = status
            if self._log_path:
                line = {k: entry[k] for k in ("method", "path", "verb", "status")}
                with open(self._log_path, "a", encoding="utf-8") as log:
                    log.write(json.dumps(line, ensure_ascii=False) + "\n")


def issue_token(body: bytes) -> tuple[int, dict]:
    """OAuth token endpoint: any well-formed JWT-bearer grant gets a token (OAuth error shape)."""
    form = parse_qs(body.decode("utf-8", "replace"))
    grant, assertion = form.get("grant_type", [""])[0], form.get("assertion", [""])[0]
    if grant != JWT_GRANT:
        return 400, {"error": "unsupported_grant_type", "error_description": f"Invalid grant_type: {grant}"}
    if assertion.count(".") != 2:
        return 400, {"error": "invalid_grant", "error_description": "Invalid JWT: assertion is not a JWT."}
    return 200, {"access_token": "standin-" + secrets.token_hex(16), "expires_in": 3600, "token_type": "Bearer"}


def python_value(sheet: Sheet, row: int, col: int) -> Any:
    """A cell as a Python value: date-formatted serials come back as datetime/date."""
    cell = sheet.get(row, col)
    value = sheet.effective(row, col)
    if cell is None or value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and is_datetime_format(cell.fmt):
        moment = from_serial(value)
        pattern = (cell.fmt.get("pattern") or _default_pattern(cell.fmt)).lower()
        return moment if re.search(r"[hs]", re.sub(r'"[^"]*"', "", pattern)) else moment.date()
    return value


def _sort_key(value: Any) -> tuple:
    """Numbers (and dates) before text before booleans, like Sheets' A->Z."""
    if isinstance(value, bool):
        return (2, value)
    if isinstance(value, (int, float)):
        return (0, value)
    return (1, str(value).casefold())


def sort_sheet_rows(sheet: Sheet, key_col: int, reverse: bool, header_rows: int) -> None:
    """Reorder whole rows (cells and formats) below the header by one column."""
    used_rows, _ = sheet.used_extent()
    rows = list(range(header_rows, used_rows))
    filled = [r for r in rows if sheet.effective(r, key_col) not in (None, "")]
    blank = [r for r in rows if r not in filled]
    order = sorted(filled, key=lambda r: _sort_key(sheet.effective(r, key_col)), reverse=reverse) + blank
    new_row = {old: new for new, old in zip(rows, order, strict=True)}
    sheet.cells = {(new_row.get(r, r), c): cell for (r, c), cell in sheet.cells.items()}


# --------------------------------------------------------------------------
# xlsx in and out (openpyxl)
# --------------------------------------------------------------------------


def read_xlsx(spreadsheet_id: str, path: Path) -> Spreadsheet:
    """Every sheet of a workbook as tabs; formulas kept with their cached values."""
    import openpyxl

    formulas = openpyxl.load_workbook(path)
    cached = openpyxl.load_workbook(path, data_only=True)
    book = Spreadsheet(spreadsheet_id, path.stem)
    for ws in formulas.worksheets:
        sheet = book.add_sheet(ws.title, max(DEFAULT_ROWS, ws.max_row), max(DEFAULT_COLS, ws.max_column))
        sheet.hidden = ws.sheet_state != "visible"
        for row in ws.iter_rows():
            for xl in row:
                if xl.value is not None:
                    sheet.put(xl.row - 1, xl.column - 1, _xlsx_cell(xl, cached[ws.title][xl.coordinate].value))
    if book.sheets and all(s.hidden for s in book.sheets):
        book.sheets[0].hidden = False
    return book


def _xlsx_cell(xl: Any, cached: Any) -> Cell | None:
    value, pattern = xl.value, xl.number_format
    if xl.data_type == "f":
        text = getattr(value, "text", value)
        return Cell(cached, text if str(text).startswith("=") else f"={text}")
    if isinstance(value, (datetime, date, dtime, timedelta)):
        return _xlsx_datetime(value, pattern)
    if isinstance(value, (bool, int, float)):
        fmt = None if pattern in (None, "General") else {"type": "NUMBER", "pattern": pattern}
        return Cell(value, None, fmt)
    return Cell(str(value)) if str(value) else None


def _xlsx_datetime(value: Any, pattern: str) -> Cell:
    if isinstance(value, dtime):
        serial = (value.hour * 3600 + value.minute * 60 + value.second) / 86400
        return Cell(serial, None, {"type": "TIME", "pattern": pattern.lower() or "hh:mm:ss"})
    if isinstance(value, timedelta):
        return Cell(value.total_seconds() / 86400, None, {"type": "TIME", "pattern": "[h]:mm:ss"})
    if is_datetime_format({"pattern": pattern}):
        kind = "DATE_TIME" if re.search(r"[hs]", pattern, re.I) else "DATE"
        return Cell(to_serial(value), None, {"type": kind, "pattern": pattern.lower()})
    return python_cell(value)


def write_xlsx(book: Spreadsheet, path: Path) -> None:
    """Save tabs as sheets; written to a temporary file first so a kill leaves no half file."""
    import openpyxl

    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for sheet in book.sheets:
        ws = wb.create_sheet(sheet.title)
        ws.sheet_state = "hidden" if sheet.hidden else "visible"
        for (row, col), cell in sorted(sheet.cells.items()):
            if not cell.empty:
                _write_xlsx_cell(ws.cell(row=row + 1, column=col + 1), cell)
    tmp = path.with_name(path.name + ".tmp")
    wb.save(tmp)
    os.replace(tmp, path)


def _write_xlsx_cell(xl: Any, cell: Cell) -> None:
    pattern = (cell.fmt or {}).get("pattern")
    if cell.formula:
        xl.value = cell.formula
    elif isinstance(cell.value, (int, float)) and not isinstance(cell.value, bool) and is_datetime_format(cell.fmt):
        xl.value = from_serial(cell.value)
        xl.number_format = pattern or _default_pattern(cell.fmt)
    else:
        xl.value = cell.value
        if isinstance(cell.value, str):
            xl.data_type = "s"  # text like '=1+1' stored with RAW must stay text
        elif pattern:
            xl.number_format = pattern


# --------------------------------------------------------------------------
# gspread against the stand-in
# --------------------------------------------------------------------------

GOOGLE_PREFIXES = ("https://sheets.googleapis.com", "https://www.googleapis.com")


class StandinHTTPClient(gspread.HTTPClient):
    """gspread HTTP client whose Google URLs go to the stand-in (set standin_url)."""

    standin_url = ""

    def request(self, method: str, endpoint: str, *args: Any, **kwargs: Any):
        for prefix in GOOGLE_PREFIXES:
            if endpoint.startswith(prefix):
                endpoint = self.standin_url + endpoint[len(prefix):]
        return super().request(method, endpoint, *args, **kwargs)


def standin_http_client(url: str, base: type[gspread.HTTPClient] = gspread.HTTPClient) -> type:
    """An HTTPClient class for gspread.Client(http_client=...), e.g. over BackOffHTTPClient."""
    bases = (StandinHTTPClient,) if base is gspread.HTTPClient else (StandinHTTPClient, base)
    return type("StandinHTTPClient", bases, {"standin_url": url.rstrip("/")})


@functools.lru_cache(maxsize=1)
def _throwaway_key_pem() -> str:
    """A fresh RSA key per test process: nothing secret is ever committed."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def service_account_info(url: str) -> dict:
    """A service-account key dict whose token_uri is the stand-in's /token."""
    return {
        "type": "service_account",
        "project_id": "sheets-standin",
        "private_key_id": base64.b16encode(b"standin").decode().lower(),
        "private_key": _throwaway_key_pem(),
        "client_email": "standin@sheets-standin.iam.gserviceaccount.com",
        "client_id": "100000000000000000000",
        "token_uri": url.rstrip("/") + "/token",
    }


def write_service_account_file(path: str | os.PathLike, url: str) -> Path:
    """Write service_account_info(url) as a JSON key file (for code that reads a file)."""
    path = Path(path)
    path.write_text(json.dumps(service_account_info(url)), encoding="utf-8")
    return path


def standin_credentials(url: str):
    """Service-account credentials whose token comes from the stand-in, with no call to Google.

    google-auth >= 2.4x also looks up a 'regional access boundary' at iamcredentials.googleapis.com
    in the background; pinning a no-op boundary (the hook gcloud uses) keeps tests off the network.
    """
    from google.oauth2.service_account import Credentials

    creds = Credentials.from_service_account_info(service_account_info(url), scopes=gspread.auth.DEFAULT_SCOPES)
    if hasattr(creds, "_set_regional_access_boundary"):
        far = datetime.now(UTC).replace(tzinfo=None) + timedelta(days=3650)
        creds._set_regional_access_boundary({"encodedLocations": "0x0", "expiry": far})
    return creds


def gspread_client(url: str, base: type[gspread.HTTPClient] = gspread.HTTPClient) -> gspread.Client:
    """A real gspread.Client, service-account authenticated, talking to the stand-in."""
    return gspread.Client(auth=standin_credentials(url), http_client=standin_http_client(url, base))


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Serve one workbook as a spreadsheet until SIGTERM/SIGINT, then save it."""
    args = _arg_parser().parse_args(argv)
    standin = SheetsStandin(args.port, log_requests=args.log_requests)
    if args.load:
        standin.load_xlsx(args.id, args.load)
    else:
        standin.add_spreadsheet(args.id, {"Sheet1": []})
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    standin.start()
    print(f"listening on {standin.url}", flush=True)
    while not stop.wait(0.2):
        pass
    standin.stop()
    if args.save:
        standin.save_xlsx(args.id, args.save)
    return 0


def _arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.sheets_standin", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0, help="loopback port (0: pick a free one)")
    parser.add_argument("--id", required=True, help="spreadsheet ID to serve the workbook as")
    parser.add_argument("--load", help=".xlsx whose sheets become the tabs")
    parser.add_argument("--save", help=".xlsx written with the final state on SIGTERM/SIGINT")
    parser.add_argument("--log-requests", help="file getting one JSON line per request")
    return parser


if __name__ == "__main__":
    sys.exit(main())
