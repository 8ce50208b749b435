"""The Google Sheets adapter (gspread + google-auth): the workbook port over the Sheets API v4.

Requests per spreadsheet and run (the quota is per request, whatever a batch holds):
- read: one `spreadsheets.get` (tabs, sheet ids, grid sizes, the spreadsheet's time zone) and one
  `values.batchGet` of every tab the mappings place there, UNFORMATTED_VALUE + SERIAL_NUMBER, so
  nothing is guessed: text stays text (`090…`, `0012`), numbers are numbers, booleans booleans,
  date-times serials. gspread's numericise is never used.
- write (only when the plan changes something): one `values.batchGet` re-read of the touched tabs
  just before writing (rows are found by key in it: the compare-and-set of `tasks/write.py`), then
  ONE `spreadsheets.batchUpdate` holding everything: new tabs and columns (with the date-time
  number format on the pipeline's date columns), cell edits, new rows below the last row (whose
  keys the re-read showed absent; the grid grows by appendDimension when needed) and row removals
  (deleteDimension, bottom-up). A batchUpdate is atomic, so a spreadsheet is either untouched or
  fully written. Values go as `userEnteredValue.stringValue/numberValue/boolValue`, which Sheets
  stores as they are, like valueInputOption RAW (a text starting with `=` stays text), and a
  date-time is a serial number with the `yyyy/mm/dd hh:mm` format in the same request — one
  request where values.batchUpdate + a formatting/deleteDimension call would take two and could
  leave a spreadsheet half written.
- several spreadsheets (tabs placed apart by the mappings): one such write each, the change log's
  last. Each is atomic, the run's several are not, so every write of a plan is measured against
  Google's cell limit before any is sent: a log without room stops the run with nothing written,
  not after the main spreadsheet took changes that the log then lacks. The tell's marks are not
  held back so: the messages went, and 送信済 must land where it can (else they would go again).
- a run that changes nothing: the two read requests, no more. The tell step's outbox marks are a
  second small write: one more re-read and one more batchUpdate.
- the change log (変更履歴) is append-only: no rule reads it and it grows by a row per changed cell,
  so both reads fetch only its header row, and its rows go in the same batchUpdate as an
  `appendCells` (Google puts them after the last row with data, at write time). The one part of a
  write that is not idempotent: should a write that Google answered with a 5xx land after the look
  that found the sheet unchanged, the resent write adds its log rows again (same run id, same
  changes); the cells themselves are compare-and-set and land once.

Dates: the mappings say which columns are dates (`type: datetime/date`); in those columns the
adapter turns serials into the same naive Tokyo wall-clock datetimes the .xlsx adapter reads, so
both adapters give check and the compare-and-set identical cells. A spreadsheet whose time zone
(from the metadata) is not Asia/Tokyo has its date-time serials converted from its own zone on
read, and written in its own zone, so the instant is the same and a rerun sees no change.

Faults: every request has a timeout; 429, 408 and 5xx answers, timeouts and dropped connections
are retried a bounded number of times with capped exponential backoff and full jitter (429 with
a longer base: the quota refills per minute). A read is simply sent again. A write is sent again
only when it certainly did not land: after a 429 (refused before processing); after a 5xx answer
once a fresh read shows the sheet exactly as before; a timed-out or dropped write may still be in
flight at Google, so it is never sent twice: the adapter reads until it sees it landed, else the
run stops with one line. Out of retries, the run stops with one line (no credentials in it); the
sheets are as they were or fully written, and a rerun converges (keyed rows, compare-and-set).
"""

from __future__ import annotations

import datetime as dt
import random
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import gspread
import numpy as np
import pandas as pd
import requests
from google.auth import exceptions as auth_errors
from google.auth.credentials import Credentials
from google.auth.transport.requests import AuthorizedSession
from google.auth.transport.requests import Request as AuthRequest
from gspread.exceptions import APIError

from tasks.frames import Capacity
from tasks.mapping import CHANGELOG, Mapping
from tasks.normalize import cell_text, to_text
from tasks.workbooks.credentials import ServiceAccountKey, load_key
from tasks.write import StructureChange, TabWrite, rows_by_key

GOOGLE = "https://sheets.googleapis.com"
TOKYO = ZoneInfo("Asia/Tokyo")
EPOCH = dt.datetime(1899, 12, 30)  # day 0 of Sheets' serials
SERIAL_MIN = (dt.datetime(1990, 1, 1) - EPOCH).days  # check's plausible years: other numbers stay numbers
SERIAL_MAX = (dt.datetime(2101, 1, 1) - EPOCH).days
DATETIME_FORMAT = {"type": "DATE_TIME", "pattern": "yyyy/mm/dd hh:mm"}
DATE_FORMAT = {"type": "DATE", "pattern": "yyyy/mm/dd"}
# A tab the pipeline creates: 100 rows (grown by appendDimension), and exactly as wide as its headers,
# not the UI's 26 columns: Google counts every grid cell against a spreadsheet's 10M-cell limit, and
# 変更履歴 (8 columns) grows by a row per change
NEW_TAB_ROWS = 100
CELL_LIMIT = 10_000_000  # Google's, per spreadsheet, over every tab's whole grid
MAKE_ROOM = ("Make room: delete the tabs' unused columns and rows, give 変更履歴 (or other tabs) a spreadsheet "
             "of their own, or a new one when the log's own is full (`spreadsheet:` in mappings/tabs.yaml, "
             "--spreadsheet ALIAS=ID): README, 'Connect your Google Sheet'")
READ_OPTIONS = {"valueRenderOption": "UNFORMATTED_VALUE", "dateTimeRenderOption": "SERIAL_NUMBER",
                "majorDimension": "ROWS"}
METADATA_FIELDS = "spreadsheetId,properties(title,locale,timeZone),sheets.properties(sheetId,title,gridProperties)"
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
DEFAULT_TIMEOUT = (10.0, 90.0)  # (connect, read) seconds; Google gives up on a request after 180 s
VALUE_MASK = "userEnteredValue"
VALUE_AND_FORMAT_MASK = "userEnteredValue,userEnteredFormat.numberFormat"


class SheetsError(RuntimeError):
    """The run cannot go on with Google Sheets. One line for a person; never a credential."""


class SheetsUnavailable(SheetsError):
    """Google did not answer well within the retries."""


# --------------------------------------------------------------------------- faults and retries


