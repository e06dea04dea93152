"""Reading the files a user names: regular files only, of bounded size.

A path may name a FIFO (reading it waits for a writer, maybe forever), a
device such as /dev/zero (endless) or a folder. Each is opened without
blocking and refused unless it is a regular file, before anything is read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from dlc.errors import DlcError


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_regular(path: str | Path, what: str = "") -> BinaryIO:
    """Open ``path`` for reading in binary, if it is a regular file.

    Args:
        path: the file.
        what: how messages name it ("the data", "the model").

    Raises:
        DlcError: if it is missing, unreadable, or not a regular file.
    """
    label = _label(path, what)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)  # no wait for a FIFO's writer
    except OSError as exc:
        raise DlcError(f"cannot read {label}: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        os.close(fd)
        raise DlcError(f"cannot read {label}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise DlcError(f"cannot read {label}: it is {_kind(mode)}, not a regular file")
    return os.fdopen(fd, "rb")


def read_regular(path: str | Path, limit: int, what: str = "") -> bytes:
    """The bytes of the regular file ``path``, if it holds at most ``limit`` of them.

    Raises:
        DlcError: if it cannot be read, is not a regular file, or is larger than ``limit``.
    """
    label = _label(path, what)
    with open_regular(path, what) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise DlcError(f"{label}: the file is larger than {human_bytes(limit)}")
        try:
            data = f.read(limit + 1)
        except OSError as exc:
            raise DlcError(f"cannot read {label}: {exc.strerror or exc}") from None
    if len(data) > limit:  # it grew while being read
        raise DlcError(f"{label}: the file is larger than {human_bytes(limit)}")
    return data


def _label(path: str | Path, what: str) -> str:
    return f"{what} {path}" if what else str(path)


def check_regular(path: str | Path, what: str = "") -> None:
    """Raise ``DlcError`` unless ``path`` is a readable regular file (opened, not read)."""
    open_regular(path, what).close()


def human_bytes(count: float) -> str:
    """``count`` bytes for people: 7.45 GiB, 12 MiB."""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if count >= 1 << shift:
            return f"{count / (1 << shift):.3g} {unit}"
    return f"{int(count)} bytes"


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (both existing and the same, or the same absolute path)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).absolute().resolve() == Path(b).absolute().resolve()
