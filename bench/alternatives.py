"""Benchmark: our Google adapter against the two usual ways, on the same sheet and the same changes.

The sheet: a generated team workbook (`tasks.demo_data`) after one whole run of the pipeline, then a
day of staff work (`bench.reconcile.staff_activity`), served by the Sheets API stand-in
(tests/sheets_standin.py) over real HTTP. The changes: the plan our reconcile makes of it. Three
writers apply that plan, each from the same starting sheet:

- ours: `flows.pipeline.run` over `GoogleWorkbook` (read, check, reconcile, compare-and-set write
  with its change log, outbox marks): the whole run, as deployed.
- naive: the script people write with gspread: open the spreadsheet, `get_all_values` each tab it
  changes, remember each key's row number, then `update_cell` per changed cell, `append_row` per
  new row and `delete_rows` per removed one (gspread's defaults: USER_ENTERED).
- gspread-dataframe: `get_as_dataframe` each tab the plan changes, apply the plan to the frames
  by key, `set_with_dataframe` each tab back whole (its defaults).
The baselines are given our plan (computed outside their timing); ours computes it in its run.

While each one runs, the same person works in the sheet: after the writer has read what it
decides from, before it writes (ours: before its write step's re-read; the others: before their
first write request). `PersonScript` is what they do: type into staff cells and into cells the
pipeline owns, insert a booking at the top, delete one, sort 予約. Measured per writer: requests
(every call but the token), cells written (values in the write requests' bodies), wall time,
staff edits lost (the person's edits not in the final sheet), cells wrong (cells of 顧客/予約 that
end up neither as the person left them nor as the plan said) and formulas created.

    python -m bench.alternatives --size 1000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from random import Random
from typing import Any

import pandas as pd

from bench.reconcile import NOW, SEED, _quiet, a_day_later, pipeline_titles
from tests.sheets_standin import SheetsStandin, gspread_client, service_account_info, split_range

SID = "1BenchTeamSheet"
PERSON_TABS = ("顧客", "予約")
KEYS = {"顧客": "お客様番号", "予約": "予約ID"}


# --------------------------------------------------------------------------- the stand-in, counting


class CountingStandin(SheetsStandin):
    """The stand-in, also counting the cell values every successful write request carries, and the
    cells every read answers.

    values.update / batchUpdate / append: each non-null entry of `values` (null is "leave it").
    spreadsheets.batchUpdate: each CellData of updateCells and appendCells (with a value mask, {}
    clears a cell); repeatCell (formats only, in our writes) is counted apart as ranges.
    values.get / batchGet: each entry of the answer's `values` (inner blanks included).
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.written: Counter = Counter()  # tab title -> cells
        self.format_ranges = 0
        self.cells_read = 0

    @property
    def cells_written(self) -> int:
        return sum(self.written.values())

    def reset_written(self) -> None:
        """Every count back to zero (cells read too) before the next writer's run."""
        self.written.clear()
        self.format_ranges = 0
        self.cells_read = 0

    def _call_api(self, call):
        answer = super()._call_api(call)
        body = call.body if isinstance(call.body, dict) else {}
        verb = call.verb
        with self._lock:
            book = self._books.get(call.spreadsheet_id)
            if verb in ("values.get", "values.batchGet"):
                ranges = answer.get("valueRanges", [answer])
                self.cells_read += sum(len(row) for got in ranges for row in got.get("values") or [])
            elif verb in ("values.update", "values.append"):
                self.written[_title(call.range)] += _value_count(body.get("values"))
            elif verb == "values.batchUpdate":
                for data in body.get("data") or []:
                    self.written[_title(data.get("range"))] += _value_count(data.get("values"))
            elif verb == "spreadsheets.batchUpdate":
                for request in body.get("requests") or []:
                    cells = request.get("updateCells") or request.get("appendCells")
                    if cells:
                        sheet = book.by_id((cells.get("start") or cells.get("range") or cells).get("sheetId", 0))
                        title = sheet.title if sheet else "?"
                        self.written[title] += sum(len(r.get("values") or []) for r in cells.get("rows") or [])
                    if "repeatCell" in request:
                        self.format_ranges += 1
        return answer

    def snapshot(self, sid: str):
        """The spreadsheet as it is (copy-on-write cells: cheap)."""
        with self._lock:
            return self._books[sid].copy()

    def restore(self, sid: str, book) -> None:
        with self._lock:
            self._books[sid] = book.copy()

    def formulas(self, sid: str) -> set[tuple[str, int, int]]:
        with self._lock:
            book = self._books[sid]
            return {(s.title, r, c) for s in book.sheets for (r, c), cell in s.cells.items() if cell.formula}