@dataclass(frozen=True)
class Fault:
    """A transient failure of one request."""

    what: str
    quota: bool = False  # 429: refused before processing
    sent: bool = True  # the request may have reached Google
    answered: bool = False  # Google answered: the request is over (nothing still in flight)


class AmbiguousWrite(Exception):
    """A write failed in a way that does not say whether it landed: the adapter must look."""

    def __init__(self, fault: Fault):
        super().__init__(fault.what)
        self.fault = fault


def classify(exc: BaseException) -> Fault | None:
    """The fault a failure is, or None when retrying cannot help (400, 403, 404, a bad key)."""
    if isinstance(exc, APIError):
        status = exc.response.status_code
        if status not in RETRY_STATUS:
            return None
        name = exc.error.get("status") if isinstance(exc.error, dict) else None
        text = f"HTTP {status}" + (f" {name}" if isinstance(name, str) and name.isupper() else "")
        return Fault(text, quota=status == 429, answered=True)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return Fault("connection timed out", sent=False)
    if isinstance(exc, requests.exceptions.Timeout):
        return Fault("no answer before the timeout")
    if isinstance(exc, requests.exceptions.ConnectionError | auth_errors.TransportError) and (
            host := _UNRESOLVED(str(exc))):  # said apart: no network, not Google's fault, and "rerun later" may not help
        return Fault(f"{host.group(1)} could not be found (no network, or DNS cannot resolve it)", sent=False)
    if isinstance(exc, requests.exceptions.ConnectionError):
        return Fault("connection failed", sent=False) if _never_sent(exc) else Fault("connection dropped")
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return Fault("connection dropped")
    if isinstance(exc, auth_errors.TransportError):
        return Fault("token request failed", sent=False)
    if isinstance(exc, auth_errors.RefreshError) and getattr(exc, "retryable", False):
        return Fault("token request failed", sent=False)
    return None


_UNRESOLVED = re.compile(r"Failed to resolve '([^']+)'").search  # urllib3's NameResolutionError, however wrapped


def _never_sent(exc: requests.exceptions.ConnectionError) -> bool:
    """Refused or unreachable: the request never left, so sending it again is safe."""
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    inner = exc.args[0] if exc.args else None
    reason = getattr(inner, "reason", inner)
    return isinstance(reason, (NewConnectionError, ConnectTimeoutError))


@dataclass
class Backoff:
    """Bounded retries: `attempts` tries in all, full jitter under a capped exponential ceiling."""

    attempts: int = 5
    base: float = 1.0
    quota_base: float = 8.0  # a 429 means the per-minute quota is spent: wait longer
    cap: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)
    waits: list[float] = field(default_factory=list)  # what was slept, for the report and tests

    def ceiling(self, attempt: int, fault: Fault) -> float:
        return min(self.cap, (self.quota_base if fault.quota else self.base) * 2 ** (attempt - 1))

    def pause(self, attempt: int, fault: Fault) -> None:
        wait = self.rng.uniform(0, self.ceiling(attempt, fault))
        self.waits.append(wait)
        self.sleep(wait)


class SheetsHTTPClient(gspread.HTTPClient):
    """gspread's HTTP client with an endpoint override, a timeout always set and bounded retries.

    gspread's BackOffHTTPClient retries forever, without jitter, and resends writes blindly; this
    one gives up after `backoff.attempts`, and hands every possibly-landed write failure to the
    adapter (AmbiguousWrite), which looks before it sends anything twice.
    """

    def __init__(self, auth: Credentials, session: requests.Session | None = None):
        if session is None:  # token requests without google-auth's own 3 retries a try (each a warning): backoff retries
            session = AuthorizedSession(auth, auth_request=AuthRequest(requests.Session()))
        super().__init__(auth, session)
        self.auth = auth  # what gspread's login() refreshes, which it sets only when it makes the session
        self.endpoint: str | None = None
        self.backoff = Backoff()
        self.timeout = DEFAULT_TIMEOUT
        self.before_request: Callable[[], None] | None = None  # e.g. take a slot of a shared rate limit

    def configure(self, endpoint: str | None, timeout: Any, backoff: Backoff) -> None:
        self.endpoint = endpoint.rstrip("/") if endpoint else None
        self.set_timeout(timeout if timeout is not None else DEFAULT_TIMEOUT)
        self.backoff = backoff

    def url(self, endpoint: str) -> str:
        if self.endpoint and endpoint.startswith(GOOGLE):
            return self.endpoint + endpoint[len(GOOGLE):]
        return endpoint

    def request(self, method: str, endpoint: str, *args: Any, **kwargs: Any) -> requests.Response:
        url = self.url(endpoint)
        write = method.upper() != "GET"
        attempt = 0
        while True:
            attempt += 1
            if self.before_request is not None:
                self.before_request()  # every attempt is a request against the quota
            try:
                return super().request(method, url, *args, **kwargs)
            except (APIError, requests.exceptions.RequestException, auth_errors.GoogleAuthError) as exc:
                fault = classify(exc)
                if fault is None:
                    raise
                if write and fault.sent and not fault.quota:
                    raise AmbiguousWrite(fault) from None
                if attempt >= self.backoff.attempts:
                    raise SheetsUnavailable(f"{fault.what} ({attempt} attempts)") from None
                self.backoff.pause(attempt, fault)


# --------------------------------------------------------------------------- cells


def quote_title(title: str) -> str:
    return "'" + title.replace("'", "''") + "'"


def _api_rows(values: list[list[Any]] | None) -> list[list[Any]]:
    """A read's rows with blanks as None, trailing blanks and trailing empty rows dropped."""
    rows = []
    for line in values or []:
        row = [None if v == "" else v for v in line]
        while row and row[-1] is None:
            row.pop()
        rows.append(row)
    while rows and not rows[-1]:
        rows.pop()
    return rows


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def from_serial(serial: float, kind: str, tz: ZoneInfo) -> dt.datetime:
    """A date serial as the naive Tokyo wall time the .xlsx adapter reads (a date at midnight)."""
    wall = EPOCH + dt.timedelta(seconds=round(serial * 86400))
    if kind == "datetime" and tz.key != TOKYO.key:
        wall = wall.replace(tzinfo=tz).astimezone(TOKYO).replace(tzinfo=None)
    return wall


