"""Benchmark: finding the duplicate candidates among 10,000 and 100,000 customers.

    python -m bench.duplicates                   # 10k and 100k, JSON
    python -m bench.duplicates --sizes 10000 30000 100000 --repeat 3

Customers are built in memory as staff type them (gimei names, hyphenated or full-width phones,
upper-case e-mails, the booking system's placeholder e-mails, LINE ids) with 2% second
registrations (the same name, a variant kanji or a kana typo, sharing a phone, an e-mail or the
LINE id) and one office phone shared by 60 customers (over the cap: reported, not paired). They go
through `check` like any run (not timed), then the timed part is the whole candidates rule
(`duplicate_candidates`: keys, blocking, the 重複候補 rows and the 顧客.重複候補 column) and, within
it, the blocking alone (`find_candidates`). Best of `--repeat` runs, wall and CPU time (the machine
may be shared; CPU time is this process's own work). `ratio` is the 100k time over the 10k time:
linear growth is about 10.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from random import Random

import pandas as pd

from tasks.check import check
from tasks.demo_data import CUSTOMER_HEADERS, VARIANT_KANJI, _name_pools
from tasks.mapping import load_mapping
from tasks.rules.duplicates import duplicate_candidates, find_candidates

NOW = pd.Timestamp("2026-11-20T10:00", tz="Asia/Tokyo")
SEED = 7
DUPLICATE_RATE = 0.02
OFFICE_PHONE, OFFICE_STAFF = "03-5555-0000", 60
_FULL = {c: c + 0xFEE0 for c in range(0x21, 0x7F)}
_TYPO = dict(zip("シツソンカガタダハバ", "ツシンソガカダタバハ", strict=True))


def customer_rows(n: int, seed: int = SEED) -> list[list]:
    """The 顧客 tab (header row first) for n customers, as staff would have typed it."""
    rng = Random(f"{seed}/{n}")
    last, male, female = _name_pools()
    rows = []
    for i in range(n):
        family = last[int(rng.random() * len(last))]
        pool = female if rng.random() < 0.55 else male
        given = pool[int(rng.random() * len(pool))]
        roll = rng.random()
        line = f"U{rng.getrandbits(128):032x}" if roll < 0.8 else None
        digits = f"0{rng.choice('789')}0{rng.randrange(10**8):08d}"
        phone = f"{digits[:3]}-{digits[3:7]}-{digits[7:]}" if rng.random() < 0.7 else None
        if phone and rng.random() < 0.03:
            phone = phone.translate(_FULL)
        email = f"user{i}.{rng.randrange(10**6)}@example.com" if roll >= 0.8 or rng.random() < 0.4 else None
        if roll >= 0.92:  # booked by phone: the placeholder e-mail
            phone = phone or f"{digits[:3]}-{digits[3:7]}-{digits[7:]}"
            email = f"{digits}@leporto.com"
        elif email and rng.random() < 0.03:
            email = email.upper()
        row = dict(zip(CUSTOMER_HEADERS, [None] * len(CUSTOMER_HEADERS), strict=True))
        row.update({"お客様番号": f"C{i + 1:06d}", "姓": family[0], "名": given[0], "セイ": family[2],
                     "メイ": given[2], "LINEユーザーID": line, "電話番号": phone, "メールアドレス": email,
                     "初回登録日": f"2025/{1 + i * 12 // max(n, 1):02d}/01"})
        rows.append(row)
    _second_registrations(rng, rows)
    for row in rng.sample(rows, min(OFFICE_STAFF, n)):
        row["電話番号"] = OFFICE_PHONE
    return [CUSTOMER_HEADERS, *[[r[h] for h in CUSTOMER_HEADERS] for r in rows]]


def _second_registrations(rng: Random, rows: list[dict]) -> None:
    for k, j in enumerate(rng.sample(range(1, len(rows)), int(DUPLICATE_RATE * len(rows)))):
        first, second = rows[rng.randrange(j)], rows[j]
        second["姓"], second["名"], second["セイ"], second["メイ"] = first["姓"], first["名"], first["セイ"], first["メイ"]
        kind = k % 3
        if kind == 1:  # a variant kanji where the name has one
            second["姓"] = "".join(VARIANT_KANJI.get(ch, ch) for ch in second["姓"])
        elif kind == 2:  # a typo in the reading
            second["セイ"] = "".join(_TYPO.get(ch, ch) for ch in second["セイ"])
        shared = ("電話番号", "メールアドレス", "LINEユーザーID")[int(rng.random() * 3)]
        if first[shared] is not None and not str(first[shared]).endswith("@leporto.com"):
            second[shared] = first[shared]


def measure(n: int, repeat: int, mapping) -> dict:
    tabs = {"顧客": customer_rows(n), "予約": [["予約ID", "お客様番号", "開始日時", "ステータス"]], "担当者": [["名前", "役割"]]}
    started = time.perf_counter()
    frames = check(tabs, mapping)
    check_s = time.perf_counter() - started
    best: dict[str, float] = {}
    for _ in range(repeat):
        for name, fn in (("find_candidates", lambda: find_candidates(frames["customers"].data, mapping.duplicates.max_group)),
                         ("rule", lambda: duplicate_candidates(frames, NOW, mapping))):
            wall, cpu = time.perf_counter(), time.process_time()
            result = fn()
            figures = (time.perf_counter() - wall, time.process_time() - cpu)
            best[f"{name}_s"] = min(best.get(f"{name}_s", float("inf")), figures[0])
            best[f"{name}_cpu_s"] = min(best.get(f"{name}_cpu_s", float("inf")), figures[1])
            if name == "rule":
                plan = result
    proposed = sum(1 for a in plan.appends if dict(a.values).get("state") == "提案")
    return {
        "customers": n, "check_s": round(check_s, 3), **{k: round(v, 3) for k, v in best.items()},
        "candidates": len(plan.appends), "mergeable": proposed, "over_the_cap": len(plan.problems),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    mapping = load_mapping()
    sizes = [measure(n, args.repeat, mapping) for n in args.sizes]
    out = {"sizes": sizes, "target_s": 5.0, "cpus": os.cpu_count(), "load_average": os.getloadavg()}
    if len(sizes) >= 2:
        small, big = sizes[0], sizes[-1]
        out["ratio"] = round(big["rule_s"] / small["rule_s"], 2)
        out["cpu_ratio"] = round(big["rule_cpu_s"] / small["rule_cpu_s"], 2)
        out["size_ratio"] = big["customers"] / small["customers"]
    print(json.dumps(out, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