def _title(range_text: str | None) -> str:
    try:
        return split_range(range_text or "")[0] or "?"
    except ValueError:
        return "?"


def _value_count(values: Any) -> int:
    return sum(1 for row in values or [] for v in (row or []) if v is not None)


# --------------------------------------------------------------------------- the person


@dataclass(frozen=True)
class StaffEdit:
    """One thing a person does in the sheet. Cells and rows are found by key when it happens."""

    kind: str  # "cell" | "insert" | "delete" | "sort" | "column"
    tab: str
    key: str | None = None
    header: str | None = None
    value: Any = None
    row: tuple = ()  # insert: the new row's values, in the tab's column order
    reverse: bool = False


def tab_rows(standin: SheetsStandin, sid: str, title: str) -> list[list[Any]]:
    try:
        return standin.tab_values(sid, title)
    except KeyError:
        return []


def keyed(rows: list[list[Any]], key_header: str) -> tuple[list[str], dict[str, list[int]]]:
    """Header texts, and key -> the 1-based sheet rows holding it."""
    from tasks.write import _text

    if not rows:
        return [], {}
    header = [_text(h) for h in rows[0]]
    if key_header not in header:
        return header, {}
    k = header.index(key_header)
    where: dict[str, list[int]] = {}
    for i, row in enumerate(rows[1:], start=2):
        text = _text(row[k]) if k < len(row) else ""
        if text:
            where.setdefault(text, []).append(i)
    return header, where


def play(standin: SheetsStandin, sid: str, edits: list[StaffEdit], keys: dict[str, str] = KEYS) -> list[StaffEdit]:
    """Do the edits in order, as a person would (rows found by key at that moment); returns the ones
    that could be done. An insert goes at row `value` (default 2); a column insert at column `value`."""
    from tasks.a1 import a1

    done = []
    for e in edits:
        rows = tab_rows(standin, sid, e.tab)
        header, where = keyed(rows, keys.get(e.tab, ""))
        if e.kind == "cell":
            if len(where.get(e.key, [])) != 1 or e.header not in header:
                continue
            standin.set_cell(sid, e.tab, a1(where[e.key][0], header.index(e.header) + 1), e.value)
        elif e.kind == "insert":
            standin.insert_row(sid, e.tab, min(int(e.value or 2), len(rows) + 1), list(e.row))
        elif e.kind == "delete":
            if len(where.get(e.key, [])) != 1:
                continue
            standin.delete_row(sid, e.tab, where[e.key][0])
        elif e.kind == "sort":
            if e.header not in header:
                continue
            standin.sort_rows(sid, e.tab, header.index(e.header) + 1, reverse=e.reverse)
        elif e.kind == "column":
            with standin._lock:  # insertDimension COLUMNS, as the Sheets UI does it (no public helper)
                standin._sheet(sid, e.tab).insert(1, int(e.value) - 1, 1, inherit_before=True)
        done.append(e)
    return done


