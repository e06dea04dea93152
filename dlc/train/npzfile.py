"""Reading .npz archives that anyone may have written: no pickles, no allocation the file does not back.

An .npz is a zip of .npy members, each a small header (dtype, shape) and the
values. NumPy allocates what a header claims before it reads a byte, so a
header claiming 10^11 values would ask for 800 GB. Every member read here is
checked first: its header's shape times its item size must fit in the
member's size, and that size must fit in the archive (members are stored, or
deflated at most ~1000:1, as np.savez and np.savez_compressed write them).
Only regular files are opened, and object arrays (pickles) are refused.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from collections.abc import Collection
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from dlc.errors import DlcError
from dlc.files import human_bytes, open_regular

#: Deflate cannot expand data by more than about 1032:1; this bounds a member's claimed size.
DEFLATE_RATIO = 1100
MAX_HEADER = 10_000


@dataclass(frozen=True)
class Archive:
    """The arrays read from an archive, and the names of all it holds."""

    path: str
    arrays: dict[str, np.ndarray]
    held: tuple[str, ...]


def read_npz(path: str, names: Collection[str], what: str = "") -> Archive:
    """Read the arrays called ``names`` (those the archive holds) from the .npz at ``path``.

    Args:
        path: the archive.
        names: the members wanted, without ".npy"; others are listed but not read.
        what: how messages name the file ("the checkpoint").

    Raises:
        DlcError: if the file is not a regular file, not a zip, damaged, holds
            pickles, or a member claims more values than it holds or memory allows.
    """
    label = f"{what} {path}" if what else path
    with open_regular(path, what) as f:
        if not zipfile.is_zipfile(f):
            raise DlcError(f"{label} is not a .npz archive (it is not a zip file)")
        f.seek(0)
        try:
            with zipfile.ZipFile(f) as archive:
                members = {_key(info.filename): info for info in archive.infolist()}
                size = f.seek(0, 2)
                arrays = {
                    key: _member(label, archive, info, size) for key, info in members.items() if key in names
                }
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError) as exc:
            raise DlcError(f"{label} is not a readable .npz archive ({exc})") from None
    return Archive(path, arrays, tuple(sorted(members)))


def _key(filename: str) -> str:
    return filename.removesuffix(".npy")


def _member(label: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo, size: int) -> np.ndarray:
    name = _key(info.filename)
    where = f"{label}: array '{name}'"
    if not info.filename.endswith(".npy"):
        raise DlcError(f"{where} is not a NumPy array (the member is not an .npy file)")
    _check_sizes(where, info, size)
    try:
        with archive.open(info) as member:
            shape, dtype, header = _header(member)
    except ValueError as exc:
        raise DlcError(f"{where} has no valid .npy header ({exc})") from None
    if dtype.hasobject:
        raise DlcError(
            f"{where} holds Python objects, which can only be read by unpickling; dlc refuses pickles"
        )
    need = math.prod(shape) * dtype.itemsize
    if header + need > info.file_size:
        raise DlcError(
            f"{where}: its header claims shape {list(shape)} ({human_bytes(need)}), "
            f"but the archive holds only {human_bytes(info.file_size)} for it"
        )
    try:
        with archive.open(info) as member:
            return np.asarray(
                np.lib.format.read_array(member, allow_pickle=False, max_header_size=MAX_HEADER)
            )
    except MemoryError:
        raise DlcError(
            f"{where} of shape {list(shape)} needs {human_bytes(need)} of memory, more than there is"
        ) from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DlcError(f"{where} is damaged ({exc})") from None


def _check_sizes(where: str, info: zipfile.ZipInfo, size: int) -> None:
    """A member's claimed size must be backed by the archive's bytes."""
    if info.compress_type == zipfile.ZIP_STORED:
        plausible = info.file_size == info.compress_size
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        plausible = info.file_size <= info.compress_size * DEFLATE_RATIO + 4096
    else:
        raise DlcError(f"{where} is compressed in a way NumPy never writes (zip method {info.compress_type})")
    if not plausible or info.compress_size > size:
        raise DlcError(f"{where}: the archive's directory claims sizes its contents cannot have (damaged?)")


def _header(member: IO[bytes]) -> tuple[tuple[int, ...], np.dtype[Any], int]:
    """The shape, the dtype and the length of an .npy header."""
    fmt = np.lib.format
    version = fmt.read_magic(member)
    read = getattr(fmt, "_read_array_header", None)
    if read is not None:
        shape, _, dtype = read(member, version, max_header_size=MAX_HEADER)
    elif version == (1, 0):
        shape, _, dtype = fmt.read_array_header_1_0(member, max_header_size=MAX_HEADER)
    else:
        shape, _, dtype = fmt.read_array_header_2_0(member, max_header_size=MAX_HEADER)
    return tuple(shape), np.dtype(dtype), member.tell()
