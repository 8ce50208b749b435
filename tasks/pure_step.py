"""How the pure steps (check, reconcile or the planner that replaces it) run: the collector paused,
pandas' own string storage, and what they built frozen until the run ends."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd


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

    On the way out the collector is turned back on with everything alive frozen (`gc.freeze`):
    the frames and the plan live until the run ends and are freed by reference counting, so the
    collection that the first allocation after the step would start (0.6 s at 100k, traversing two
    million tuples) and the older generations' later ones find nothing to do. The price: cycles
    made in the step wait for `thaw` (a whole check and reconcile at 10k leaves 35 objects in
    cycles), which `flows.pipeline.run` calls when the run ends.
    """
    was_on = gc.isenabled()
    gc.disable()
    try:
        with pd.option_context("mode.string_storage", "python"):
            yield
    finally:
        if was_on:
            gc.freeze()
            gc.enable()


def thaw() -> None:
    """The end of a run: what the pure steps froze goes back to the collector (its few cycles too)."""
    gc.unfreeze()