def to_serial(value: dt.datetime | dt.date, tz: ZoneInfo) -> int | float:
    """A date-time (aware, or naive = Tokyo) as a serial in the spreadsheet's own time zone."""
    if not isinstance(value, dt.datetime):
        return (value - EPOCH.date()).days
    if value.tzinfo is None:
        value = value.replace(tzinfo=TOKYO)
    delta = value.astimezone(tz).replace(tzinfo=None) - EPOCH
    serial = delta.days + delta.seconds / 86400 + delta.microseconds / 86_400_000_000
    return int(serial) if serial == int(serial) else serial


def encode(value: Any, tz: ZoneInfo) -> tuple[Any, dict, dict | None]:
    """A value to write -> (what a read will return, CellData, its number format or None)."""
    if isinstance(value, np.generic):
        value = pd.Timestamp(value) if isinstance(value, np.datetime64) else value.item()
    if value is None or value is pd.NaT or (isinstance(value, float) and value != value) or value == "":
        return None, {}, None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, bool):
        return value, {"userEnteredValue": {"boolValue": value}}, None
    if _is_number(value):
        if value in (float("inf"), float("-inf")):
            value = to_text(value)
        else:
            return value, {"userEnteredValue": {"numberValue": value}}, None
    if isinstance(value, (dt.datetime, dt.date)):
        fmt = DATETIME_FORMAT if isinstance(value, dt.datetime) else DATE_FORMAT
        serial = to_serial(value, tz)
        return serial, {"userEnteredValue": {"numberValue": serial}, "userEnteredFormat": {"numberFormat": fmt}}, fmt
    text = value if isinstance(value, str) else to_text(value)
    return (text or None), ({"userEnteredValue": {"stringValue": text}} if text else {}), None


def _grid_size(range_text: str) -> tuple[int, int] | None:
    """`'予約'!A1:Z1000` -> (1000, 26): a whole-tab read answers with the grid's size."""
    cells = range_text.rsplit("!", 1)[-1]
    match = re.fullmatch(r"\$?[A-Z]+\$?\d+(?::\$?([A-Z]+)\$?(\d+))?", cells)
    if not match:
        return None
    if match[1] is None:
        return 1, 1
    col = 0
    for ch in match[1]:
        col = col * 26 + ord(ch) - 64
    return int(match[2]), col


# --------------------------------------------------------------------------- spreadsheets


@dataclass
class _Tab:
    sheet_id: int
    rows: int
    cols: int
    frozen: int = 0


@dataclass
class _Book:
    alias: str
    id: str
    tz: ZoneInfo
    tabs: dict[str, _Tab]
    header_rows: dict[str, list[Any]] = field(default_factory=dict)  # API row 1 of the tabs read
    title: str = ""  # the spreadsheet's own, as people know it


@dataclass
class _Grid:
    rows: list[list[Any]]  # API values, blanks None, trimmed
    size: tuple[int, int]  # the grid's rows and columns


