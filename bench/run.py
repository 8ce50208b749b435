"""Every benchmark figure for one size, as one JSON object (one line with --json, indented without).

    python -m bench.run --size 10000 --json
    → {"size", "reconcile_s", "peak_mb", "ours": {"requests", "cells_written", "wall_s", "staff_edits_lost", …},
       "naive": {…}, "gspread_dataframe": {…}, "demo": {…}, …}

- reconcile_s / peak_mb: the pure steps (check + reconcile) on the generated workbook, first run,
  each time in a fresh process (bench/reconcile.py); with --repeat N the median of N (every run's
  figures, and the steady run's, are under "reconcile").
- ours / naive / gspread_dataframe: the same plan written three ways through the Sheets API
  stand-in while a person edits the sheet (bench/alternatives.py).
- demo: whole-process wall time of `salesops reconcile --workbook demo.xlsx` (imports included), a
  first run and a second run with nothing to do, on the demo workbook (300 customers, seed 7).
- load_average: before and after (the machine is shared: wall times hold other people's work too).
Nothing here asserts on time: it measures and prints (exit status 1 if a part could not be measured).
The figures in bench/README.md were copied from this output by hand, with the command and the date.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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
    """`salesops reconcile` as a person runs it on the demo workbook: two whole processes, and the imports alone."""
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


def _median(values: list[Any]) -> Any:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def pure_figures(size: int, *, seed: int, repeat: int, steady: bool) -> dict[str, Any]:
    """`repeat` fresh processes of bench.reconcile; the medians, the first run's details, every run's figures."""
    runs = [measure_in_subprocess(size, seed=seed, steady=steady) for _ in range(repeat)]
    ok = [r for r in runs if "error" not in r]
    out: dict[str, Any] = {**(ok[0] if ok else runs[0]), "runs": len(runs)}
    for key in ("reconcile_s", "peak_mb", "reconcile_cpu_s", "reconcile_steady_s"):
        out[f"{key}_runs"] = [r.get(key) for r in ok]
        out[key] = _median(out[f"{key}_runs"])
    if len(ok) < len(runs):
        out["errors"] = [r["error"] for r in runs if "error" in r]
    return out


def demo_repeated(customers: int, *, seed: int, repeat: int) -> dict[str, Any]:
    runs = [demo_figures(customers, seed=seed) for _ in range(repeat)]
    out = {**runs[0]}
    for key in ("first_s", "second_s", "imports_s"):
        out[f"{key}_runs"] = [r.get(key) for r in runs]
        out[key] = _median(out[f"{key}_runs"])
    return out


def figures(size: int, *, seed: int = SEED, e2e: bool = True, demo: bool = True, repeat: int = 1,
            e2e_repeat: int | None = None, steady: bool = True, demo_customers: int = DEMO_CUSTOMERS) -> dict[str, Any]:
    from bench.alternatives import compare

    load_before = [round(x, 2) for x in os.getloadavg()]
    t0 = time.perf_counter()
    pure = pure_figures(size, seed=seed, repeat=repeat, steady=steady)
    out: dict[str, Any] = {"size": size, "reconcile_s": pure.get("reconcile_s"), "peak_mb": pure.get("peak_mb"),
                           "reconcile": pure}
    if e2e:
        both = compare(size, seed=seed, repeat=e2e_repeat or repeat)
        for name in ("ours", "naive", "gspread_dataframe"):
            out[name] = both.pop(name)
        out["e2e"] = both
    if demo:
        out["demo"] = demo_repeated(demo_customers, seed=seed, repeat=repeat)
    out["repeat"] = {"pure": repeat, "e2e": (e2e_repeat or repeat) if e2e else 0, "demo": repeat if demo else 0}
    out["bench_s"] = round(time.perf_counter() - t0, 1)
    out["load_average"] = {"before": load_before, "after": [round(x, 2) for x in os.getloadavg()]}
    out["cpus"] = os.cpu_count()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1000, help="customers (3.1 bookings each on average)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--json", action="store_true", help="print the JSON object only")
    parser.add_argument("--no-e2e", action="store_true", help="skip the stand-in comparison (slow at 100k)")
    parser.add_argument("--no-demo", action="store_true", help="skip the demo's whole-process timing")
    parser.add_argument("--no-steady", action="store_true",
                        help="pure figures of the first run only (the steady one needs a whole run first: slow at 100k)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each timed part; times are the medians")
    parser.add_argument("--e2e-repeat", type=int, help="runs of each writer (default: --repeat; its counts never vary)")
    parser.add_argument("--demo-customers", type=int, default=DEMO_CUSTOMERS,
                        help="customers in the demo workbook (the shipped demo: 300)")
    args = parser.parse_args(argv)
    if min(args.size, args.repeat, args.demo_customers, 1 if args.e2e_repeat is None else args.e2e_repeat) < 1:
        parser.error("--size, --repeat, --e2e-repeat and --demo-customers must be at least 1")
    result = figures(args.size, seed=args.seed, e2e=not args.no_e2e, demo=not args.no_demo, repeat=args.repeat,
                     e2e_repeat=args.e2e_repeat, steady=not args.no_steady, demo_customers=args.demo_customers)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(json.dumps(result, ensure_ascii=False, indent=1))
    return 1 if failed(result) else 0


def failed(result: dict[str, Any]) -> bool:
    """A part that could not be measured (its "error" is in the figures): the exit status says so too."""
    parts = [result.get("reconcile", {}), result.get("demo", {})]
    parts += [result[name] for name in ("ours", "naive", "gspread_dataframe") if name in result]
    return any("error" in part or "errors" in part for part in parts)


if __name__ == "__main__":
    sys.exit(main())
