"""Writing files so that a reader never sees half of one: a temporary file, then a rename.

dlc's own temporary files sit beside their target and are named
``.<target>.dlc-<host>-<pid>-<random><suffix>``: the host (a short hash of its
name) and the process id of the writer. A writer killed in the middle leaves
one behind; the next write of the same target removes it once it is sure the
file is stale: its writer ran on this host and is no longer alive, or (for a
writer on another host sharing the folder) it was last written over a day ago.
Hidden files of any other form are never touched.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dlc.errors import DlcError

#: A file of another host's writer is stale after this many seconds.
STALE_SECONDS = 24 * 3600

_swept: set[Path] = set()  # the targets this process has swept already


def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def own_temp(target: Path, suffix: str) -> Path:
    """A new, empty file of this process beside ``target`` (mode 0600), named as dlc's own.

    Raises:
        OSError: if the folder cannot be written.
    """
    for _ in range(100):
        tmp = target.parent / f".{target.name}.dlc-{_host()}-{os.getpid()}-{secrets.token_hex(4)}{suffix}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"no free temporary name beside {target}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, but belongs to someone else
        return True
    return True


def _stale(entry: os.DirEntry[str], host: str, pid: int, now: float) -> bool:
    if host == _host():
        return pid != os.getpid() and not _alive(pid)
    try:
        info = entry.stat(follow_symlinks=False)
    except OSError:
        return False
    return now - info.st_mtime > STALE_SECONDS


def sweep(target: str | Path) -> list[Path]:
    """Remove the stale temporary files dlc left beside ``target``; returns those removed.

    Only names of dlc's own form for this very target are considered; anything
    that cannot be inspected or removed is left alone.
    """
    target = Path(target).absolute()
    mine = re.compile(rf"\.{re.escape(target.name)}\.dlc-([0-9a-f]{{6}})-([0-9]+)-[0-9a-f]{{8}}\.[A-Za-z.]+")
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        match = mine.fullmatch(entry.name)
        if match is None or not entry.is_file(follow_symlinks=False):
            continue
        if _stale(entry, match.group(1), int(match.group(2)), now):
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                pass
    return removed


def check_writable(path: str | Path, what: str) -> None:
    """Make sure ``path`` can be written (by a temporary file and a rename) before any work.

    Also sweeps stale temporary files left beside it.

    Raises:
        DlcError: if its folder is missing or cannot be written, or it names a folder,
            a device or a pipe.
    """
    target = Path(path).absolute()
    if not target.parent.is_dir():
        raise DlcError(f"cannot write {what} {path}: there is no folder {target.parent}")
    if target.exists() and not target.is_file():
        raise DlcError(f"cannot write {what} {path}: it exists and is not a regular file")
    sweep(target)
    try:
        os.unlink(own_temp(target, ".tmp"))
    except OSError as exc:
        raise DlcError(f"cannot write {what} {path}: {exc.strerror or exc}") from None


@contextmanager
def replacing(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step.

    Two writers racing for one path both succeed and the file is one of theirs, whole.

    Raises:
        DlcError: if the directory cannot be written.
    """
    target = Path(path).absolute()
    if target not in _swept:
        _swept.add(target)
        sweep(target)
    try:
        tmp = own_temp(target, suffix)
    except OSError as exc:
        raise DlcError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        default_mode(tmp)
        os.replace(tmp, target)
    except OSError as exc:
        raise DlcError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def default_mode(path: Path) -> None:
    """Give ``path`` the mode open() would have given a new file (own_temp makes 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
