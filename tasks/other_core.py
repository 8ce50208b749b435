"""Pure work on the machine's other core: a forked child computes it while this process goes on.

Fork, because the child must see the checked frames (a gigabyte at 100k customers) without a copy;
multiprocessing's fork context does the forking, the pipe and the reaping. The child's value comes
back pickled. Where fork is missing (Windows) or fails, or the child dies or takes far longer than
this process's own share, `result()` is None and the caller does the work itself: the value never
depends on the child, only the time does.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import Generic, TypeVar

T = TypeVar("T")

# One child starts at a time: catch_warnings saves and restores the process's filters, and a fork
# copies every open descriptor. `_READERS` holds this process's ends of the pipes of the children
# still running; a new child closes them (the pipe's write end the parent has already closed when
# the next fork comes), so no child holds a pipe open for another and each one's end is seen.
_STARTING = threading.Lock()
_READERS: set[Connection] = set()
_SENDING: set[Connection] = set()  # in a child: the end it sends its value on, which its own children close
_FORK_FAILED = False  # the standard library leaks a failed fork's pipes: no second try in this process


class Child(Generic[T]):
    """The work started beside this process; `result()` waits for its value (None: do it here)."""

    def __init__(self, reader: Connection | None, pid: int | None):
        self._reader = reader
        self.pid = pid

    def result(self, wait: float) -> T | None:
        """The value, or None when the child sent nothing (it failed or died) or had not begun to
        send it after `wait` seconds (a child stuck or starved: the caller is faster doing it)."""
        if self._reader is None:
            return None
        try:
            return self._reader.recv() if self._reader.poll(wait) else None
        except (EOFError, OSError):  # the child died or failed: nothing was sent
            return None


@contextmanager
def on_other_core(work: Callable[[], T]) -> Iterator[Child[T]]:
    """`work` running in a forked child for the length of the block; the child is reaped on the
    way out, killed first if it is still there (its value not taken, or the block raised)."""
    global _FORK_FAILED
    if _FORK_FAILED or "fork" not in multiprocessing.get_all_start_methods():
        yield Child(None, None)
        return
    context = multiprocessing.get_context("fork")
    process, reader = None, None
    with _STARTING:
        try:
            reader, writer = context.Pipe(duplex=False)
            _READERS.add(reader)
            try:
                process = context.Process(target=_run, args=(work, writer), name="salesops-other-core")
                with warnings.catch_warnings():
                    # Python 3.12+ warns of fork in a threaded process (Prefect's): a lock another thread
                    # held stays held in the child. The child takes none: pure pandas, one pickle, exit.
                    warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)
                    process.start()
            finally:
                writer.close()
        except (OSError, AssertionError):  # no descriptors, memory or processes left; a daemonic process
            _FORK_FAILED = True
            process = None
        except BaseException:  # Ctrl-C while starting: no child, and no pipe, left behind
            _stop(process)
            _forget(reader)
            raise
        if process is None:
            _forget(reader)
    if process is None:
        yield Child(None, None)
        return
    try:
        yield Child(reader, process.pid)
    finally:
        try:
            _stop(process)
        finally:
            with _STARTING:
                _forget(reader)


def _stop(process: multiprocessing.process.BaseProcess | None) -> None:
    """Kill the child if it is still there, and reap it (nothing to do if it never started)."""
    if process is None or process.pid is None:
        return
    if process.is_alive():
        process.kill()
    process.join()


def _forget(reader: Connection | None) -> None:
    """Close this process's end of a child's pipe (with `_STARTING` held)."""
    if reader is not None:
        _READERS.discard(reader)
        reader.close()


def _run(work: Callable[[], T], writer: Connection) -> None:
    """The child: send the value; on any failure send nothing (the parent redoes the work and
    meets the same error there, with its own traceback). Its copies of the parent's read ends are
    closed first: were the parent killed, the send fails instead of waiting for a reader forever.
    The lock, held by the parent's thread when it forked, is a new one here (work may start a child,
    which closes this one's write end in turn: the parent sees this child's end when it dies)."""
    global _STARTING
    _STARTING = threading.Lock()
    for end in (*_READERS, *_SENDING):
        end.close()
    _READERS.clear()
    _SENDING.clear()
    _SENDING.add(writer)
    with contextlib.suppress(BaseException):
        writer.send(work())
