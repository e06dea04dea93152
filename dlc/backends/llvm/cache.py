"""The machine-code cache on disk: an entry is checked before its code is run, never trusted.

Loading an entry runs its code, so an entry is used only when all of these
hold; otherwise it is deleted (where it can be) and the IR compiled again:

- the folder belongs to the user and no one else can write in it (as ssh
  asks of ``~/.ssh``); it is created with mode 0700. A folder that fails
  this is not used at all: nothing is read from it or written to it;
- the entry is a regular file (opened without following a link, and
  without blocking on a FIFO), owned by the user, writable by no one else,
  and of a bounded size;
- its header names the key it was written for (the SHA-256 of the IR, the
  CPU, the LLVM version and the settings: so another model's entry at this
  name is refused) and the SHA-256 and length of the code that follows,
  and the code matches them.

Entries are written to a temporary file that is then renamed, so a reader
sees a whole entry or none; a writer killed half-way leaves a temporary
file that a later writer removes once it is a day old.
"""

# CACHE STARTS
import contextlib
import hashlib
import os
import stat
import tempfile
import time

MAGIC = b"dlc machine code, version 1\n"
MAX_CODE_BYTES = 1 << 28
STALE_SECONDS = 86400


def cache_folder():
    """The cache folder (``DLC_CACHE_DIR``, by default ``~/.cache/dlc``), or None when it is switched off."""
    folder = os.environ.get("DLC_CACHE_DIR")
    if folder is None:
        folder = os.path.join(os.path.expanduser("~"), ".cache", "dlc")
    return folder or None


def load_code(folder, key):
    """The machine code cached under ``key`` (a hex string), or None if there is none fit to run."""
    if folder is None or not _private(folder):
        return None
    path = os.path.join(folder, key + ".o")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError:  # a link (ELOOP), or unreadable
        _remove(path)
        return None
    with os.fdopen(fd, "rb") as f:
        code = _verified(f, key)
    if code is None:
        _remove(path)
    return code


def store_code(folder, key, code):
    """Cache ``code`` under ``key``; a cache that cannot be written is no error."""
    if folder is None:
        return
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        if not _private(folder):
            return
        _sweep(folder)
        fd, temporary = tempfile.mkstemp(dir=folder, prefix=".dlc-", suffix=".tmp")
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_header(key, code) + code)
        os.replace(temporary, os.path.join(folder, key + ".o"))
    except OSError:
        _remove(temporary)


def _header(key, code):
    digest = hashlib.sha256(code).hexdigest()
    return MAGIC + f"{key}\n{digest}\n{len(code)}\n".encode()


def _verified(f, key):
    """The code of an open entry if it is a regular file of the user's whose header and code agree."""
    info = os.fstat(f.fileno())
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        return None
    if info.st_size > MAX_CODE_BYTES + 256:
        return None
    data = f.read(MAX_CODE_BYTES + 257)
    lines = data.split(b"\n", 4)
    if len(lines) != 5 or lines[0] + b"\n" != MAGIC or lines[1] != key.encode():
        return None
    code = lines[4]
    if lines[3] != str(len(code)).encode() or lines[2] != hashlib.sha256(code).hexdigest().encode():
        return None
    return code


def _private(folder):
    """Whether ``folder`` is a directory of the user's that no one else can write in."""
    try:
        info = os.stat(folder)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o022


def _sweep(folder):
    """Remove temporary files that writers killed long ago left behind."""
    now = time.time()
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".dlc-") and entry.name.endswith(".tmp"):
                try:
                    if now - entry.stat(follow_symlinks=False).st_mtime > STALE_SECONDS:
                        os.unlink(entry.path)
                except OSError:
                    pass


def _remove(path):
    with contextlib.suppress(OSError):
        os.unlink(path)
