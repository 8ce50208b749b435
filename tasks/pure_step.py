"""How the pure steps (check, reconcile or the planner that replaces it) run: the collector paused,
pandas' own string storage."""

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
      rule's time). Cycles made meanwhile are collected as usual once it is back on.
    - Strings stored by pandas itself, even where pyarrow is installed (pandas 3 then picks Arrow
      for every str column): the rules' `isin` against big indexes walks an Arrow array in Python.
      At 100k with Arrow a steady run took 42–45 s against 23 s, and a first run peaked at 1.73 GB
      against 1.29.
    """
    was_on = gc.isenabled()
    gc.disable()
    try:
        with pd.option_context("mode.string_storage", "python"):
            yield
    finally:
        if was_on:
            gc.enable()