class GoogleWorkbook:
    """The workbook port over one or more Google spreadsheets.

    `spreadsheets` maps the mappings' aliases (`spreadsheet:` of a tab, default "main") to ids; a
    single id means {"main": id}. `credentials`: a key file path, `env:VAR`, `prefect-secret:BLOCK`,
    a loaded ServiceAccountKey, or google-auth credentials (None: $SALESOPS_GOOGLE_CREDENTIALS).
    `endpoint` points gspread (and the token flow) at another server, e.g. a Sheets API stand-in.
    `mapping` places tabs in spreadsheets and says which columns hold dates (see the module
    docstring); without it every tab of every spreadsheet is read and dates stay serials.
    `before_request` is called before every request, retries included (a Prefect run takes a slot
    of the shared rate limit there).
    """

    def __init__(
        self,
        spreadsheets: dict[str, str] | str,
        credentials: Any = None,
        endpoint: str | None = None,
        timeout: float | tuple[float, float] | None = DEFAULT_TIMEOUT,
        retries: int = 5,
        *,
        mapping: Mapping | None = None,
        backoff: Backoff | None = None,
        before_request: Callable[[], None] | None = None,
    ):
        self.spreadsheets = {"main": spreadsheets} if isinstance(spreadsheets, str) else dict(spreadsheets)
        if not self.spreadsheets or not all(self.spreadsheets.values()):
            raise SheetsError("no Google spreadsheet id given (--spreadsheet ID)")
        self.endpoint = endpoint.rstrip("/") if endpoint else None
        self.key, creds = _credentials(credentials, self.endpoint)
        self.backoff = backoff or Backoff(attempts=max(1, retries))
        self.http: SheetsHTTPClient = gspread.Client(auth=creds, http_client=SheetsHTTPClient).http_client
        self.http.configure(self.endpoint, timeout, self.backoff)
        self.http.before_request = before_request
        self._place: dict[str, str] = {}
        self._dates: dict[str, dict[str, str]] = {}
        self._last_alias: str | None = None  # where the change log lives: written last
        self._append_only: frozenset[str] = frozenset()  # the change log: read by its header, written by appendCells
        if mapping is not None:
            self._use_mapping(mapping)
        self._books: dict[str, _Book] = {}

    def _use_mapping(self, mapping: Mapping) -> None:
        for spec in mapping.tabs.values():
            if spec.spreadsheet not in self.spreadsheets:
                raise SheetsError(
                    f"the mappings place tab {spec.title} in spreadsheet {spec.spreadsheet!r}: "
                    f"give its id with --spreadsheet {spec.spreadsheet}=ID"
                )
            self._place[spec.title] = spec.spreadsheet
            self._dates[spec.title] = {c.header: c.type for c in spec.columns if c.type in ("datetime", "date")}
        if CHANGELOG in mapping.tabs:
            self._last_alias = mapping.tabs[CHANGELOG].spreadsheet
            self._append_only = frozenset({mapping.tabs[CHANGELOG].title})

    def __str__(self) -> str:
        return "Google Sheets " + ", ".join(f"{a}={i}" for a, i in self.spreadsheets.items())

    def tab_url(self, title: str) -> str:
        """A link that opens the tab (known after the read), else its spreadsheet: for people, in a run's report."""
        alias = self.alias_of(title)
        tab = self._books[alias].tabs.get(title) if alias in self._books else None
        url = f"https://docs.google.com/spreadsheets/d/{self.spreadsheets[alias]}/edit"
        return f"{url}#gid={tab.sheet_id}" if tab else url

    def capacity(self) -> list[Capacity]:
        """Each spreadsheet's cells, from the grid sizes known now: the metadata read at the start, grown
        by this run's writes."""
        return [Capacity("cells", alias, _cells(book), CELL_LIMIT, book.title) for alias, book in self._books.items()]

    def notes(self) -> list[str]:
        """A spreadsheet near Google's cell limit: said while there is room left, since a write past the
        limit is refused whole, run after run."""
        return [f"spreadsheet {c.name} holds {c.used:,} of Google's {c.limit:,} cells ({c.percent}%): "
                f"past the limit every write is refused. {MAKE_ROOM}" for c in self.capacity() if c.nearly_full]

    @property
    def time_zones(self) -> dict[str, str]:
        """Each spreadsheet's own time zone (known after the read)."""
        return {alias: book.tz.key for alias, book in self._books.items()}

    # ---------------------------------------------------------------- the port

    def read(self) -> dict[str, list[list[Any]]]:
        out: dict[str, list[list[Any]]] = {}
        for alias in self._aliases():
            book = self._books[alias] = self._fetch_metadata(alias)
            titles = [t for t in book.tabs if self._wanted(alias, t)]
            if not titles:
                continue
            for title, grid in self._fetch_values(alias, titles, self._append_only).items():
                book.header_rows[title] = grid.rows[0] if grid.rows else []
                out[title] = self._cells(book, title, grid.rows)
        return out

    @contextmanager
    def transaction(self, titles: list[str]) -> Iterator[_Transaction]:
        tx = _Transaction(self, titles)
        yield tx
        tx.commit()

    # ---------------------------------------------------------------- placement

    def _aliases(self) -> list[str]:
        if not self._place:
            return list(self.spreadsheets)
        return [a for a in self.spreadsheets if a in set(self._place.values())]

    def _wanted(self, alias: str, title: str) -> bool:
        return self._place.get(title) == alias if self._place else True

    def alias_of(self, title: str) -> str:
        if title in self._place:
            return self._place[title]
        for alias, book in self._books.items():
            if title in book.tabs:
                return alias
        return next(iter(self.spreadsheets))

    def book(self, alias: str) -> _Book:
        if alias not in self._books:
            self._books[alias] = self._fetch_metadata(alias)
        return self._books[alias]

    def date_columns(self, title: str, header: list[str]) -> dict[int, str]:
        """1-based column -> 'datetime' / 'date', for the tab's current header row."""
        kinds = self._dates.get(title, {})
        return {i: kinds[h] for i, h in enumerate(header, start=1) if h in kinds}

    def _cells(self, book: _Book, title: str, rows: list[list[Any]]) -> list[list[Any]]:
        """API rows -> the cells check reads: date serials as datetimes, in the date columns only."""
        header = [cell_text(v) for v in rows[0]] if rows else []
        dates = self.date_columns(title, header)
        if not dates:
            return [list(r) for r in rows]
        out = []
        for r, row in enumerate(rows):
            row = list(row)
            if r:
                for col, kind in dates.items():
                    if col <= len(row):
                        row[col - 1] = cell_value(row[col - 1], kind, book.tz)
            out.append(row)
        return out

    # ---------------------------------------------------------------- requests

    def _fetch_metadata(self, alias: str) -> _Book:
        sid = self.spreadsheets[alias]
        meta = self._call(alias, "reading the spreadsheet's tabs",
                          lambda: self.http.spreadsheets_get(sid, params={"fields": METADATA_FIELDS}))
        zone = (meta.get("properties") or {}).get("timeZone") or TOKYO.key
        try:
            tz = ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise SheetsError(f"spreadsheet {alias}: unknown time zone {zone!r} in its settings") from None
        tabs = {}
        for sheet in meta.get("sheets") or []:
            props = sheet.get("properties") or {}
            grid = props.get("gridProperties") or {}
            tabs[props.get("title", "")] = _Tab(
                int(props.get("sheetId") or 0), int(grid.get("rowCount") or 0), int(grid.get("columnCount") or 0),
                int(grid.get("frozenRowCount") or 0),
            )
        return _Book(alias, sid, tz, tabs, title=str((meta.get("properties") or {}).get("title") or alias))

    def _fetch_values(self, alias: str, titles: list[str], headers_only: frozenset[str] = frozenset()) -> dict[str, _Grid]:
        """One values.batchGet: whole tabs (or only row 1 of `headers_only`)."""
        if not titles:
            return {}
        sid = self.spreadsheets[alias]
        ranges = [quote_title(t) + ("!1:1" if t in headers_only else "") for t in titles]
        answer = self._call(alias, "reading cells",
                            lambda: self.http.values_batch_get(sid, ranges, params=dict(READ_OPTIONS)))
        out = {}
        for title, got in zip(titles, answer.get("valueRanges") or [], strict=False):
            size = _grid_size(got.get("range", "")) if title not in headers_only else None
            out[title] = _Grid(_api_rows(got.get("values")), size or (0, 0))
        return out

    def _batch_update(self, alias: str, requests_: list[dict]) -> dict:
        sid = self.spreadsheets[alias]
        return self.http.batch_update(sid, {"requests": requests_})

    def _call(self, alias: str, what: str, fn: Callable[[], Any]) -> Any:
        """A read request, its faults turned into one line naming the spreadsheet."""
        try:
            return fn()
        except SheetsUnavailable as exc:
            raise SheetsUnavailable(f"Google Sheets did not answer while {what} of spreadsheet {alias}: {exc}; "
                                    "nothing was written by this step, rerun later") from None
        except APIError as exc:
            raise self.api_error(alias, what, exc) from None
        except auth_errors.GoogleAuthError as exc:
            raise self.auth_error(exc) from None

    def api_error(self, alias: str, what: str, exc: APIError) -> SheetsError:
        status = exc.response.status_code
        sid = self.spreadsheets[alias]
        if status == 403:
            who = f" with {self.key.email}" if self.key else ""
            return SheetsError(f"spreadsheet {alias} ({sid}): permission denied; share it{who} as an editor")
        if status == 404:
            return SheetsError(f"spreadsheet {alias} ({sid}): not found; check the id")
        if status == 401:
            return SheetsError(f"Google refused the credentials{self._source()} (HTTP 401)")
        message = exc.error.get("message") if isinstance(exc.error, dict) else None
        message = " ".join(str(message or f"HTTP {status}").split())[:300]
        if "above the limit of" in message and "cells" in message:
            return SheetsError(f"spreadsheet {alias}: Google refused the write, which was not applied: the spreadsheet "
                               f"would pass Google's cell limit ({message}). {MAKE_ROOM}")
        return SheetsError(f"spreadsheet {alias}: Google refused a request while {what}: {message}")

    def auth_error(self, exc: BaseException) -> SheetsError:
        reason = str(exc.args[0]).split(":", 1)[0][:60] if exc.args else type(exc).__name__
        return SheetsError(f"Google refused the service-account key{self._source()} ({reason})")

    def _source(self) -> str:
        return f" from {self.key.source}" if self.key else ""


