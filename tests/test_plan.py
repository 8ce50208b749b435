"""The plan as a value (union by address, conflicts refused, one canonical order), and how reconcile
builds it (facts shared by rules derived once, the garbage collector and pandas' string storage left
as found)."""

from __future__ import annotations

import gc
import re
import weakref
from random import Random

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flows.pipeline import run
from tasks.check import InputError, check
from tasks.demo_data import generate_frames
from tasks.mapping import MappingError
from tasks.plan import Append, Delete, Edit, Plan, PlanConflict, combine
from tasks.pure_step import run_scope
from tasks.reconcile import reconcile
from tasks.rules.bookings import booking_facts
from tasks.rules.operations import line_customers
from tasks.rules.reminders import reminder_state
from tasks.rules.tags import wanted
from tasks.workbooks.local import LocalWorkbook
from tests.conftest import NOW, booking, customer, team_tabs, write_book


def test_union_keeps_one_change_per_address():
    a = Edit("t", "k1", "f", None, "x", "r1")
    same_cell = Edit("t", "k1", "f", "old read elsewhere", "x", "r2")  # same new value: agreed
    row = Append.of("t", "k2", (("f", "y"),), "r")
    gone = Delete("t", "k3", "r")
    plan = Plan(edits=(a,), appends=(row,)) | Plan(edits=(same_cell,), appends=(row,), deletes=(gone, gone))
    assert plan.edits == (a,) and plan.appends == (row,) and plan.deletes == (gone,)


@pytest.mark.parametrize("other", [
    Plan(edits=(Edit("t", "k", "f", None, "y", "r"),)),
    Plan(edits=(Edit("t", "k", "f", None, "x", "r", check_only=True),)),
    Plan(appends=(Append.of("t", "k", (("f", "y"),), "r"),)),
])
def test_two_rules_disagreeing_on_one_cell_or_row_is_refused(other):
    mine = Plan(edits=(Edit("t", "k", "f", None, "x", "r"),), appends=(Append.of("t", "k", (("f", "x"),), "r"),))
    with pytest.raises(PlanConflict, match="disagree"):
        mine | other


def test_combine_is_the_union_in_canonical_order():
    b, a = Edit("t", "b", "f", None, 1, "r"), Edit("t", "a", "f", None, 2, "r")
    assert combine([Plan(edits=(b,)), Plan(edits=(a, b))]).edits == (a, b)


ADDRESSES = st.tuples(st.sampled_from(["customers", "bookings", "予約"]), st.text(max_size=4),
                      st.sampled_from(["f", "F", "タグ", "_row"]))


@given(addresses=st.lists(ADDRESSES, unique=True, max_size=40), cut=st.integers(0, 40))
def test_combine_orders_every_address_as_python_sorts_text(addresses, cut):
    """The ranks combine sorts by (pandas' hash table, then Python's sort of the distinct texts)
    give the order `sorted` gives, for edits and new rows alike, whichever plan holds what."""
    edits = [Edit(t, k, f, None, i, "r") for i, (t, k, f) in enumerate(addresses)]
    rows = [Append(t, k + f, ("f",), (i,), "r") for i, (t, k, f) in enumerate(addresses)]
    plan = combine([Plan(edits=tuple(edits[cut:]), appends=tuple(rows[:cut])),
                    Plan(edits=tuple(edits[:cut]), appends=tuple(rows[cut:]))])
    assert plan.edits == tuple(sorted(edits, key=lambda e: (e.tab, e.key, e.field)))
    assert [(a.tab, a.key) for a in plan.appends] == sorted({(a.tab, a.key) for a in rows})


def test_reconcile_gives_the_garbage_collector_back_as_it_found_it(tmp_path, mapping):
    tabs = team_tabs([customer("C001")], [booking("R001", "C001", "2026/11/25 14:00")])
    frames = check(LocalWorkbook(write_book(tmp_path / "team.xlsx", tabs)).read(), mapping)
    was = gc.isenabled()
    try:
        for state in (True, False):
            (gc.enable if state else gc.disable)()
            assert reconcile(frames, NOW, mapping)
            assert gc.isenabled() is state
    finally:
        (gc.enable if was else gc.disable)()


