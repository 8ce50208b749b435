"""A plan: what a run will change, as a value that can be printed, saved and applied.

Rules return plans; plans compose by union; the writer applies one. Every change names its row by
key (never by row number) and every cell edit carries the value it expects to find, so the writer
can skip a cell that a person changed after the read (compare-and-set).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import chain, repeat
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from tasks.frames import Problem

Values = tuple[tuple[str, Any], ...]


class Edit(NamedTuple):
    """Set one cell of an existing row. `old` is the raw value read; `new` the value to write.

    A `check_only` edit writes nothing: it only asserts that the cell still holds `old`, so that a
    group (a merge) waits when a person changed a row it depends on.
    The changes are named tuples, not frozen dataclasses: a first run at 100k customers plans two
    million of them, and a tuple is built ~5x faster and weighs less than half.
    """

    tab: str
    key: str
    field: str
    old: Any
    new: Any
    reason: str
    group: str | None = None
    check_only: bool = False


class Append(NamedTuple):
    """Add a row with a deterministic key; the writer never adds a key that is already there.

    The row's fields and its cells are two tuples (`values` pairs them): rows of one tab share
    one tuple of fields, where a pair per cell was ten small tuples a row, millions on a first run.
    """

    tab: str
    key: str
    fields: tuple[str, ...]
    cells: tuple[Any, ...]
    reason: str
    group: str | None = None

    @classmethod
    def of(cls, tab: str, key: str, values: Values, reason: str, group: str | None = None) -> Append:
        """The row from (field, value) pairs."""
        return cls(tab, key, tuple(f for f, _ in values), tuple(v for _, v in values), reason, group)

    @property
    def values(self) -> Values:
        return tuple(zip(self.fields, self.cells, strict=True))

    def get(self, name: str, default: Any = None) -> Any:
        return self.cells[self.fields.index(name)] if name in self.fields else default

    def with_values(self, **changes: Any) -> Append:
        merged = dict(zip(self.fields, self.cells, strict=True)) | changes
        return self._replace(fields=tuple(merged), cells=tuple(merged.values()))


class Delete(NamedTuple):
    """Remove the row with this key (an error that was fixed, a merged customer)."""

    tab: str
    key: str
    reason: str
    group: str | None = None


# A change from one tuple of its fields, built in C: the class's own __new__ is a Python call, which
# costs more than the tuple itself when a first run at 100k builds two million changes.
new_edit = partial(tuple.__new__, Edit)
new_append = partial(tuple.__new__, Append)


def edits_of(tab: str, field: str, keys: Iterable[str], old: Iterable[Any], new: Iterable[Any], reason: str,
             groups: Iterable[str | None] | None = None) -> list[Edit]:
    """One edit of `field` per key, the columns zipped in C (`groups`: one per key, else none)."""
    return list(map(new_edit, zip(repeat(tab), keys, repeat(field), old, new, repeat(reason),
                                  repeat(None) if groups is None else groups, repeat(False))))


class PlanConflict(ValueError):
    """Two rules want different values in one cell: a bug in the rules, never silently resolved."""


@dataclass(frozen=True)
class Plan:
    edits: tuple[Edit, ...] = ()
    appends: tuple[Append, ...] = ()
    deletes: tuple[Delete, ...] = ()
    problems: tuple[Problem, ...] = ()  # input problems a rule found (an invalid payment link)
    log: tuple[str, ...] = field(default=(), compare=False)

    def __or__(self, other: Plan) -> Plan:
        return Plan(
            edits=_union(self.edits + other.edits, _CELL, lambda e: (e.new, e.check_only)),
            appends=_union(self.appends + other.appends, _ROW, lambda a: a.values),
            deletes=_union(self.deletes + other.deletes, _ROW, lambda d: ()),
            problems=_union(self.problems + other.problems, lambda p: p.problem_id, lambda p: p),
            log=self.log + other.log,
        )

    def __bool__(self) -> bool:
        return bool(self.edits or self.appends or self.deletes)

    def __reduce__(self):
        """Pickled a column at a time: a named tuple pickles through a Python call each, ~3x slower
        (a first run's plan at 100k crosses from the other core, tasks/other_core.py)."""
        return _unpickled, (_columns(self.edits), _columns(self.appends), self.deletes, self.problems, self.log)

    @property
    def size(self) -> int:
        return len(self.edits) + len(self.appends) + len(self.deletes)

    @property
    def tabs(self) -> list[str]:
        names = {e.tab for e in self.edits} | {a.tab for a in self.appends} | {d.tab for d in self.deletes}
        return sorted(names)

    def without_checks(self) -> Plan:
        """What the plan changes, as a summary counts and a diff lists it: a check-only edit writes nothing."""
        return replace(self, edits=tuple(e for e in self.edits if not e.check_only))

    def sorted(self) -> Plan:
        """The canonical order: the same plan prints and applies the same way every time."""
        return Plan(
            edits=tuple(sorted(self.edits, key=_CELL)),
            appends=tuple(sorted(self.appends, key=_ROW)),
            deletes=tuple(sorted(self.deletes, key=_ROW)),
            problems=tuple(sorted(self.problems, key=lambda p: p.problem_id)),
            log=self.log,
        )


def _columns(changes: tuple) -> list[tuple]:
    return list(zip(*changes, strict=True))


def _unpickled(edits: list[tuple], appends: list[tuple], deletes: tuple, problems: tuple, log: tuple) -> Plan:
    return Plan(tuple(map(new_edit, zip(*edits, strict=True))),
                tuple(map(new_append, zip(*appends, strict=True))), deletes, problems, log)


def combine(plans: list[Plan]) -> Plan:
    """The union of every plan, sorted: `(p1 | p2 | ...).sorted()` in one pass over each kind of change."""
    problems = _union(_every(plans, "problems"), lambda p: p.problem_id, lambda p: p)
    return Plan(
        edits=_sorted_union(_every(plans, "edits"), 3, lambda e: (e.new, e.check_only)),
        appends=_sorted_union(_every(plans, "appends"), 2, lambda a: a.values),
        deletes=_sorted_union(_every(plans, "deletes"), 2, lambda d: ()),
        problems=tuple(sorted(problems, key=lambda p: p.problem_id)),
        log=_every(plans, "log"),
    )


def _every(plans: list[Plan], kind: str) -> tuple:
    """One kind of change of every plan, concatenated in C (two million edits at 100k)."""
    return tuple(chain.from_iterable(map(attrgetter(kind), plans)))


def _sorted_union(items: tuple, width: int, payload) -> tuple:
    """`_union` then sorted by address (its first `width` fields), the addresses ranked by pandas'
    hash tables and one lexsort: a first run at 100k has two million changes, which Python's sort
    and a set of address tuples took seconds over. Any address twice goes the general way."""
    if len(items) < 2:
        return items
    # a list, then one array: np.fromiter of objects took ~2x as long (an address field is text)
    ranks = [_ranks(np.array(list(map(itemgetter(i), items)), dtype=object)) for i in range(width)]
    order = np.lexsort(ranks[::-1])  # lexsort's last key is the first field
    ordered = [r[order] for r in ranks]
    repeated = np.ones(len(items) - 1, dtype=bool)
    for r in ordered:
        repeated &= r[1:] == r[:-1]
    if repeated.any():
        return tuple(sorted(_union(items, itemgetter(*range(width)), payload), key=itemgetter(*range(width))))
    # itemgetter looks the items up in C, ~3x faster than map(items.__getitem__); two or more
    # positions (len(items) >= 2), so it gives a tuple, not the one item
    return itemgetter(*order.tolist())(items)


def _ranks(texts: np.ndarray) -> np.ndarray:
    """Each text's rank among the distinct texts, in Python's order of str (list.sort compares text
    about twice as fast as NumPy's sort of objects)."""
    codes, uniques = pd.factorize(texts)
    distinct = uniques.tolist()
    rank = np.empty(len(distinct), dtype=np.intp)
    rank[sorted(range(len(distinct)), key=distinct.__getitem__)] = np.arange(len(distinct))
    return rank[codes]


_CELL = itemgetter(0, 1, 2)  # an edit's (tab, key, field)
_ROW = itemgetter(0, 1)  # an append's or delete's (tab, key)


def _union(items: tuple, address, payload) -> tuple:
    addresses = list(map(address, items))
    if len(set(addresses)) == len(items):  # no address twice: nothing to compare (the common case)
        return items
    seen: dict = {}
    for where, item in zip(addresses, items, strict=True):
        if where in seen:
            if payload(seen[where]) != payload(item):
                raise PlanConflict(f"two rules disagree on {where}: {seen[where]!r} vs {item!r}")
            continue
        seen[where] = item
    return tuple(seen.values())
