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
    if "fork" not in multiprocessing.get_all_start_methods():
        yield Child(None, None)
        return
    context = multiprocessing.get_context("fork")
    with _STARTING:
        reader, writer = context.Pipe(duplex=False)
        process = context.Process(target=_run, args=(work, writer), name="salesops-other-core")
        _READERS.add(reader)
        try:
            with warnings.catch_warnings():
                # Python 3.12+ warns of fork in a threaded process (Prefect's): a lock another thread
                # held stays held in the child. The child takes none: pure pandas, one pickle, exit.
                warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)
                process.start()
        except (OSError, AssertionError):  # no memory or processes left; a daemonic process may not fork
            process = None
        finally:
            writer.close()
    if process is None:
        _closed(reader)
        yield Child(None, None)
        return
    try:
        yield Child(reader, process.pid)
    finally:
        _closed(reader)
        if process.is_alive():
            process.kill()
        process.join()


def _closed(reader: Connection) -> None:
    with _STARTING:
        _READERS.discard(reader)
        reader.close()


def _run(work: Callable[[], T], writer: Connection) -> None:
    """The child: send the value; on any failure send nothing (the parent redoes the work and
    meets the same error there, with its own traceback). Its copies of the parent's read ends are
    closed first: were the parent killed, the send fails instead of waiting for a reader forever."""
    for reader in _READERS:
        reader.close()
    with contextlib.suppress(BaseException):
        writer.send(work())