def test_a_rule_that_raises_still_gives_the_collector_back(tmp_path, mapping):
    """A mapping error found mid-reconcile (a template naming an unknown placeholder) must not
    leave the process without garbage collection."""
    key = mapping.tags.cancel_messages[mapping.tags.cancel_default]
    template = mapping.templates[key].model_copy(update={"body": "{nope}"})
    broken = mapping.model_copy(update={"templates": {**mapping.templates, key: template}})
    tabs = team_tabs([customer("C001")], [booking("R001", "C001", "2026/11/25 14:00", "キャンセル")])
    frames = check(LocalWorkbook(write_book(tmp_path / "team.xlsx", tabs)).read(), broken)
    was = gc.isenabled()
    gc.enable()
    try:
        with pytest.raises(MappingError, match="unknown placeholder"):
            reconcile(frames, NOW, broken)
        assert gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()


def test_check_and_reconcile_run_without_a_collection_and_give_the_collector_back(mapping):
    """Both pure steps build an object per row or change: no collection may start inside them (on a
    big workbook each would traverse the whole input again; once back on, one may start as they
    return), and each leaves the collector as found."""
    tabs = generate_frames(300, seed=7, now=NOW.to_pydatetime())
    started: list[int] = []

    def count(phase: str, info: dict) -> None:
        if phase == "start":
            started.append(info["generation"])

    was = gc.isenabled()
    gc.enable()
    gc.callbacks.append(count)
    try:
        frames = check(tabs, mapping)
        assert len(started) <= 1 and gc.isenabled()
        started.clear()
        assert reconcile(frames, NOW, mapping) and len(started) <= 1 and gc.isenabled()
        started.clear()
        [[] for _ in range(10_000)]  # outside them the collector runs every 700 new containers
        assert len(started) > 1
        gc.disable()
        check(tabs, mapping)
        assert not gc.isenabled()
        gc.enable()
        with pytest.raises(InputError):
            check({t: rows for t, rows in tabs.items() if t != "予約"}, mapping)
        assert gc.isenabled()
    finally:
        gc.callbacks.remove(count)
        (gc.enable if was else gc.disable)()


def test_inside_a_run_what_the_pure_steps_built_is_frozen_until_the_run_ends(tmp_path, mapping):
    """The frames and the plan live until the run ends and hold (almost) no cycle: inside a run
    they are frozen on the way out of each step, so the collector never traverses them (0.6 s at
    100k), and the run hands them back. Outside a run nothing is frozen (a caller's cycles stay
    collectable), and a host that froze objects of its own keeps its policy."""
    tabs = generate_frames(300, seed=7, now=NOW.to_pydatetime())
    was = gc.isenabled()
    gc.enable()
    try:
        gc.unfreeze()
        with run_scope():
            frames = check(tabs, mapping)
            after_check = gc.get_freeze_count()
            assert after_check > sum(len(t.data) for t in frames.tables.values())  # the input's row lists, at least
            plan = reconcile(frames, NOW, mapping)
            assert gc.get_freeze_count() - after_check >= len(plan.edits) + len(plan.appends)
            gc.disable()  # a caller that paused the collector keeps its own policy: nothing more frozen
            before = gc.get_freeze_count()
            reconcile(frames, NOW, mapping)
            assert gc.get_freeze_count() <= before  # (frozen objects freed meanwhile lower it)
            gc.enable()
        assert gc.get_freeze_count() == 0 and gc.isenabled()

        watch = weakref.ref(_Cycle([]))  # garbage only the collector can free
        reconcile(check(tabs, mapping), NOW, mapping)  # outside a run
        assert gc.get_freeze_count() == 0
        gc.collect()
        assert watch() is None  # the caller's cycle was not frozen with the step's objects

        frozen_after: dict[str, int] = {}

        def watched(fn):  # run's step hook: the freeze count after each step, inside the run
            def call(*args):
                out = fn(*args)
                frozen_after[fn.__name__] = gc.get_freeze_count()
                return out
            return call

        book = LocalWorkbook(write_book(tmp_path / "team.xlsx", team_tabs([customer("C001")], [])))
        run(book, mapping, NOW, lambda *a: None, dry_run=True, step=watched)
        assert frozen_after["check_step"] > 0 and frozen_after["reconcile_step"] > 0  # run is a run_scope
        assert gc.get_freeze_count() == 0 and gc.isenabled()

        host = [[] for _ in range(100)]  # noqa: F841 (kept alive: a host that freezes its own objects)
        gc.freeze()
        frozen = gc.get_freeze_count()
        with run_scope():
            reconcile(check(tabs, mapping), NOW, mapping)
        assert 0 < gc.get_freeze_count() <= frozen
    finally:
        gc.unfreeze()
        (gc.enable if was else gc.disable)()


class _Cycle:
    """An object in a reference cycle (it holds a list that holds it)."""

    def __init__(self, holder: list) -> None:
        self.holder = holder
        holder.append(self)


