"""Reconcile on two cores: some rules run in a forked child, and the plan is the one a single core
makes, whatever happens to the child."""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest

from tasks.check import check
from tasks.demo_data import generate_frames
from tasks.frames import Problem
from tasks.other_core import on_other_core
from tasks.plan import Append, Delete, Edit, Plan
from tasks.pure_step import run_scope
from tasks.reconcile import BESIDE, RULES, plans_of, reconcile
from tests.conftest import NOW

ROOT = Path(__file__).resolve().parents[1]


def test_the_work_runs_in_another_process_and_its_value_comes_back():
    with on_other_core(lambda: (os.getpid(), pd.Series([1, 2]).sum())) as child:
        pid, total = child.result(60)
    assert pid == child.pid != os.getpid()
    assert total == 3


def test_a_child_that_fails_quietly_gives_nothing_so_the_caller_does_the_work(capfd):
    def broken():
        raise ValueError("a rule's bug")

    with on_other_core(broken) as child:
        assert child.result(60) is None
    assert capfd.readouterr().err == ""  # the caller's rerun reports it, with its own traceback


def test_a_child_killed_gives_nothing():
    with on_other_core(lambda: os.kill(os.getpid(), signal.SIGKILL)) as child:
        assert child.result(60) is None


def test_a_child_that_does_not_answer_in_time_gives_nothing_and_is_killed():
    with on_other_core(lambda: time.sleep(3600)) as child:
        assert child.result(0.2) is None
        pid = child.pid
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_child_whose_parent_is_killed_does_not_wait_forever_to_send(tmp_path):
    """SIGKILL (the OOM killer, a worker's grace period) skips the parent's clean-up: the child, its
    plan bigger than the pipe holds, must end on its own instead of keeping its copy of the frames;
    also when a second child, started meanwhile (another thread's run), still lives."""
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from tasks.other_core import on_other_core
        with on_other_core(lambda: time.sleep(0.5) or "x" * 1_000_000) as first:
            with on_other_core(lambda: time.sleep(3600)) as second:
                print(first.pid, second.pid, flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
    """), encoding="utf-8")
    out = tmp_path / "pids.txt"
    with out.open("w") as stdout:  # a file, not a pipe: the children keep the parent's stdout open
        parent = subprocess.run([sys.executable, str(script)], stdout=stdout, stderr=subprocess.DEVNULL, timeout=60,
                                check=False)
    assert parent.returncode == -signal.SIGKILL
    first, second = map(int, out.read_text().split())
    try:
        for _ in range(300):  # the first sends after 0.5 s and should fail at once (no reader)
            if not _alive(first):
                break
            time.sleep(0.1)
        assert not _alive(first)
    finally:
        for pid in (first, second):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Running, not exited (a zombie waits for whoever adopted it to reap it)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_work_in_the_child_may_start_a_child_of_its_own():
    """The child is forked while the starting lock is held: its own copy must not stay locked."""
    def nested():
        with on_other_core(lambda: 42) as inner:
            return inner.result(60)

    with on_other_core(nested) as child:
        assert child.result(30) == 42


def test_a_child_that_dies_is_seen_at_once_though_its_own_child_lives_on(tmp_path):
    """The grandchild must not keep the child's write end open: the parent would wait out its whole
    wait for a child already dead."""
    pid_file = tmp_path / "grandchild"

    def dies_after_starting_one():
        inner = on_other_core(lambda: time.sleep(3600))
        pid_file.write_text(str(inner.__enter__().pid))
        os._exit(1)

    try:
        with on_other_core(dies_after_starting_one) as child:
            assert child._reader.poll(30)  # readable: the end of the pipe, not a value
            assert child.result(0) is None
    finally:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_out_of_descriptors_the_work_is_done_here_and_nothing_escapes(tmp_path):
    """A real limit, not a stand-in: with no descriptor left for the pipe, the caller gets None
    (it does the work itself) and keeps to one core after that."""
    script = tmp_path / "no_fds.py"
    script.write_text(textwrap.dedent(f"""
        import os, resource, sys
        sys.path.insert(0, {str(ROOT)!r})
        from tasks.other_core import on_other_core
        open_now = len(os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (open_now, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        for _ in range(3):
            with on_other_core(lambda: 1) as child:
                print(child.result(5), child.pid)
    """), encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:3] == ["None None"] * 3


def test_threads_starting_children_at_once_leave_the_warning_filters_as_found():
    before = list(warnings.filters)

    def many():
        for _ in range(30):
            with on_other_core(lambda: 1) as child:
                assert child.result(60) == 1

    threads = [threading.Thread(target=many) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert warnings.filters == before


def test_a_child_whose_value_is_not_wanted_is_killed_and_reaped():
    with pytest.raises(KeyError), on_other_core(lambda: time.sleep(3600)) as child:
        pid = child.pid
        raise KeyError("the block fails while the child works")
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped already: no zombie left behind
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_threaded_process_forks_safely_while_other_threads_hold_locks_and_log(caplog):
    """Prefect's threads live in the process that forks; the child takes none of their locks, so
    Python 3.12+'s warning of fork beside threads is not passed on to the run's log."""
    held, stop = threading.Lock(), threading.Event()
    log = logging.getLogger("salesops.test.busy")

    def busy():
        with held:
            while not stop.is_set():
                log.info("working")

    thread = threading.Thread(target=busy)
    thread.start()
    try:
        with caplog.at_level(logging.INFO, "salesops.test.busy"), warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            for _ in range(5):
                with on_other_core(lambda: pd.DataFrame({"a": range(1000)}).groupby(pd.Series(range(1000)) % 7).sum()) as child:
                    assert child.result(60)["a"].sum() == sum(range(1000))
    finally:
        stop.set()
        thread.join()
    assert not [w for w in seen if "fork" in str(w.message)]


def test_a_plan_crosses_processes_whole():
    moment = pd.Timestamp("2026-11-20T10:00", tz="Asia/Tokyo").to_pydatetime()
    plan = Plan(
        edits=(Edit("予約", "B1", "end", None, moment, "終了日時"), Edit("顧客", "C1", "name", "a", "b", "r", "g", True)),
        appends=(Append.of("outbox", "n1", (("key", "n1"), ("state", None)), "r", "grp"),),
        deletes=(Delete("エラー", "e1", "fixed"),),
        problems=(Problem("予約", "B2", "B1", "開始日時", "x", "読めません"),),
        log=("a note",),
    )
    for value in (plan, Plan()):
        back = pickle.loads(pickle.dumps(value))
        assert back == value and back.log == value.log
        assert all(type(e) is Edit for e in back.edits) and all(type(a) is Append for a in back.appends)


def test_rules_beside_run_in_the_child_and_the_plans_keep_the_rules_order(mapping):
    frames = check(generate_frames(40, seed=3, now=NOW.to_pydatetime()), mapping)

    def where(frames, now, mapping):
        return Plan(log=(str(os.getpid()),))

    beside = plans_of((where, *RULES), frames, NOW, mapping, (where,))
    here = plans_of((where, *RULES), frames, NOW, mapping)
    assert beside[0].log != (str(os.getpid()),) and here[0].log == (str(os.getpid()),)
    assert beside[1:] == here[1:]


def test_reconcile_on_two_cores_plans_what_one_core_plans(mapping):
    frames = check(generate_frames(300, seed=11, now=NOW.to_pydatetime()), mapping)
    assert set(BESIDE) <= set(RULES)
    with run_scope():
        two = reconcile(frames, NOW, mapping, beside_from_rows=0)
        one = reconcile(frames, NOW, mapping, beside_from_rows=None)
    assert two and two == one and two.log == one.log