def parse_spreadsheets(specs: str | list[str] | tuple[str, ...]) -> dict[str, str]:
    """`ID`, `links=ID2`, or several (a list, or one string with commas) -> {alias: id}; bare = main."""
    items = [specs] if isinstance(specs, str) else list(specs)
    out: dict[str, str] = {}
    for item in (part.strip() for text in items for part in str(text).split(",")):
        if not item:
            continue
        named = re.fullmatch(r"([A-Za-z_][\w-]*)\s*=\s*(\S+)", item)
        alias, sid = (named[1], named[2]) if named else ("main", item)
        sid = _spreadsheet_id(sid)
        if alias in out and out[alias] != sid:
            raise SheetsError(f"two spreadsheet ids for {alias!r}")
        out[alias] = sid
    if not out:
        raise SheetsError("no Google spreadsheet id given (--spreadsheet ID)")
    return out


def _spreadsheet_id(text: str) -> str:
    """An id, or the spreadsheet's URL as copied from the browser."""
    match = re.search(r"/spreadsheets/d/([A-Za-z0-9_-]+)", text)
    return match[1] if match else text


def open_google(
    spreadsheet: str | list[str] | dict[str, str],
    *,
    credentials: Any = None,
    endpoint: str | None = None,
    mapping: Mapping | None = None,
    **options: Any,
) -> tuple[GoogleWorkbook, str]:
    """The adapter for the mappings (default: the shipped ones) and a link for people."""
    from tasks.mapping import load_mapping

    ids = dict(spreadsheet) if isinstance(spreadsheet, dict) else parse_spreadsheets(spreadsheet)
    book = GoogleWorkbook(ids, credentials, endpoint, mapping=mapping or load_mapping(), **options)
    main = ids.get("main") or next(iter(ids.values()))
    return book, f"https://docs.google.com/spreadsheets/d/{main}/edit"


def cell_value(value: Any, kind: str, tz: ZoneInfo) -> Any:
    """A date column's cell: a plausible serial becomes a datetime; anything else stays as read."""
    if _is_number(value) and SERIAL_MIN <= value < SERIAL_MAX:
        return from_serial(value, kind, tz)
    return value


def _credentials(credentials: Any, endpoint: str | None) -> tuple[ServiceAccountKey | None, Credentials]:
    if isinstance(credentials, Credentials):
        return None, credentials
    if isinstance(credentials, dict):
        key = ServiceAccountKey(credentials, "the given key")
    elif isinstance(credentials, ServiceAccountKey):
        key = credentials
    else:
        key = load_key(credentials)
    return key, key.credentials(endpoint)


# --------------------------------------------------------------------------- the write


class _State:
    """A tab just before the write (tasks.write.TabState), from the re-read, in check's cell types."""

    def __init__(self, workbook: GoogleWorkbook, book: _Book, title: str, rows: list[list[Any]], size: tuple[int, int]):
        self.title = title
        self.rows = rows  # API values (the structure to be added already overlaid)
        self.size = size
        self.tz = book.tz
        self.header = [cell_text(v) for v in rows[0]] if rows else []
        self._dates = workbook.date_columns(title, self.header)
        self._keys: dict[int, dict[str, list[int]]] = {}

    def rows_of(self, col: int) -> dict[str, list[int]]:
        if col not in self._keys:
            self._keys[col] = rows_by_key(line[col - 1] if col <= len(line) else None for line in self.rows[1:])
        return self._keys[col]

    def value(self, row: int, col: int) -> Any:
        line = self.rows[row - 1] if row <= len(self.rows) else []
        value = line[col - 1] if col <= len(line) else None
        kind = self._dates.get(col) if row > 1 else None
        return cell_value(value, kind, self.tz) if kind else value

    @property
    def last_row(self) -> int:
        return max(len(self.rows), 1)


class _LazyState:
    """Stands for a tab's state until the resolution first looks: an empty plan re-reads nothing."""

    def __init__(self, tx: _Transaction, alias: str, title: str):
        self._tx, self._alias, self._title = tx, alias, title

    def _state(self) -> _State:
        return self._tx.state(self._alias, self._title)

    @property
    def header(self) -> list[str]:
        return self._state().header

    def rows_of(self, col: int) -> dict[str, list[int]]:
        return self._state().rows_of(col)

    def value(self, row: int, col: int) -> Any:
        return self._state().value(row, col)

    @property
    def last_row(self) -> int:
        return self._state().last_row


@dataclass
class _Batch:
    """One spreadsheet's batchUpdate, with what its touched tabs look like before and after it."""

    requests: list[dict] = field(default_factory=list)
    before: dict[str, list[list[Any]] | None] = field(default_factory=dict)
    after: dict[str, list[list[Any]] | None] = field(default_factory=dict)
    headers_only: set[str] = field(default_factory=set)
    appended: dict[str, list[list[Any]]] = field(default_factory=dict)  # append-only tab -> its new rows, as read back
    new_tabs: dict[str, _Tab] = field(default_factory=dict)