def test_check_and_reconcile_keep_strings_in_pandas_own_storage(mapping):
    """Where pyarrow is installed pandas 3 stores every str column in Arrow, and the rules' look-ups
    against big indexes then walk the Arrow arrays in Python (twice as slow at 100k). Both pure steps
    pin pandas' own storage: asked for Arrow outside (which this environment need not even have),
    they still run on Python strings, and the setting is given back."""
    tabs = generate_frames(30, seed=7, now=NOW.to_pydatetime())
    with pd.option_context("mode.string_storage", "pyarrow"):
        frames = check(tabs, mapping)
        assert reconcile(frames, NOW, mapping)
        assert pd.get_option("mode.string_storage") == "pyarrow"
    keys = frames["customers"].data.index
    assert isinstance(keys.dtype, pd.StringDtype) and keys.dtype.storage == "python"


def test_facts_several_rules_share_are_derived_once_per_frames_and_now(tmp_path, mapping):
    tabs = team_tabs([customer("C001")], [booking("R001", "C001", "2026/11/25 14:00")])
    frames = check(LocalWorkbook(write_book(tmp_path / "team.xlsx", tabs)).read(), mapping)
    assert booking_facts(frames, mapping) is booking_facts(frames, mapping)
    state = reminder_state(frames, NOW, mapping)
    assert reminder_state(frames, NOW, mapping) is state
    assert reminder_state(frames, NOW + pd.Timedelta(days=1), mapping) is not state
    assert wanted(frames, NOW, mapping) is wanted(frames, NOW, mapping)
    assert wanted(frames, NOW + pd.Timedelta(days=1), mapping) is not wanted(frames, NOW, mapping)
    assert line_customers(frames) is line_customers(frames)
    again = check(LocalWorkbook(tmp_path / "team.xlsx").read(), mapping)  # other frames: computed anew
    assert booking_facts(again, mapping) is not booking_facts(frames, mapping)
    assert booking_facts(again, mapping).equals(booking_facts(frames, mapping))


# --------------------------------------------------------------------------- row order


def _shuffled(tabs: dict[str, list[list]], seed: int) -> dict[str, list[list]]:
    """Every tab's rows in another order (a person sorted or filtered the sheet), headers kept first."""
    rng = Random(seed)
    out = {}
    for title, rows in tabs.items():
        body = [list(r) for r in rows[1:]]
        rng.shuffle(body)
        out[title] = [rows[0], *body]
    return out


_ROW_NUMBER = re.compile(r"(?<![A-Za-z0-9])[A-Z]{1,3}[0-9]+(?![0-9])|行[0-9]+")  # B7 (some ids look alike), 行12


def _without_row_numbers(plan: Plan) -> tuple:
    """The plan with what may name a row by its number masked: A1 addresses in texts, the row of a
    blank key, and the edits that move an エラー row's セル to where its cell is now. Everything
    else must be the same whatever the rows' order."""
    def clean(value):
        return _ROW_NUMBER.sub("#", value) if isinstance(value, str) else value

    edits = [tuple(map(clean, e)) for e in plan.edits if (e.tab, e.field) != ("errors", "cell")]
    appends = [(clean(a.tab), clean(a.key), a.fields, tuple(map(clean, a.cells)), clean(a.reason), a.group)
               for a in plan.appends]
    return edits, appends, [tuple(map(clean, d)) for d in plan.deletes]


@pytest.mark.parametrize("seed", [1, 2])
def test_the_plan_does_not_depend_on_the_order_of_rows(tmp_path, mapping, seed):
    """Same cells in another row order, same plan: on a first run, and on a later run where every
    pipeline tab has rows (a person may sort any tab; rules must never lean on sheet order)."""
    tabs = generate_frames(300, seed=seed, now=NOW.to_pydatetime())
    first = reconcile(check(tabs, mapping), NOW, mapping)
    assert first and _without_row_numbers(first) == _without_row_numbers(
        reconcile(check(_shuffled(tabs, seed), mapping), NOW, mapping))
    book = LocalWorkbook(write_book(tmp_path / "team.xlsx", tabs))
    run(book, mapping, NOW, lambda *a: None)
    later, read = NOW + pd.Timedelta(days=3), book.read()
    read["予約"] = [row for i, row in enumerate(read["予約"]) if i % 40 != 7]  # staff deleted some: "deleted" facts too
    plan = reconcile(check(read, mapping), later, mapping)
    assert plan and _without_row_numbers(plan) == _without_row_numbers(
        reconcile(check(_shuffled(read, seed), mapping), later, mapping))
