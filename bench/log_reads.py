"""Benchmark: what a steady Google run reads as 変更履歴 grows.

The sheet of `bench.alternatives` (a generated team workbook after one whole run, then a day of
staff work), with `--log-rows` more rows of history in 変更履歴 (copies of its first row: months of
runs), served by the Sheets API stand-in. One whole run of ours over `GoogleWorkbook`; printed:
requests, cells read (every value the read answers carried, the write's re-read included) and
wall time. The log is append-only: what a run reads should not grow with it.

    python -m bench.log_reads --size 1000 --log-rows 0 100000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from bench.alternatives import CountingStandin
from bench.reconcile import NOW, SEED, _quiet, a_day_later, pipeline_titles
from tests.sheets_standin import service_account_info

SID = "1BenchLogSheet"


def measure(size: int, log_rows: int, *, seed: int = SEED) -> dict[str, Any]:
    from flows.pipeline import run
    from tasks.demo_data import generate_frames
    from tasks.mapping import CHANGELOG, load_mapping
    from tasks.workbooks.google import Backoff, GoogleWorkbook

    mapping = load_mapping()
    memory, _ = a_day_later(generate_frames(size, seed=seed, now=NOW.to_pydatetime()), mapping, seed=seed)
    log = memory.tabs[mapping.tabs[CHANGELOG].title]
    first_run_rows = len(log) - 1
    log += [list(log[1]) for _ in range(log_rows)]
    with CountingStandin() as standin:
        standin.add_spreadsheet(SID, memory.tabs, fitted=pipeline_titles(mapping))
        book = GoogleWorkbook(SID, credentials=service_account_info(standin.url), endpoint=standin.url,
                              mapping=mapping, backoff=Backoff(sleep=lambda _s: None))
        standin.reset_counts()
        standin.reset_written()
        t0 = time.perf_counter()
        summary = run(book, mapping, NOW, _quiet)
        wall = time.perf_counter() - t0
        return {"size": size, "log_rows": first_run_rows + log_rows, "requests": standin.count(),
                "cells_read": standin.cells_read, "cells_written": standin.cells_written,
                "changes": len(summary.report.changes), "wall_s": round(wall, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1000, help="customers")
    parser.add_argument("--log-rows", type=int, nargs="+", default=[0, 100_000], help="history rows added to 変更履歴")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    for rows in args.log_rows:
        print(json.dumps(measure(args.size, rows, seed=args.seed), ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
