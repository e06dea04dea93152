"""The machine-code cache: an entry runs only if it is whole, the user's, and this model's.

Each case damages or plants an entry where the XOR model's code is cached,
then runs the model in a fresh process (a bad entry used to abort the
process, or hang it) and checks the numbers, and that the entry was
replaced by a good one or, in a folder others can write, left unused.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dlc.compiler import compile_source, read_model
from dlc.frontend import load_source

from .conftest import ROOT

SCRIPT = """
import sys
import numpy as np
sys.path.insert(0, {folder!r})
import {name} as m
p = m.init_params(0)
X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float)
Y = np.array([[0], [1], [1], [0]], float)
print(repr(m.loss(p, X, Y)))
"""
OTHER = "input x : [2]\ntarget y : [1]\nparam w : [1, 2] = constant(0.5)\nloss mse(sin(w @ x), y)\n"


@pytest.fixture(scope="module")
def modules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the XOR model's LLVM module (xor_native.py) and another model's (other_native.py)."""
    folder = tmp_path_factory.mktemp("modules")
    for name, model in (
        ("xor_native", read_model(ROOT / "examples" / "xor.dlc")),
        ("other_native", load_source(OTHER)),
    ):
        (folder / f"{name}.py").write_text(compile_source(model, backend="llvm"))
    return folder


def run(folder: Path, modules: Path, name: str = "xor_native") -> str:
    """The XOR loss computed in a fresh process (that imports only the module) whose cache is ``folder``."""
    env = {**os.environ, "DLC_CACHE_DIR": str(folder)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(folder=str(modules), name=name)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"exit {done.returncode}:\n{done.stderr[-2000:]}"
    return done.stdout.strip()


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory, modules: Path) -> tuple[Path, bytes, str]:
    """The XOR model's cache entry as dlc writes it, and the loss it computes."""
    folder = tmp_path_factory.mktemp("cache")
    loss = run(folder, modules)
    (entry,) = folder.iterdir()
    return entry, entry.read_bytes(), loss


def entry_in(folder: Path, good: tuple[Path, bytes, str]) -> Path:
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder / good[0].name


def assert_replaced(path: Path, good: tuple[Path, bytes, str]) -> None:
    info = os.lstat(path)
    assert stat.S_ISREG(info.st_mode)
    assert path.read_bytes() == good[1], "the bad entry was not replaced by a whole one"


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1 :]


DAMAGE = {
    "truncated": lambda d: d[: len(d) // 2],
    "zeroed": lambda d: bytes(len(d)),
    "random": lambda d: os.urandom(len(d)),
    "empty": lambda d: b"",
    "one byte flipped in the code": lambda d: flip(d, len(d) // 2),
    "one byte flipped near the end": lambda d: flip(d, len(d) - 5),
    "one byte flipped in the header": lambda d: flip(d, 3),
    "code without its header": lambda d: d.split(b"\n", 4)[4],
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_entry_is_deleted_and_compiled_again(damage: str, tmp_path: Path, good, modules) -> None:  # type: ignore[no-untyped-def]
    path = entry_in(tmp_path / "cache", good)
    path.write_bytes(DAMAGE[damage](good[1]))
    assert run(path.parent, modules) == good[2]
    assert_replaced(path, good)


def test_another_models_entry_at_this_key_is_refused(tmp_path: Path, good, modules) -> None:  # type: ignore[no-untyped-def]
    other = tmp_path / "other"
    run(other, modules, "other_native")
    (entry,) = other.iterdir()
    path = entry_in(tmp_path / "cache", good)
    shutil.copyfile(entry, path)
    assert run(path.parent, modules) == good[2]
    assert_replaced(path, good)


def test_a_fifo_at_the_key_neither_hangs_nor_stays(tmp_path: Path, good, modules) -> None:  # type: ignore[no-untyped-def]
    path = entry_in(tmp_path / "cache", good)
    os.mkfifo(path)
    assert run(path.parent, modules) == good[2]
    assert_replaced(path, good)


def test_a_link_at_the_key_is_not_followed(tmp_path: Path, good, modules) -> None:  # type: ignore[no-untyped-def]
    path = entry_in(tmp_path / "cache", good)
    path.symlink_to("/dev/zero")
    assert run(path.parent, modules) == good[2]
    assert_replaced(path, good)
    target = tmp_path / "elsewhere.o"
    target.write_bytes(good[1])
    path.unlink()
    path.symlink_to(target)  # even a good entry behind a link is not read through it
    assert run(path.parent, modules) == good[2]
    assert_replaced(path, good)
    assert target.read_bytes() == good[1]


def test_an_entry_others_can_write_is_not_run(tmp_path: Path, good, modules) -> None:  # type: ignore[no-untyped-def]
    path = entry_in(tmp_path / "cache", good)
    path.write_bytes(good[1])
    path.chmod(0o666)
    assert run(path.parent, modules) == good[2]
    assert_replaced(path, good)
    assert not os.stat(path).st_mode & 0o022


@pytest.mark.skipif(os.getuid() != 0, reason="giving a file to another user needs root")
def test_an_entry_of_another_user_is_not_run(tmp_path: Path, good, modules) -> None:  # type: ignore[no-untyped-def]
    path = entry_in(tmp_path / "cache", good)
    path.write_bytes(DAMAGE["zeroed"](good[1]))  # would abort the process if it were loaded
    os.chown(path, 65534, 65534)
    assert run(path.parent, modules) == good[2]
    assert_replaced(path, good)


def test_a_folder_others_can_write_is_not_used_at_all(tmp_path: Path, good, modules) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o777)
    planted = folder / good[0].name
    planted.write_bytes(DAMAGE["zeroed"](good[1]))  # anyone could have put it there
    planted.chmod(0o644)
    assert run(folder, modules) == good[2]
    assert planted.read_bytes() == DAMAGE["zeroed"](good[1]), "nothing is written into such a folder"
    assert sorted(p.name for p in folder.iterdir()) == [planted.name]


def test_a_new_folder_is_private(tmp_path: Path, good, modules) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "new" / "cache"
    assert run(folder, modules) == good[2]
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert (folder / good[0].name).read_bytes() == good[1]


def test_stale_temporary_files_of_killed_writers_are_removed(tmp_path: Path, good, modules) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "cache"
    folder.mkdir(mode=0o700)
    stale, fresh = folder / ".dlc-abc.tmp", folder / ".dlc-def.tmp"
    for f in (stale, fresh):
        f.write_bytes(b"half an entry")
    os.utime(stale, (1, 1))
    assert run(folder, modules) == good[2]
    assert not stale.exists() and fresh.exists()