class _Transaction:
    def __init__(self, workbook: GoogleWorkbook, titles: list[str]):
        self.wb = workbook
        self.titles = list(titles)
        self.pending: dict[str, list[StructureChange]] = {}
        self.loaded: dict[str, dict[str, _State]] = {}
        self.before: dict[str, dict[str, list[list[Any]]]] = {}
        self.before_sizes: dict[str, dict[str, tuple[int, int]]] = {}
        self.fresh_headers: dict[str, dict[str, list[Any]]] = {}
        self.changes: dict[str, list[StructureChange | None]] = {}
        self.committed: set[str] = set()

    # ---------------------------------------------------------------- the port's calls

    def headers(self) -> dict[str, list[str] | None]:
        """Header rows as of the run's read (no request); without a read, fetched (2 per spreadsheet)."""
        out: dict[str, list[str] | None] = {}
        for alias in self.wb._aliases():
            book = self.wb.book(alias)
            titles = [t for t in book.tabs if self.wb._wanted(alias, t)]
            unknown = [t for t in titles if t not in book.header_rows]
            for title, grid in self.wb._fetch_values(alias, unknown, frozenset(unknown)).items():
                book.header_rows[title] = grid.rows[0] if grid.rows else []
            for title in titles:
                out[title] = [cell_text(v) for v in book.header_rows[title]]
        return out

    def change_structure(self, changes: list[StructureChange]) -> None:
        """Deferred: sent in the same batchUpdate as the write (or alone when nothing else changes)."""
        for change in changes:
            self.pending.setdefault(self.wb.alias_of(change.title), []).append(change)

    def states(self, titles: list[str]) -> dict[str, _LazyState]:
        out = {}
        for title in titles:
            alias = self.wb.alias_of(title)
            if title in self.wb.book(alias).tabs or self._new_tab(alias, title):
                out[title] = _LazyState(self, alias, title)
        return out

    def write(self, writes: list[TabWrite], *, whole: bool = True) -> None:
        by_alias: dict[str, list[TabWrite]] = {}
        for write in writes:
            by_alias.setdefault(self.wb.alias_of(write.title), []).append(write)
        aliases = [a for a in self.wb.spreadsheets if a in by_alias or self.pending.get(a)]
        aliases.sort(key=lambda a: a == self.wb._last_alias)  # the change log's spreadsheet last
        batches = {alias: self._prepare(alias, by_alias.get(alias, [])) for alias in aliases}
        if whole and len(batches) > 1:  # each write is atomic, the run's several are not: refuse all before any is sent
            for alias, batch in batches.items():
                self._check_room(alias, batch)
        for alias, batch in batches.items():
            self._send_batch(alias, batch)

    def commit(self) -> None:
        for alias in list(self.pending):
            if alias not in self.committed:
                self._send_batch(alias, self._prepare(alias, []))

    # ---------------------------------------------------------------- the re-read

    def _new_tab(self, alias: str, title: str) -> StructureChange | None:
        return next((c for c in self.pending.get(alias, []) if c.new_tab and c.title == title), None)

    def state(self, alias: str, title: str) -> _State:
        if alias not in self.loaded:
            self._load(alias)
        return self.loaded[alias][title]

    def _load(self, alias: str) -> None:
        """One values.batchGet: every touched tab of the spreadsheet whole (see the module docstring),
        except an append-only one (変更履歴), and the header row of those and of the other tabs that
        get new columns (a person may have added one)."""
        book = self.wb.book(alias)
        titles = [t for t in self.titles if self.wb.alias_of(t) == alias and t in book.tabs]
        widened = [c.title for c in self.pending.get(alias, [])
                   if not c.new_tab and c.title in book.tabs and c.title not in titles]
        try:
            grids = self.wb._fetch_values(alias, titles + widened, frozenset(widened) | self.wb._append_only)
        except SheetsError as exc:
            if "Unable to parse range" not in str(exc):
                raise
            book = self.wb._books[alias] = self.wb._fetch_metadata(alias)  # a tab was deleted meanwhile
            titles, widened = [t for t in titles if t in book.tabs], [t for t in widened if t in book.tabs]
            grids = self.wb._fetch_values(alias, titles + widened, frozenset(widened) | self.wb._append_only)
        self.before[alias] = {t: grids[t].rows for t in titles if t in grids}
        self.before_sizes[alias] = {t: grids[t].size for t in titles if t in grids and grids[t].size != (0, 0)}
        self.fresh_headers[alias] = {t: (g.rows[0] if g.rows else []) for t, g in grids.items()}
        self.changes[alias] = [self._fresh(alias, c) for c in self.pending.get(alias, [])]
        states = {}
        for title in titles:
            if title not in grids:
                continue
            grid, tab = grids[title], book.tabs[title]
            rows, size = [list(r) for r in grid.rows], grid.size if grid.size != (0, 0) else (tab.rows, tab.cols)
            for change in self.changes[alias]:
                if change is not None and change.title == title and not change.new_tab:
                    rows, size = _with_headers(rows, size, change)
            states[title] = _State(self.wb, book, title, rows, size)
        for change in self.pending.get(alias, []):
            if change.new_tab:
                size = (NEW_TAB_ROWS, len(change.headers))
                states[change.title] = _State(self.wb, book, change.title, [list(change.headers)], size)
        self.loaded[alias] = states

    def _fresh(self, alias: str, change: StructureChange) -> StructureChange | None:
        """A new-columns change checked against the header row now: headers someone added meanwhile
        are not added twice, and new ones go right of the last header now (columns go by name)."""
        if change.new_tab:
            return change
        if change.title not in self.fresh_headers[alias]:
            return None  # the tab left the spreadsheet meanwhile: its writes will say so
        now = [cell_text(v) for v in self.fresh_headers[alias][change.title]]
        missing = tuple(h for h in change.headers if h not in now)
        if not missing:
            return None
        width = max((i + 1 for i, h in enumerate(now) if h), default=0)
        return StructureChange(change.title, False, max(change.start_col, width + 1), missing)

    # ---------------------------------------------------------------- the write

    def _prepare(self, alias: str, writes: list[TabWrite]) -> _Batch:
        if self.pending.get(alias) and alias not in self.loaded:
            self._load(alias)  # structure alone (nothing else to write): its header rows, checked now
        book, batch = self.wb.book(alias), _Batch()
        self._structure(alias, book, batch)
        for write in writes:
            self._tab_write(alias, book, write, batch)
        return batch

    def _send_batch(self, alias: str, batch: _Batch) -> None:
        self.committed.add(alias)
        if batch.requests:
            self._send(alias, batch)
            self._remember(self.wb.book(alias), batch)

    def _check_room(self, alias: str, batch: _Batch) -> None:
        """Refuse before sending anything when a spreadsheet's grids would pass Google's limit (an upper
        bound: appended log rows may also fill empty rows at the bottom of its grid)."""
        used, growth = _cells(self.wb.book(alias)), _growth(self.wb.book(alias), batch)
        if used + growth > CELL_LIMIT:
            raise SheetsError(
                f"spreadsheet {alias}: this run's write would take its grids from {used:,} to {used + growth:,} "
                f"cells, past Google's {CELL_LIMIT:,}; nothing was written to any spreadsheet. {MAKE_ROOM}")

    def _structure(self, alias: str, book: _Book, batch: _Batch) -> None:
        taken = {t.sheet_id for t in book.tabs.values()}
        for change in self.changes.get(alias, []):
            if change is None:
                continue
            title, headers = change.title, list(change.headers)
            dates = self.wb.date_columns(title, headers)
            if change.new_tab:
                sheet_id = _new_sheet_id(taken)
                taken.add(sheet_id)
                tab = _Tab(sheet_id, NEW_TAB_ROWS, len(headers), 1)
                batch.new_tabs[title] = tab
                batch.requests.append({"addSheet": {"properties": {
                    "sheetId": sheet_id, "title": title,
                    "gridProperties": {"rowCount": tab.rows, "columnCount": tab.cols, "frozenRowCount": 1}}}})
                batch.requests.append(_header_cells(sheet_id, 1, headers))
                batch.requests += _date_formats(sheet_id, dates, 1)
                batch.before[title] = None
                batch.after[title] = [list(headers)]
                continue
            tab = book.tabs[title]
            state = self.loaded.get(alias, {}).get(title)
            cols = self.before_sizes.get(alias, {}).get(title, (tab.rows, tab.cols))[1] if state else tab.cols
            last_col = change.start_col + len(headers) - 1
            if last_col > cols:
                batch.requests.append({"appendDimension": {
                    "sheetId": tab.sheet_id, "dimension": "COLUMNS", "length": last_col - cols}})
            batch.requests.append(_header_cells(tab.sheet_id, change.start_col, headers))
            batch.requests += _date_formats(tab.sheet_id, dates, change.start_col)
            if not tab.frozen:
                batch.requests.append({"updateSheetProperties": {
                    "properties": {"sheetId": tab.sheet_id, "gridProperties": {"frozenRowCount": 1}},
                    "fields": "gridProperties.frozenRowCount"}})
            if title in self.before.get(alias, {}):
                batch.before[title] = self.before[alias][title]
                batch.after[title] = self.loaded[alias][title].rows
            else:  # not touched by the plan: only its header row is read and checked
                header = list(self.fresh_headers[alias].get(title, []))
                batch.before[title] = [header]
                batch.after[title] = _with_headers([header], (tab.rows, tab.cols), change)[0]
                batch.headers_only.add(title)

    def _tab_write(self, alias: str, book: _Book, write: TabWrite, batch: _Batch) -> None:
        state = self.state(alias, write.title)
        tab = book.tabs.get(write.title) or batch.new_tabs.get(write.title)
        if tab is None:
            raise SheetsError(f"tab {write.title} left spreadsheet {alias} during the run; nothing was written: rerun")
        sheet_id = tab.sheet_id
        after = batch.after.get(write.title)
        grid = [list(r) for r in (state.rows if after is None else after)]
        if write.title not in batch.before:
            batch.before[write.title] = self.before[alias][write.title]
        for row, group in groupby(sorted(write.cells, key=lambda c: (c[0], c[1])), key=lambda c: c[0]):
            run: list[tuple[int, dict, bool]] = []
            for _, col, value in group:
                shown, data, fmt = encode(value, state.tz)
                _put(grid, row, col, shown)
                if run and (col != run[-1][0] + 1 or (fmt is not None) != run[-1][2]):
                    batch.requests.append(_cells_request(sheet_id, row, run))
                    run = []
                run.append((col, data, fmt is not None))
            if run:
                batch.requests.append(_cells_request(sheet_id, row, run))
        if write.rows and write.title in self.wb._append_only:
            encoded = [[encode(value, state.tz) for value in values] for values in write.rows]
            batch.requests.append({"appendCells": {
                "sheetId": sheet_id, "rows": [{"values": [e[1] for e in row]} for row in encoded],
                "fields": VALUE_AND_FORMAT_MASK}})
            batch.appended[write.title] = _api_rows([[e[0] for e in row] for row in encoded])
        elif write.rows:
            first = len(_trimmed(grid)) + 1
            grid_rows = state.size[0]
            needed = first - 1 + len(write.rows) - grid_rows
            if needed > 0:
                batch.requests.append({"appendDimension": {"sheetId": sheet_id, "dimension": "ROWS", "length": needed}})
            block = []
            for offset, values in enumerate(write.rows):
                cells = []
                for col, value in enumerate(values, start=1):
                    shown, data, _ = encode(value, state.tz)
                    cells.append(data)
                    if shown is not None:
                        _put(grid, first + offset, col, shown)
                block.append({"values": cells})
            batch.requests.append({"updateCells": {
                "start": {"sheetId": sheet_id, "rowIndex": first - 1, "columnIndex": 0},
                "rows": block, "fields": VALUE_AND_FORMAT_MASK}})
        for row in sorted(write.deletes, reverse=True):
            batch.requests.append({"deleteDimension": {"range": {
                "sheetId": sheet_id, "dimension": "ROWS", "startIndex": row - 1, "endIndex": row}}})
            if row <= len(grid):
                del grid[row - 1]
        batch.after[write.title] = _trimmed(grid) + batch.appended.get(write.title, [])

    def _send(self, alias: str, batch: _Batch) -> None:
        """Send once; look before ever sending again (see the module docstring)."""
        backoff = self.wb.backoff
        attempt = 0
        while True:
            attempt += 1
            try:
                self.wb._batch_update(alias, batch.requests)
                return
            except AmbiguousWrite as exc:
                fault = exc.fault
            except SheetsUnavailable as exc:  # 429s, or never sent: certainly not applied
                raise SheetsUnavailable(f"Google Sheets did not take the write to spreadsheet {alias}: {exc}; "
                                        "it was not applied, rerun later") from None
            except APIError as exc:
                if attempt > 1 and self._look(alias, batch, None) == "landed":
                    return  # an earlier attempt landed after all (e.g. its addSheet now exists)
                raise self.wb.api_error(alias, "writing", exc) from None
            except auth_errors.GoogleAuthError as exc:
                raise self.wb.auth_error(exc) from None
            while True:
                if attempt >= backoff.attempts:
                    may = "may still be applied" if not fault.answered else "was not applied"
                    raise SheetsUnavailable(
                        f"Google Sheets did not confirm the write to spreadsheet {alias} ({fault.what}, "
                        f"{attempt} attempts); it {may} as a whole, never in part: rerun to converge")
                backoff.pause(attempt, fault)
                seen = self._look(alias, batch, fault)
                if seen == "landed":
                    return
                if seen == "changed":
                    raise SheetsError(
                        f"spreadsheet {alias} changed while a failed write ({fault.what}) was checked; "
                        "nothing more was sent: rerun to converge")
                if fault.answered:
                    break  # Google answered and nothing changed: sending again is safe
                attempt += 1  # still in flight, maybe: wait and look again, never send twice

    def _look(self, alias: str, batch: _Batch, fault: Fault | None) -> str:
        """'landed', 'unchanged' or 'changed': the touched tabs now, against before and after."""
        partial = (batch.headers_only | self.wb._append_only) - batch.appended.keys()
        try:
            book = self.wb._fetch_metadata(alias)
            titles = [t for t in batch.after if t in book.tabs]
            grids = self.wb._fetch_values(alias, titles, frozenset(partial))  # appended tabs whole: only on this rare path
        except SheetsError:
            why = f" ({fault.what})" if fault else ""
            raise SheetsUnavailable(
                f"the write to spreadsheet {alias} failed{why} and could not be checked; it was applied "
                "as a whole or not at all: rerun to converge") from None
        now = {t: self._seen(grids[t].rows, batch.appended.get(t), t in partial) if t in grids else None for t in batch.after}
        if all(now[t] == _trimmed(batch.after[t]) for t in batch.after):
            return "landed"
        if all(now[t] == (None if batch.before.get(t) is None else _trimmed(batch.before[t])) for t in batch.after):
            return "unchanged"
        return "changed"

    @staticmethod
    def _seen(rows: list[list[Any]], appended: list[list[Any]] | None, header_only: bool) -> list[list[Any]]:
        """A tab now, as `_look` compares it with before and after: an append-only tab as its header,
        followed by the rows this write appends if they are in it (anywhere: others may append too)."""
        if header_only:
            return _trimmed(rows[:1])
        if appended is None:
            return rows
        n = len(appended)
        landed = any(rows[i:i + n] == appended for i in range(1, len(rows) - n + 1) if rows[i] == appended[0])
        return _trimmed(rows[:1]) + (appended if landed else [])

    def _remember(self, book: _Book, batch: _Batch) -> None:
        """After a landed write: the new tabs, header rows and grid sizes, for the tell step's write and
        the run's notes. An append-only tab's rows are placed by Google below its last row with data:
        its grid is not re-read, and grows by them at most."""
        book.tabs.update(batch.new_tabs)
        for title, rows in batch.after.items():
            if rows:
                book.header_rows[title] = list(rows[0])
            tab = book.tabs.get(title)
            if tab and rows:
                tab.cols = max(tab.cols, len(rows[0]))
                tab.rows = tab.rows + len(batch.appended[title]) if title in batch.appended else max(tab.rows, len(rows))
                tab.frozen = tab.frozen or 1


