"""Replacing a file the way a person expects: whole or not at all, and still the same file to them.

The new content goes to a temporary file next to the target, then `os.replace` swaps it in, so a
reader never sees half a file. A symlink is written through (its target replaced, the link kept),
and the file keeps its permission bits, and its owner and group as far as this user may set them:
a temporary file is created 0600, owned by whoever runs the job. A new file gets 0666 less the umask.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path


class CannotWrite(ValueError):
    """The file cannot be written (its folder missing, not writable or full; the workbook read-only or
    open in Excel); nothing was written."""


def replace_atomically(path: Path, write: Callable[[str], object]) -> None:
    """`write(temporary_path)` then swap it in for `path` (its target, for a symlink)."""
    target = path.resolve()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise _cannot(path, target, exc) from None
    os.close(fd)
    try:
        write(tmp)
        if target.exists():
            _keep_access(target, tmp)
        else:  # a new file gets the mode any other program would give it, not mkstemp's 0600
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except OSError as exc:
        raise _cannot(path, target, exc) from None
    finally:
        Path(tmp).unlink(missing_ok=True)  # left only by a failure


def _cannot(path: Path, target: Path, exc: OSError) -> CannotWrite:
    return CannotWrite(f"cannot write {path.name} in the folder {target.parent}: {exc.strerror or exc}; nothing was written")


def _keep_access(target: Path, tmp: str) -> None:
    """The target's owner and group (root may set both, others a group they are in), then its mode
    (after: a change of owner clears set-id bits)."""
    info = target.stat()
    if hasattr(os, "chown"):  # not on Windows, where a file has no POSIX owner to keep
        for uid in (info.st_uid, -1):
            with suppress(OSError):
                os.chown(tmp, uid, info.st_gid)
                break
    os.chmod(tmp, stat.S_IMODE(info.st_mode))
