"""Benchmark: the pure steps (check → reconcile) on generated team workbooks of 1k, 10k, 100k customers.

Each size runs in a fresh process, so one size's memory never colours the next. Two figures per size:
- first run: the team's own tabs as `tasks.demo_data.generate_frames` writes them (3.1 bookings a
  customer, the demo's messiness), nothing of the pipeline's yet: every rule has the most to plan;
- steady run: the same workbook after one whole run (pipeline tabs and columns filled, kept in
  memory by `MemoryWorkbook`), then a day of staff work (`staff_activity`: ~1% of the bookings
  rescheduled, cancelled or won, a few new ones): what a scheduled run meets every time.
Time is wall time of `check` + `reconcile` on cells already in memory (the read is not in it), with
the process's CPU time beside it (on a shared machine the wall time also holds other people's work;
the load average at the end is printed too).
Peak memory is the process's peak RSS while those steps run (the input cells included), read
from /proc/self/status VmHWM after resetting it (Linux; elsewhere the life-long ru_maxrss).

    python -m bench.reconcile --sizes 1000 10000 100000
    python -m bench.reconcile --one 10000 --json      # one size, this process, JSON only
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as dt
import gc
import json
import os
import pstats
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path
from random import Random
from typing import Any

import pandas as pd

NOW = pd.Timestamp("2026-11-20T10:00", tz="Asia/Tokyo")
SEED = 7
ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- memory


def _status(field: str) -> float | None:
    with contextlib.suppress(OSError), open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return None


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_mb() -> float:
    hwm = _status("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _children_cpu() -> float:
    """CPU seconds of the children reaped so far (reconcile's child on the other core)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class ChildMemory:
    """The most private memory any child of this process held, sampled every 100 ms from
    /proc/<pid>/smaps_rollup (Linux): reconcile's child on the other core shares this process's
    pages until it writes them, so its own RSS would count the frames twice."""

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> ChildMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            for pid in _children():
                with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as fh:
                    kb = sum(int(line.split()[1]) for line in fh if line.startswith(("Private_Clean", "Private_Dirty")))
                    self.peak_mb = max(self.peak_mb, kb / 1024)


def _children() -> list[str]:
    pids: list[str] = []
    with contextlib.suppress(OSError):
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children", encoding="ascii") as fh:
                pids += fh.read().split()
    return pids


def rss_mb() -> float:
    rss = _status("VmRSS")
    return rss if rss is not None else peak_mb()


# --------------------------------------------------------------------------- an in-memory workbook


def _cell(value: Any) -> Any:
    """What a sheet would hold for a written value (as the .xlsx adapter stores it)."""
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        value = value.astimezone(dt.timezone(dt.timedelta(hours=9))).replace(tzinfo=None)
    return value


class MemoryWorkbook:
    """The workbook port over lists of rows in memory: the benchmarks' sheet, no file, no network.

    Same semantics as the .xlsx adapter (rows found by key at write time, appends below the last
    row with content, deletes bottom-up), so a 100k-customer workbook can run whole in seconds.
    """

    def __init__(self, tabs: dict[str, list[list[Any]]]):
        self.tabs = {t: [list(r) for r in rows] for t, rows in tabs.items()}

    def __str__(self) -> str:
        return "memory"

    def read(self) -> dict[str, list[list[Any]]]:
        return {t: [list(r) for r in rows] for t, rows in self.tabs.items()}

    def capacity(self) -> list[Any]:
        return []

    def notes(self) -> list[str]:
        return []

    @contextmanager
    def transaction(self, titles: list[str]) -> Iterator[_MemoryTransaction]:
        del titles
        yield _MemoryTransaction(self.tabs)


class _MemoryState:
    def __init__(self, rows: list[list[Any]]):
        from tasks.normalize import cell_text  # tasks are imported late here: the bench times its imports

        self.rows = rows
        self.header = [cell_text(v) for v in rows[0]] if rows else []
        self._keys: dict[int, dict[str, list[int]]] = {}

    def rows_of(self, col: int) -> dict[str, list[int]]:
        from tasks.write import rows_by_key

        if col not in self._keys:
            self._keys[col] = rows_by_key(line[col - 1] if col <= len(line) else None for line in self.rows[1:])
        return self._keys[col]

    def value(self, row: int, col: int) -> Any:
        line = self.rows[row - 1] if row <= len(self.rows) else []
        return line[col - 1] if col <= len(line) else None

    @property
    def last_row(self) -> int:
        row = len(self.rows)
        while row > 1 and all(v in (None, "") for v in self.rows[row - 1]):
            row -= 1
        return max(row, 1)


class _MemoryTransaction:
    def __init__(self, tabs: dict[str, list[list[Any]]]):
        self.tabs = tabs

    def headers(self) -> dict[str, list[str] | None]:
        from tasks.normalize import cell_text

        return {t: [cell_text(v) for v in rows[0]] if rows else [] for t, rows in self.tabs.items()}

    def change_structure(self, changes) -> None:
        for change in changes:
            rows = self.tabs.setdefault(change.title, [[]]) if change.new_tab else self.tabs[change.title]
            if not rows:
                rows.append([])
            _put(rows, 1, change.start_col, list(change.headers))

    def states(self, titles: list[str]) -> dict[str, _MemoryState]:
        return {t: _MemoryState(self.tabs[t]) for t in titles if t in self.tabs}

    def write(self, writes, *, whole: bool = True) -> None:
        del whole  # in memory: always whole
        for w in writes:
            rows = self.tabs[w.title]
            for row, col, value in w.cells:
                _put(rows, row, col, [_cell(value)])
            start = _MemoryState(rows).last_row + 1
            del rows[start - 1:]
            for values in w.rows:
                rows.append([_cell(v) for v in values])
            for row in sorted(w.deletes, reverse=True):
                del rows[row - 1]


def _put(rows: list[list[Any]], row: int, col: int, values: list[Any]) -> None:
    while len(rows) < row:
        rows.append([])
    line = rows[row - 1]
    end = col - 1 + len(values)
    if len(line) < end:
        line.extend([None] * (end - len(line)))
    line[col - 1:end] = values


# --------------------------------------------------------------------------- a day of staff work


def staff_activity(tabs: dict[str, list[list[Any]]], *, seed: int = SEED, rate: float = 0.01,
                   now: pd.Timestamp = NOW) -> dict[str, int]:
    """What staff do between two runs, in place: ~`rate` of the bookings touched, a few new ones.

    Of the touched bookings: 40% rescheduled a day later, 30% cancelled (日程変更希望), 30% won
    (結果 成約; a held booking, or an active one marked 来店済み). New bookings: rate/10 of the
    customers book again. Only staff columns change. Returns what was done, by kind.
    """
    from tasks.demo_data import ACTIVE, BOOKINGS_TAB
    from tasks.normalize import cell_text

    rng = Random(f"{seed}/staff-activity")
    rows = tabs[BOOKINGS_TAB]
    header = [cell_text(h) for h in rows[0]]
    col = {h: header.index(h) for h in header if h}
    body = [r for r in rows[1:] if len(r) > col["ステータス"]]
    readable = [r for r in body if isinstance(r[col["開始日時"]], dt.datetime)]
    picked = rng.sample(readable, min(len(readable), max(1, round(rate * len(body)))))
    done = {"rescheduled": 0, "cancelled": 0, "won": 0, "new": 0}
    for i, row in enumerate(picked):
        _pad(row, len(header))
        kind = ("rescheduled", "rescheduled", "rescheduled", "rescheduled", "cancelled", "cancelled", "cancelled",
                "won", "won", "won")[i % 10]
        if kind == "rescheduled":
            row[col["開始日時"]] = row[col["開始日時"]] + dt.timedelta(days=1)
        elif kind == "cancelled":
            row[col["ステータス"]] = "キャンセル"
            row[col["キャンセル区分"]] = "日程変更希望"
        else:
            if row[col["ステータス"]] in ACTIVE:
                row[col["ステータス"]] = "来店済み"
            row[col["結果"]] = "成約"
            row[col["プラン"]] = row[col["プラン"]] or "スタンダード"
        done[kind] += 1
    customers = [r[0] for r in tabs["顧客"][1:] if r and r[0]]
    staff = [r[0] for r in tabs["担当者"][1:] if r and len(r) > 1 and r[1] == "営業"]
    local_now = now.tz_convert("Asia/Tokyo").tz_localize(None).to_pydatetime()
    for i in range(max(1, round(rate / 10 * len(customers)))):
        new = [None] * len(header)
        start = local_now.replace(hour=10, minute=0) + dt.timedelta(days=3 + i % 20, minutes=30 * (i % 18))
        for h, v in {"予約ID": f"N{i + 1:06d}", "お客様番号": rng.choice(customers), "営業担当": rng.choice(staff),
                     "メニュー": "個別相談", "開始日時": start, "ステータス": "仮予約中", "アクション実行": "実行する",
                     "Zoomリンク": "https://zoom.us/j/1234567890"}.items():
            new[col[h]] = v
        rows.append(new)
        done["new"] += 1
    return done


def a_day_later(tabs: dict[str, list[list[Any]]], mapping: Any, *, seed: int = SEED,
                now: pd.Timestamp = NOW) -> tuple[MemoryWorkbook, dict[str, int]]:
    """What a scheduled run meets: the workbook after one whole run, then a day of staff work."""
    from flows.pipeline import run

    book = MemoryWorkbook(tabs)
    run(book, mapping, now, _quiet)
    return book, staff_activity(book.tabs, seed=seed, now=now)


def _pad(row: list[Any], width: int) -> None:
    if len(row) < width:
        row.extend([None] * (width - len(row)))


# --------------------------------------------------------------------------- the measurement


def pipeline_titles(mapping: Any) -> list[str]:
    """The tabs a run creates, which the Google adapter makes exactly as wide as their headers: the
    stand-in gets them so (its other tabs get Google's 1000 x 26 at least), for the cell limit."""
    return [tab.title for tab in mapping.tabs.values() if tab.kind == "pipeline"]


def _quiet(*_: Any) -> None:
    """A transport that accepts every message (the benchmark sends nothing anywhere)."""


def measure(size: int, *, seed: int = SEED, now: pd.Timestamp = NOW, steady: bool = True,
            profile: int = 0) -> dict[str, Any]:
    """Time and peak memory of check + reconcile for one size, first and steady run (this process).

    `steady=False` skips the whole run that the steady figure needs (its writer is what takes long
    at 100k). `profile=N` also profiles the first run and prints its N slowest functions of this
    repository (cumulative) to stderr, so the figures on stdout stay JSON.
    """
    from tasks.check import check
    from tasks.demo_data import generate_frames
    from tasks.mapping import load_mapping
    from tasks.pure_step import run_scope
    from tasks.reconcile import reconcile

    mapping = load_mapping()
    t0 = time.perf_counter()
    tabs = generate_frames(size, seed=seed, now=now.to_pydatetime())
    generate_s = time.perf_counter() - t0
    out: dict[str, Any] = {"size": size, "seed": seed, "rows": {t: len(r) - 1 for t, r in tabs.items()},
                           "generate_s": round(generate_s, 3)}

    def timed(raw: dict[str, list[list[Any]]], label: str) -> Any:
        gc.collect()
        exact = reset_peak()
        base = rss_mb()
        # as flows.pipeline.run runs them (what they build is frozen until the run ends)
        with run_scope(), ChildMemory() as child:
            c1, k1, t1 = time.process_time(), _children_cpu(), time.perf_counter()
            frames = check(raw, mapping)
            t2 = time.perf_counter()
            plan = reconcile(frames, now, mapping)
            c3, k3, t3 = time.process_time(), _children_cpu(), time.perf_counter()
        out[label] = {"check_s": round(t2 - t1, 3), "rules_s": round(t3 - t2, 3), "total_s": round(t3 - t1, 3),
                      "cpu_s": round(c3 - c1 + k3 - k1, 3), "other_core_cpu_s": round(k3 - k1, 3),
                      "peak_mb": round(peak_mb() + child.peak_mb, 1), "other_core_mb": round(child.peak_mb, 1),
                      "rss_before_mb": round(base, 1), "peak_exact": exact,
                      "plan": {"edits": len(plan.edits), "appends": len(plan.appends), "deletes": len(plan.deletes),
                               "problems": len(frames.problems)}}
        del frames
        return plan

    if profile:
        profiled(tabs, mapping, now, profile)
    timed(tabs, "first")
    out["reconcile_s"] = out["first"]["total_s"]
    out["reconcile_cpu_s"] = out["first"]["cpu_s"]
    out["peak_mb"] = out["first"]["peak_mb"]
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    if not steady:
        return out
    book, out["activity"] = a_day_later(tabs, mapping, seed=seed, now=now)
    del tabs
    timed(book.read(), "steady")
    out["reconcile_steady_s"] = out["steady"]["total_s"]
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    out["peak_mb"] = max(out["first"]["peak_mb"], out["steady"]["peak_mb"])
    return out


def profiled(raw: dict[str, list[list[Any]]], mapping: Any, now: pd.Timestamp, top: int) -> None:
    """cProfile of check + reconcile; the `top` slowest functions of this repository to stderr."""
    from tasks.check import check
    from tasks.pure_step import run_scope
    from tasks.reconcile import reconcile

    profiler = cProfile.Profile()
    with run_scope():  # as timed: the steps as a run runs them
        profiler.runcall(lambda: reconcile(check(raw, mapping), now, mapping))
    stats = pstats.Stats(profiler, stream=sys.stderr)
    stats.sort_stats("cumulative").print_stats(str(ROOT), top)


def measure_in_subprocess(size: int, *, seed: int = SEED, steady: bool = True, timeout: float = 3600) -> dict[str, Any]:
    """measure() in a fresh interpreter, so each size's peak memory is its own."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(
        [sys.executable, "-m", "bench.reconcile", "--one", str(size), "--seed", str(seed), "--json",
         *([] if steady else ["--no-steady"])],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        return {"size": size, "error": " | ".join(tail)}
    return json.loads(done.stdout.strip().splitlines()[-1])


def growth(results: list[dict[str, Any]], key: str = "reconcile_s") -> dict[str, float]:
    """Time ratios between consecutive sizes (10x more customers: ~10 is linear, ~100 quadratic)."""
    ok = [r for r in results if key in r]
    return {f"{a['size']}->{b['size']}": round(b[key] / a[key], 2) for a, b in pairwise(ok) if a[key]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reconcile", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--one", type=int, help="measure one size in this process")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument("--no-steady", action="store_true", help="first run only (no whole run for the steady one)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="with --one: also print the N slowest functions of the first run to stderr")
    args = parser.parse_args(argv)
    if args.one is not None:
        result = measure(args.one, seed=args.seed, steady=not args.no_steady, profile=args.profile)
        print(json.dumps(result, ensure_ascii=False))
        return 0
    results = [measure_in_subprocess(n, seed=args.seed, steady=not args.no_steady) for n in args.sizes]
    summary = {"results": results, "growth": growth(results), "growth_steady": growth(results, "reconcile_steady_s")}
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
        return 0
    print(f"{'customers':>10} {'bookings':>9} {'first s':>8} {'(check+rules)':>14} {'steady s':>9} {'peak MB':>8}")
    for r in results:
        if "error" in r:
            print(f"{r['size']:>10} error: {r['error']}")
            continue
        f, steady = r["first"], r.get("steady", {}).get("total_s", float("nan"))
        print(f"{r['size']:>10} {r['rows']['予約']:>9} {f['total_s']:>8.2f} {f['check_s']:>6.2f}+{f['rules_s']:<7.2f}"
              f" {steady:>9.2f} {r['peak_mb']:>8.0f}")
    print("growth (first run):", summary["growth"], " steady:", summary["growth_steady"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
