"""The cyclic garbage collector, paused while a pure step builds millions of small objects."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: at 100k customers `check` makes a list per row and the
    rules two million plan tuples, none of them in a cycle, and the collector would traverse them
    (and the whole input) again each time their number grows by a quarter (a third of the reminders
    rule's time). Cycles made meanwhile are collected as usual once it is back on; it is left as it
    was found, also when the step raises."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()
