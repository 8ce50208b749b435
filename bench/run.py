"""Every benchmark figure for one size, as one JSON object (or a short table).

    python -m bench.run --size 10000 --json
    → {"size", "reconcile_s", "peak_mb", "ours": {"requests", "cells_written", "wall_s", "staff_edits_lost", …},
       "naive": {…}, "gspread_dataframe": {…}, "demo": {…}, …}

- reconcile_s / peak_mb: the pure steps (check + reconcile) on the generated workbook, first run,
  in a fresh process (bench/reconcile.py; the steady run's figures are under "reconcile").
- ours / naive / gspread_dataframe: the same plan written three ways through the Sheets API
  stand-in while a person edits the sheet (bench/alternatives.py).
- demo: whole-process wall time of `salesops reconcile --workbook demo.xlsx` (imports included), a
  first run and a second run with nothing to do, on the demo workbook (300 customers, seed 7).
Nothing here asserts on time: it measures and prints. The figures in bench/README.md were copied
from this output by hand, with the command and the date.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.reconcile import NOW, ROOT, SEED, measure_in_subprocess

DEMO_CUSTOMERS = 300
CLI = "from flows.cli import main; main()"


def demo_figures(customers: int = DEMO_CUSTOMERS, *, seed: int = SEED) -> dict[str, Any]:
    """`salesops reconcile` as a person runs it on the demo workbook: two whole processes."""
    from tasks.demo_data import make_team_workbook

    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # the in-process path, no server
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    out: dict[str, Any] = {"customers": customers}
    with tempfile.TemporaryDirectory() as tmp:
        path = make_team_workbook(Path(tmp) / "team.xlsx", customers, seed=seed, now=NOW.to_pydatetime())
        for label in ("first_s", "second_s"):
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", CLI, "reconcile", "--workbook", str(path), "--now", NOW.isoformat()],
                                  cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
            out[label] = round(time.perf_counter() - t0, 2)
            if done.returncode != 0:
                out["error"] = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])[:300]
                break
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import flows.cli, flows.pipeline"], cwd=ROOT, env=env,
                       capture_output=True, timeout=300, check=False)
        out["imports_s"] = round(time.perf_counter() - t0, 2)
    return out


def figures(size: int, *, seed: int = SEED, e2e: bool = True, demo: bool = True) -> dict[str, Any]:
    from bench.alternatives import compare

    pure = measure_in_subprocess(size, seed=seed)
    out: dict[str, Any] = {"size": size, "reconcile_s": pure.get("reconcile_s"), "peak_mb": pure.get("peak_mb"),
                           "reconcile": pure}
    if e2e:
        both = compare(size, seed=seed)
        for name in ("ours", "naive", "gspread_dataframe"):
            out[name] = both.pop(name)
        out["e2e"] = both
    if demo:
        out["demo"] = demo_figures(seed=seed)
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    out["cpus"] = os.cpu_count()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1000, help="customers (3.1 bookings each on average)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--json", action="store_true", help="print the JSON object only")
    parser.add_argument("--no-e2e", action="store_true", help="skip the stand-in comparison (slow at 100k)")
    parser.add_argument("--no-demo", action="store_true", help="skip the demo's whole-process timing")
    args = parser.parse_args(argv)
    result = figures(args.size, seed=args.seed, e2e=not args.no_e2e, demo=not args.no_demo)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    print(json.dumps(result, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