def _cells(book: _Book) -> int:
    """What Google counts against the limit: every tab's whole grid, blank cells too."""
    return sum(tab.rows * tab.cols for tab in book.tabs.values())


def _growth(book: _Book, batch: _Batch) -> int:
    """The cells a batch adds to the grids: new tabs, appended rows and columns, appended log rows."""
    size = {tab.sheet_id: [tab.rows, tab.cols] for tab in (*book.tabs.values(), *batch.new_tabs.values())}
    added = sum(tab.rows * tab.cols for tab in batch.new_tabs.values())
    for request in batch.requests:
        if grow := request.get("appendDimension"):
            rows_cols = size[grow["sheetId"]]
            along = 0 if grow["dimension"] == "ROWS" else 1
            rows_cols[along] += grow["length"]
            added += grow["length"] * rows_cols[1 - along]
        elif append := request.get("appendCells"):
            added += len(append["rows"]) * size[append["sheetId"]][1]
    return added


def _new_sheet_id(taken: set[int]) -> int:
    rng = random.SystemRandom()
    while (candidate := rng.randint(1, 2**31 - 1)) in taken:
        pass
    return candidate


def _with_headers(rows: list[list[Any]], size: tuple[int, int], change: StructureChange) -> tuple[list, tuple[int, int]]:
    rows = [list(r) for r in rows] or [[]]
    for offset, header in enumerate(change.headers):
        _put(rows, 1, change.start_col + offset, header)
    return rows, (size[0], max(size[1], change.start_col + len(change.headers) - 1))


