"""The plan's fingerprint: a change made for speed must leave it byte for byte the same.

A sha256 over the sorted plan of a generated team workbook: every edit, new row, removal and
problem, each field as JSON. A moment is written as its UTC ISO text, so that a Timestamp and a
datetime of one instant agree (the speed rounds changed which of the two the rules build); any
other change of a value, a key, a reason or the order of a row's cells changes the digest. Run it
on two trees and compare the lines:

    python -m bench.plan_digest --sizes 1000 10000            # first runs
    python -m bench.plan_digest --sizes 1000 10000 --steady   # after one whole run and a day of staff work
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import math
import sys
from typing import Any

import pandas as pd

from bench.reconcile import NOW, SEED, a_day_later


def canonical(value: Any) -> Any:
    """A value as JSON can hold it, one form per meaning (NaN as "nan", a moment in UTC)."""
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            return f"naive:{value.isoformat()}"
        return f"utc:{value.astimezone(dt.UTC).isoformat()}"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [canonical(v) for v in dataclasses.astuple(value)]
    if isinstance(value, tuple | list):
        return [canonical(v) for v in value]
    if value is None or isinstance(value, str | int | float):
        return value
    return f"{type(value).__name__}:{value!r}"


def digest(plan: Any) -> str:
    """sha256 of the sorted plan, a line per change, the kinds in a fixed order."""
    plan = plan.sorted()
    h = hashlib.sha256()
    for kind in ("edits", "appends", "deletes", "problems"):
        h.update(f"{kind}\n".encode())
        for change in getattr(plan, kind):
            h.update(json.dumps(canonical(change), ensure_ascii=False).encode() + b"\n")
    return h.hexdigest()


def measure(size: int, *, steady: bool = False, seed: int = SEED) -> dict[str, Any]:
    from tasks.check import check
    from tasks.demo_data import generate_frames
    from tasks.mapping import load_mapping
    from tasks.reconcile import reconcile

    mapping = load_mapping()
    tabs = generate_frames(size, seed=seed, now=NOW.to_pydatetime())
    if steady:
        tabs = a_day_later(tabs, mapping, seed=seed)[0].read()
    plan = reconcile(check(tabs, mapping), NOW, mapping)
    return {"size": size, "run": "steady" if steady else "first", "seed": seed, "edits": len(plan.edits),
            "appends": len(plan.appends), "deletes": len(plan.deletes), "problems": len(plan.problems),
            "digest": digest(plan)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.plan_digest", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000], help="customers")
    parser.add_argument("--steady", action="store_true", help="the steady run, not the first")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    for size in args.sizes:
        print(json.dumps(measure(size, steady=args.steady, seed=args.seed), ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
