"""Reconcile: every rule over the checked frames, one plan. Pure: no IO, no clock, no Prefect."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext

import pandas as pd

from tasks.frames import Frames
from tasks.mapping import Mapping
from tasks.other_core import on_other_core
from tasks.outbox import SENT
from tasks.plan import Plan, combine
from tasks.pure_step import pure_step
from tasks.rules.alerts import booking_alerts, remembered_start_and_salesperson
from tasks.rules.bookings import end_times
from tasks.rules.capacity import KIND as CAPACITY_KIND
from tasks.rules.capacity import workbook_capacity
from tasks.rules.duplicates import duplicate_candidates
from tasks.rules.errors import error_rows
from tasks.rules.metrics import customer_metrics
from tasks.rules.payment_links import payment_links
from tasks.rules.queue import BASELINE_REASON, operations_queue
from tasks.rules.reminders import reminders
from tasks.rules.tags import customer_tags
from tasks.tell import failed_notices

Rule = Callable[[Frames, pd.Timestamp, Mapping], Plan]

# Each concern is one module; order does not matter (plans compose by union, conflicts raise).
RULES: tuple[Rule, ...] = (
    end_times,
    customer_metrics,
    duplicate_candidates,
    customer_tags,
    operations_queue,
    reminders,
    booking_alerts,
    remembered_start_and_salesperson,
    payment_links,
    failed_notices,  # a notice out of tries is told to 運営 (tasks/tell.py)
    workbook_capacity,  # a workbook nearly full is told to 運営
)


# Rules whose plans are small beside their work: on a big workbook they run in a child on the
# machine's other core while the rest run here (a first run at 100k: ~2.2 s of ~5.8 s of rules,
# sent back in ~0.1 s). A rule with a big plan stays here: pickling it costs what it saves.
BESIDE: tuple[Rule, ...] = (booking_alerts, duplicate_candidates, payment_links)
# Rows of all tabs. Measured (median of 7): no gain at 1,200 rows, ~10% at 4,000, ~20% at 41,000;
# below this a run is fast anyway and stays one process.
BESIDE_FROM_ROWS = 10_000


def reconcile(frames: Frames, now: pd.Timestamp, mapping: Mapping, *, baseline: bool = False,
              beside_from_rows: int | None = BESIDE_FROM_ROWS) -> Plan:
    """Every rule's plan, combined. `beside_from_rows`: from how many rows `BESIDE` runs on the
    other core (None: never); the plan is the same either way."""
    with pure_step():
        big = beside_from_rows is not None and _rows(frames) >= beside_from_rows
        plans = plans_of(RULES, frames, now, mapping, BESIDE if big else ())
        found = tuple(p for plan in plans for p in plan.problems)  # error_rows keys them by id: no union first
        # one union and one sort over everything (combine sorts): a first run at 100k plans millions of changes
        plan = combine([*plans, error_rows(frames, now, mapping, found)])
    return as_baseline(plan) if baseline else plan


def plans_of(rules: tuple[Rule, ...], frames: Frames, now: pd.Timestamp, mapping: Mapping,
             beside: tuple[Rule, ...] = ()) -> list[Plan]:
    """Each rule's plan, in the order of `rules`; those in `beside` computed on the other core
    (here again if the child failed: pure rules give the same plan, or raise the same error)."""
    there = [rule for rule in rules if rule in beside]
    with on_other_core(lambda: [rule(frames, now, mapping) for rule in there]) if there else nullcontext() as child:
        started = time.perf_counter()
        plans = {rule: rule(frames, now, mapping) for rule in rules if rule not in there}
        # the child's share is about this one's: waiting four times as long for it to begin sending
        # means it is stuck or starved, and doing its part here is faster
        sent = child.result(max(60.0, 4 * (time.perf_counter() - started))) if child else None
    plans.update(zip(there, sent if sent is not None else [rule(frames, now, mapping) for rule in there],
                     strict=True))
    return [plans[rule] for rule in rules]


def _rows(frames: Frames) -> int:
    return sum(len(table.data) for table in frames.tables.values())


def as_baseline(plan: Plan) -> Plan:
    """The adoption run: fill everything, flood nobody (operations done, notices already sent).

    A baseline notice is 送信済 with no 送信日時 and 試行回数 0; エラー stays blank (nothing failed).
    A workbook nearly full is still told to 運営: it is a fact about today, not a backlog, and marked
    sent it would wait for next month while the writes run out of room.
    """
    appends = []
    for a in plan.appends:
        if a.tab == "operations":
            a = a.with_values(done=True, reason=BASELINE_REASON)
        elif a.tab == "outbox" and not a.key.startswith(f"{CAPACITY_KIND}:"):
            a = a.with_values(state=SENT)
        appends.append(a)
    return Plan(plan.edits, tuple(appends), plan.deletes, plan.problems, plan.log)