def _put(grid: list[list[Any]], row: int, col: int, value: Any) -> None:
    while len(grid) < row:
        grid.append([])
    line = grid[row - 1]
    while len(line) < col:
        line.append(None)
    line[col - 1] = value


def _trimmed(grid: list[list[Any]] | None) -> list[list[Any]] | None:
    return None if grid is None else _api_rows(grid)


def _header_cells(sheet_id: int, start_col: int, headers: list[str]) -> dict:
    return {"updateCells": {
        "start": {"sheetId": sheet_id, "rowIndex": 0, "columnIndex": start_col - 1},
        "rows": [{"values": [{"userEnteredValue": {"stringValue": h}} for h in headers]}],
        "fields": VALUE_MASK}}


def _date_formats(sheet_id: int, dates: dict[int, str], start_col: int) -> list[dict]:
    """Number formats of new date columns (below the header, to the grid's end, however long it is now)."""
    out: list[dict] = []
    for offset, kind in dates.items():
        col = start_col + offset - 1
        fmt = DATETIME_FORMAT if kind == "datetime" else DATE_FORMAT
        out.append({"repeatCell": {
            "range": {"sheetId": sheet_id, "startRowIndex": 1, "startColumnIndex": col - 1, "endColumnIndex": col},
            "cell": {"userEnteredFormat": {"numberFormat": fmt}},
            "fields": "userEnteredFormat.numberFormat"}})
    return out


def _cells_request(sheet_id: int, row: int, run: list[tuple[int, dict, bool]]) -> dict:
    return {"updateCells": {
        "start": {"sheetId": sheet_id, "rowIndex": row - 1, "columnIndex": run[0][0] - 1},
        "rows": [{"values": [data for _, data, _ in run]}],
        "fields": VALUE_AND_FORMAT_MASK if run[0][2] else VALUE_MASK}}