def survived(edit: StaffEdit, final: dict[str, list[list[Any]]], person: dict[str, list[list[Any]]]) -> bool:
    """Is the person's edit still there at the end?"""
    from tasks.write import same

    key_header = KEYS.get(edit.tab, "")
    header, where = keyed(final.get(edit.tab, []), key_header)
    rows = final.get(edit.tab, [])
    if edit.kind == "cell":
        if len(where.get(edit.key, [])) != 1 or edit.header not in header:
            return False
        line = rows[where[edit.key][0] - 1]
        col = header.index(edit.header)
        return same(line[col] if col < len(line) else None, edit.value)
    if edit.kind == "insert":
        return len(where.get(edit.key, [])) == 1
    if edit.kind == "delete":
        return edit.key not in where
    if edit.kind == "sort":
        _, before = keyed(person.get(edit.tab, []), key_header)
        order_then = [k for k, _ in sorted(before.items(), key=lambda kv: kv[1][0]) if k in where]
        order_now = [k for k, _ in sorted(where.items(), key=lambda kv: kv[1][0]) if k in before]
        return order_then == order_now
    raise ValueError(edit.kind)


@dataclass
class PersonScript:
    """The benchmark's person: the same edits for every writer, chosen from the plan's rows."""

    edits: list[StaffEdit]

    @classmethod
    def for_plan(cls, plan, mapping, tabs: dict[str, list[list[Any]]], *, seed: int = SEED, n: int = 5) -> PersonScript:
        rng = Random(f"{seed}/person")
        planned = [e for e in plan.edits if e.tab in ("bookings", "customers") and not e.check_only]
        owned = rng.sample(planned, min(n, len(planned)))
        booked = sorted({e.key for e in planned if e.tab == "bookings"})
        customers = sorted({e.key for e in planned if e.tab == "customers"})
        edits: list[StaffEdit] = []
        for e in owned:  # a person types into a cell the pipeline owns and is about to change
            edits.append(StaffEdit("cell", mapping.tabs[e.tab].title, e.key, mapping.tabs[e.tab].column(e.field).header,
                                   "手入力"))
        for key in rng.sample(booked, min(n, len(booked))):
            edits.append(StaffEdit("cell", "予約", key, "プラン", "プレミアム（変更）"))
        for key in rng.sample(customers, min(n, len(customers))):
            edits.append(StaffEdit("cell", "顧客", key, "個別メモ", "電話で日程相談済み"))
        header = list(tabs["予約"][0])
        new = {"予約ID": "S000001", "お客様番号": tabs["顧客"][1][0], "営業担当": tabs["予約"][1][2], "メニュー": "個別相談",
               "開始日時": dt.datetime(2026, 12, 1, 11, 0), "ステータス": "仮予約中", "アクション実行": "実行する"}
        edits.append(StaffEdit("insert", "予約", "S000001", row=tuple(new.get(h) for h in header)))
        untouched = sorted({r[0] for r in tabs["予約"][1:] if r and r[0]} - set(booked))
        if untouched:
            edits.append(StaffEdit("delete", "予約", rng.choice(untouched)))
        edits.append(StaffEdit("sort", "予約", header="お客様番号", reverse=True))
        return cls(edits)


class Window:
    """Plays the person once, at the first of the given moments; remembers the sheet they left."""

    def __init__(self, standin: CountingStandin, sid: str, script: PersonScript):
        self.standin, self.sid, self.script = standin, sid, script
        self.lock = threading.Lock()
        self.armed = True
        self.done: list[StaffEdit] = []
        self.after: dict[str, list[list[Any]]] | None = None

    def __call__(self, standin: SheetsStandin) -> None:
        with self.lock:
            if not self.armed:
                return
            self.armed = False
            self.done = play(standin, self.sid, self.script.edits)
            self.after = {t: tab_rows(standin, self.sid, t) for t in PERSON_TABS}

    def before_first_write(self) -> None:
        for verb in ("values.update", "values.batchUpdate", "values.append", "spreadsheets.batchUpdate"):
            self.standin.before(verb, self)

    def before_second_read(self) -> None:
        self.standin.before("values.batchGet", lambda s: s.before("values.batchGet", self))

    def disarm(self) -> None:
        with self.lock:
            self.armed = False


# --------------------------------------------------------------------------- the three writers


