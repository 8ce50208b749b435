"""How the pure steps (check, reconcile or the planner that replaces it) run: the collector paused,
pandas' own string storage, and, inside a run, what they built frozen until the run ends."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd

_in_run = False  # set by run_scope: freezing is only safe where someone thaws


@contextmanager
def pure_step() -> Iterator[None]:
    """Two settings for a step that builds a whole workbook's frames and plan, both given back as
    found, also when the step raises:

    - No cyclic garbage collection: at 100k customers `check` makes a list per row and the rules
      two million plan tuples, none of them in a cycle, and the collector would traverse them (and
      the whole input) again each time their number grows by a quarter (a third of the reminders
      rule's time).
    - Strings stored by pandas itself, even where pyarrow is installed (pandas 3 then picks Arrow
      for every str column): the rules' `isin` against big indexes walks an Arrow array in Python.
      At 100k with Arrow a steady run took 42–45 s against 23 s, and a first run peaked at 1.73 GB
      against 1.29.

    Inside `run_scope` the collector comes back on with everything alive frozen (`gc.freeze`):
    the frames and the plan live until the run ends and are freed by reference counting, so the
    collection the first allocation after the step would start (0.6 s at 100k, traversing two
    million tuples) finds nothing to do.
    """
    was_on = gc.isenabled()
    gc.disable()
    try:
        with pd.option_context("mode.string_storage", "python"):
            yield
    finally:
        if was_on:
            if _in_run:
                gc.freeze()
            gc.enable()


@contextmanager
def run_scope() -> Iterator[None]:
    """A whole run (flows.pipeline.run): its pure steps may freeze, and everything frozen goes back
    to the collector when it ends, cycles included (a whole check and reconcile at 10k makes 35
    objects in cycles; garbage the caller left before the run waits with them). Outside a run
    nothing is frozen, so a service calling check() itself leaks nothing; and a host process that
    froze objects of its own keeps its policy: this run freezes nothing."""
    global _in_run
    if _in_run or gc.get_freeze_count():
        yield
        return
    _in_run = True
    try:
        yield
    finally:
        _in_run = False
        gc.unfreeze()