def _user_entered(value: Any) -> Any:
    """A plan value as a gspread script would send it (USER_ENTERED parses dates back)."""
    if value is None:
        return ""
    if isinstance(value, pd.Timestamp):
        value = value.tz_convert("Asia/Tokyo").tz_localize(None).to_pydatetime() if value.tzinfo else value.to_pydatetime()
    if isinstance(value, dt.datetime):
        return f"{value:%Y/%m/%d %H:%M}"
    if isinstance(value, dt.date):
        return f"{value:%Y/%m/%d}"
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def run_ours(url: str, sid: str, mapping) -> dict[str, Any]:
    from flows.pipeline import run
    from tasks.workbooks.google import Backoff, GoogleWorkbook

    spent: Counter = Counter()

    def timed(fn: Callable[..., Any]) -> Callable[..., Any]:
        def inner(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[fn.__name__.removesuffix("_step")] += time.perf_counter() - t0
        return inner

    book = GoogleWorkbook(sid, credentials=service_account_info(url), endpoint=url, mapping=mapping,
                          backoff=Backoff(sleep=lambda _s: None))
    summary = run(book, mapping, NOW, _quiet, step=timed)
    return {"skipped": len(summary.report.skipped), "planned": summary.plan.size,
            "compute_s": round(spent["check"] + spent["reconcile"], 3),
            "io_s": round(spent["read"] + spent["write"] + spent["tell"], 3)}


def run_naive(url: str, sid: str, mapping, plan) -> dict[str, Any]:
    """One call per changed cell, row numbers from the script's own read."""
    client = gspread_client(url)
    sheet = client.open_by_key(sid)
    titles = sorted({mapping.tabs[t].title for t in plan.tabs})
    worksheets = {t: sheet.worksheet(t) for t in titles}
    grids = {t: ws.get_all_values() for t, ws in worksheets.items()}
    found: dict[str, tuple[list[str], dict[str, int]]] = {}
    for t, rows in grids.items():
        spec = next(s for s in mapping.tabs.values() if s.title == t)
        header = [str(h).strip() for h in rows[0]] if rows else []
        k = header.index(spec.column(spec.key).header) if spec.key and spec.column(spec.key).header in header else None
        found[t] = (header, {str(r[k]).strip(): i for i, r in enumerate(rows[1:], start=2) if k is not None and k < len(r)})
    missing = 0
    for e in plan.edits:
        if e.check_only:
            continue
        spec = mapping.tabs[e.tab]
        header, row_of = found[spec.title]
        h = spec.column(e.field).header
        if e.key not in row_of or h not in header:
            missing += 1
            continue
        worksheets[spec.title].update_cell(row_of[e.key], header.index(h) + 1, _user_entered(e.new))
    for a in plan.appends:
        spec = mapping.tabs[a.tab]
        header, _ = found[spec.title]
        values = {spec.column(f).header: v for f, v in a.values}
        worksheets[spec.title].append_row([_user_entered(values.get(h)) for h in header],
                                          value_input_option="USER_ENTERED", table_range="A1")
    for d in plan.deletes:
        spec = mapping.tabs[d.tab]
        _, row_of = found[spec.title]
        if d.key in row_of:
            worksheets[spec.title].delete_rows(row_of[d.key])
    return {"not_found": missing}


def run_gspread_dataframe(url: str, sid: str, mapping, plan) -> dict[str, Any]:
    """Read each changed tab into a DataFrame, apply the plan by key, write the tab back whole."""
    from gspread_dataframe import get_as_dataframe, set_with_dataframe

    client = gspread_client(url)
    sheet = client.open_by_key(sid)
    titles = sorted({mapping.tabs[t].title for t in plan.tabs})
    worksheets = {t: sheet.worksheet(t) for t in titles}
    frames = {t: get_as_dataframe(ws) for t, ws in worksheets.items()}
    for t, df in frames.items():
        frames[t] = df.astype(object)
    missing = 0
    for e in plan.edits:
        if e.check_only:
            continue
        spec = mapping.tabs[e.tab]
        df = frames[spec.title]
        key_h, h = spec.column(spec.key).header, spec.column(e.field).header
        hit = df[key_h].astype(str).str.strip() == e.key
        if not hit.any() or h not in df.columns:
            missing += 1
            continue
        df.loc[hit, h] = _user_entered(e.new)
    for a in plan.appends:
        spec = mapping.tabs[a.tab]
        values = {spec.column(f).header: _user_entered(v) for f, v in a.values}
        df = frames[spec.title]
        frames[spec.title] = pd.concat([df, pd.DataFrame([{c: values.get(c) for c in df.columns}])], ignore_index=True)
    for d in plan.deletes:
        spec = mapping.tabs[d.tab]
        df = frames[spec.title]
        frames[spec.title] = df[df[spec.column(spec.key).header].astype(str).str.strip() != d.key]
    for t, df in frames.items():
        set_with_dataframe(worksheets[t], df)
    return {"not_found": missing}


# --------------------------------------------------------------------------- the comparison


@dataclass
class Prepared:
    standin: CountingStandin
    sid: str
    start: Any  # the stand-in's spreadsheet at the start of every writer's run
    plan: Any
    mapping: Any
    script: PersonScript
    activity: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)


def prepare(standin: CountingStandin, size: int, *, seed: int = SEED) -> Prepared:
    """The sheet after one run and a day of staff work, served as SID; our plan of it; the person."""
    from flows.pipeline import run
    from tasks.demo_data import generate_frames
    from tasks.mapping import load_mapping
    from tasks.workbooks.google import Backoff, GoogleWorkbook

    mapping = load_mapping()
    memory, activity = a_day_later(generate_frames(size, seed=seed, now=NOW.to_pydatetime()), mapping, seed=seed)
    standin.add_spreadsheet(SID, memory.tabs, title="営業チーム", fitted=pipeline_titles(mapping))
    book = GoogleWorkbook(SID, credentials=service_account_info(standin.url), endpoint=standin.url, mapping=mapping,
                          backoff=Backoff(sleep=lambda _s: None))
    plan = run(book, mapping, NOW, _quiet, dry_run=True).plan
    tabs = {t: tab_rows(standin, SID, t) for t in PERSON_TABS}
    script = PersonScript.for_plan(plan, mapping, tabs, seed=seed)
    return Prepared(standin, SID, standin.snapshot(SID), plan, mapping, script, activity,
                    {t: len(r) - 1 for t, r in memory.tabs.items()})


def _cells(rows: list[list[Any]], tab: str) -> list[tuple[tuple[str, str, str], Any]]:
    """((tab, key, header), value) for every cell of every keyed row (a key on two rows: twice)."""
    header, where = keyed(rows, KEYS[tab])
    out = []
    for key, at in where.items():
        for r in at:
            line = rows[r - 1]
            out += [((tab, key, h), line[i] if i < len(line) else "") for i, h in enumerate(header) if h]
    return out


def wrong_cells(plan, mapping, person: dict[str, list[list[Any]]], final: dict[str, list[list[Any]]],
                edits: list[StaffEdit]) -> int:
    """Cells of 顧客/予約 that end up with a value nobody meant: neither as the person left them
    (a cell a writer skipped is fine: the next run does it) nor as the plan said. A cell the person
    edited is judged by `survived` instead; a row the person deleted by its delete."""
    from tasks.write import same

    theirs = {(e.tab, e.key, e.header) for e in edits if e.kind == "cell"}
    deleted = {(e.tab, e.key) for e in edits if e.kind == "delete"}
    planned: dict[tuple[str, str, str], Any] = {}
    for e in plan.edits:
        spec = mapping.tabs[e.tab]
        if spec.title in person and not e.check_only:
            planned[(spec.title, e.key, spec.column(e.field).header)] = e.new
    left: dict[tuple[str, str, str], list[Any]] = {}  # a key on two rows (a copied row) has two values
    for t, rows in person.items():
        for cell, value in _cells(rows, t):
            left.setdefault(cell, []).append(value)
    bad = 0
    seen = set()
    for t, rows in final.items():
        for cell, value in _cells(rows, t):
            seen.add(cell)
            if cell in theirs or cell[:2] in deleted:
                continue
            meant = [*left.get(cell, [""]), *([planned[cell]] if cell in planned else [])]
            if not any(same(value, m) for m in meant):
                bad += 1
    bad += sum(1 for cell, values in left.items() for value in values
               if cell not in seen and cell not in theirs and cell[:2] not in deleted and not same(value, ""))
    return bad


def measure_one(prep: Prepared, name: str, writer: Callable[[], dict[str, Any]], *, person: bool = True) -> dict[str, Any]:
    s = prep.standin
    s.restore(prep.sid, prep.start)
    formulas_before = s.formulas(prep.sid)
    window = Window(s, prep.sid, prep.script)
    if person:
        (window.before_second_read if name == "ours" else window.before_first_write)()
    else:
        window.disarm()
    s.reset_counts()
    s.reset_written()
    t0 = time.perf_counter()
    error = None
    try:
        extra = writer()
    except Exception as exc:  # noqa: BLE001 - a writer that fails is a figure, not a crash of the benchmark
        extra, error = {}, f"{type(exc).__name__}: {exc}"[:200]
    wall = time.perf_counter() - t0
    window.disarm()
    requests = s.count()
    final = {t: tab_rows(s, prep.sid, t) for t in PERSON_TABS}
    person_state = window.after or {t: [] for t in PERSON_TABS}
    lost = [e for e in window.done if not survived(e, final, person_state)]
    result = {
        "requests": requests,
        "cells_written": s.cells_written,
        "cells_written_change_log": s.written.get("変更履歴", 0),
        "cells_read": s.cells_read,
        "wall_s": round(wall, 3),
        "staff_edits": len(window.done),
        "staff_edits_lost": len(lost),
        "lost": [f"{e.kind} {e.tab} {e.key or ''} {e.header or ''}".strip() for e in lost],
        "formulas_created": len(s.formulas(prep.sid) - formulas_before),
        **extra,
    }
    if window.after is not None:
        result["cells_wrong"] = wrong_cells(prep.plan, prep.mapping, person_state, final, window.done)
    if error:
        result["error"] = error
    return result


def compare(size: int, *, seed: int = SEED, writers: tuple[str, ...] = ("ours", "naive", "gspread_dataframe"),
            person: bool = True, repeat: int = 1) -> dict[str, Any]:
    """Every writer on the same sheet and plan, `repeat` times each from the same start; the figures of each.

    Counts are the first run's (the same every run: the stand-in, the plan and the person are
    deterministic); wall_s is the median, with every run's in wall_s_runs; staff_edits_lost the worst.
    """
    with CountingStandin() as standin:
        t0 = time.perf_counter()
        prep = prepare(standin, size, seed=seed)
        out: dict[str, Any] = {"size": size, "seed": seed, "rows": prep.rows, "activity": prep.activity,
                               "plan": {"edits": len(prep.plan.edits), "appends": len(prep.plan.appends),
                                        "deletes": len(prep.plan.deletes)},
                               "person": [f"{e.kind} {e.tab} {e.key or ''} {e.header or ''}".strip()
                                          for e in prep.script.edits],
                               "prepare_s": round(time.perf_counter() - t0, 2)}
        url, sid, mapping, plan = standin.url, prep.sid, prep.mapping, prep.plan
        run = {
            "ours": lambda: run_ours(url, sid, mapping),
            "naive": lambda: run_naive(url, sid, mapping, plan),
            "gspread_dataframe": lambda: run_gspread_dataframe(url, sid, mapping, plan),
        }
        for name in writers:
            runs = [measure_one(prep, name, run[name], person=person) for _ in range(max(1, repeat))]
            walls = [r["wall_s"] for r in runs]
            out[name] = {**runs[0], "wall_s": round(statistics.median(walls), 3), "wall_s_runs": walls,
                         "staff_edits_lost": max(r["staff_edits_lost"] for r in runs)}
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.alternatives", description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--writers", nargs="+", default=["ours", "naive", "gspread_dataframe"])
    parser.add_argument("--no-person", action="store_true", help="nobody edits during the runs")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each writer (wall_s: the median)")
    args = parser.parse_args(argv)
    print(json.dumps(compare(args.size, seed=args.seed, writers=tuple(args.writers), person=not args.no_person,
                             repeat=args.repeat),
                     ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
