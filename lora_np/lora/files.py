"""Saving and reading a folder of adapter files so that nothing is ever lost or mixed.

An adapter folder holds one adapter in up to two formats side by side (lora_np's own files and a
PEFT export), each made of two files, a config and its tensors. A config must never be read with
the tensors of another save, so a save replaces the whole folder as a unit:

1. the new files are written into a temporary sibling folder ``.<name>.lora_np-new-<pid>-<id>``,
   together with hard links to every file of the current folder that this save does not replace
   (the other format's files, a README, ...), and each file and the folder are fsynced;
2. the temporary folder and the folder swap places in ONE atomic step (Linux's
   ``renameat2(RENAME_EXCHANGE)``), and the parent folder is fsynced;
3. the old files, now in the temporary folder, are deleted.

Guarantee: at every instant the folder's name points at a complete folder, the old one or the new
one, so a crash at any moment (or a reader at the same time) sees the complete old adapter or the
complete new one. A reader opens the folder once and reads every file relative to that open
folder (:func:`read_folder`), so it reads one version even while a save swaps it; if the save
deletes the version it had opened before it finished, it starts again.

Leftovers of a killed save (temporary siblings whose process has ended) are removed by the next
save to that folder; loading never looks at them. Saves to one folder are not meant to run
concurrently: the last one wins. Where the OS has no atomic exchange, step 2 is two renames
(folder -> ``.<name>.lora_np-old-...``, temporary -> folder) and a reader that finds the folder
missing reads the ``old`` sibling instead.

Files are created with the mode the umask gives (0644 under the usual umask 022); a file that
replaces one of the same name keeps that file's mode, and the folder keeps its mode.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import shutil
import time
import uuid

_TAG = ".lora_np-"


# --------------------------------------------------------------------------- one file

def _create(path: str, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to a NEW file (fails if it exists) with the umask's mode or ``mode``, fsynced."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        _write_all(fd, data)
        if mode is not None:
            os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    """os.write may write less than asked: loop until every byte is out."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def atomic_write(path: str, data: bytes) -> None:
    """Replace the single file ``path`` by ``data`` atomically (temporary file, fsync, ``os.replace``).

    A new file gets the umask's mode; an existing file's mode is kept.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}{_TAG}tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    mode = os.stat(path).st_mode & 0o7777 if os.path.exists(path) else None
    try:
        _create(tmp, data, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)


def json_bytes(obj: dict) -> bytes:
    """A dict as indented, key-sorted UTF-8 JSON (what every config file here holds)."""
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8")


# --------------------------------------------------------------------------- a folder as a unit

def replace_folder(directory, files: dict, drop=()) -> str:
    """Make ``directory`` hold ``files`` (``{name: bytes}``) in one atomic step, keeping its other files.

    Names in ``drop`` are left out of the new folder (an older layout of the same format).
    Returns the folder's path. See the module docstring for the guarantee.
    """
    directory = os.path.abspath(os.fspath(directory))
    parent, name = os.path.split(directory)
    os.makedirs(parent, exist_ok=True)
    remove_leftovers(directory)
    tmp = os.path.join(parent, f".{name}{_TAG}new-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.mkdir(tmp)
    try:
        old_mode = os.stat(directory).st_mode & 0o7777 if os.path.isdir(directory) else None
        if old_mode is not None:
            os.chmod(tmp, old_mode)
            _link_tree(directory, tmp, skip=set(files) | set(drop))
        for fname, data in files.items():
            old = os.path.join(directory, fname)
            mode = os.stat(old).st_mode & 0o7777 if old_mode is not None and os.path.isfile(old) else None
            _create(os.path.join(tmp, fname), data, mode)
        _fsync_dir(tmp)
        if old_mode is None:
            os.rename(tmp, directory)                       # a new folder: one rename is atomic
        else:
            _swap(tmp, directory)                           # tmp now holds the old files
        _fsync_dir(parent)
    except BaseException:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if os.path.isdir(tmp):
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def _link_tree(src: str, dst: str, skip: set) -> None:
    """Hard-link every file of ``src`` (recursively) into ``dst``, except the top-level names in ``skip``."""
    for entry in os.scandir(src):
        if entry.name in skip:
            continue
        target = os.path.join(dst, entry.name)
        if entry.is_dir(follow_symlinks=False):
            shutil.copytree(entry.path, target, symlinks=True, copy_function=_link_or_copy)
        elif entry.is_symlink():
            os.symlink(os.readlink(entry.path), target)
        else:
            _link_or_copy(entry.path, target)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:                                        # a file system without hard links
        shutil.copy2(src, dst)


def _renameat2():
    """libc's renameat2, or None where the C library has none (it is Linux's)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn


_RENAMEAT2 = _renameat2()
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _swap(a: str, b: str) -> None:
    """Exchange folders ``a`` and ``b`` atomically; without an atomic exchange, two renames."""
    if _RENAMEAT2 is not None:
        if _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (22, 38, 95):                        # EINVAL, ENOSYS, EOPNOTSUPP: no exchange here
            raise OSError(err, f"cannot swap {a} and {b}: {os.strerror(err)}")
    parent, name = os.path.split(b)
    old = os.path.join(parent, f".{name}{_TAG}old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.rename(b, old)
    os.rename(a, b)
    os.rename(old, a)


def remove_leftovers(directory) -> list:
    """Delete the temporary siblings of ``directory`` left by saves whose process has ended."""
    directory = os.path.abspath(os.fspath(directory))
    parent, name = os.path.split(directory)
    removed = []
    for path in _siblings(parent, name):
        pid = _pid_of(path)
        if pid is not None and pid != os.getpid() and _alive(pid):
            continue                                       # another process is saving right now
        if "old-" in os.path.basename(path) and not os.path.isdir(directory):
            continue                                       # the only complete copy (see _swap)
        shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.unlink(path)
        removed.append(path)
    return removed


def _siblings(parent: str, name: str) -> list:
    prefix = f".{name}{_TAG}"
    try:
        return sorted(os.path.join(parent, e) for e in os.listdir(parent) if e.startswith(prefix))
    except FileNotFoundError:
        return []


def _pid_of(path: str) -> int | None:
    parts = os.path.basename(path).rsplit("-", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:                                        # some file systems cannot fsync a folder
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- reading one version

def read_folder(directory, names, optional=(), attempts: int = 50) -> dict:
    """``{name: bytes}`` of the files ``names`` (and of ``optional`` ones, if present), all from ONE
    version of the folder, even while a save replaces it.

    Raises FileNotFoundError naming the folder or the missing file when they are really absent.
    """
    directory = os.path.abspath(os.fspath(directory))
    for _ in range(attempts):
        try:
            fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except FileNotFoundError:
            old = [p for p in _siblings(*os.path.split(directory)) if "old-" in os.path.basename(p)]
            if not old:
                raise FileNotFoundError(f"adapter folder not found: {directory} does not exist") from None
            fd = os.open(old[0], os.O_RDONLY)              # between the two renames of a fallback swap
        try:
            present = set(os.listdir(fd))
            missing = [n for n in names if n not in present]
            if missing:
                raise FileNotFoundError(f"{os.path.join(directory, missing[0])} does not exist")
            return {n: _read_at(fd, n) for n in list(names) + [n for n in optional if n in present]}
        except FileNotFoundError:
            if _same_folder(fd, directory):
                raise                                      # really missing, not swapped away
        finally:
            os.close(fd)
        time.sleep(0.001)                                  # a save swapped the folder: read the new one
    raise OSError(f"{directory}: the folder kept changing while it was read ({attempts} attempts); "
                  "is something saving to it in a loop?")


def list_folder(directory, attempts: int = 50) -> set:
    """The names in ``directory``, all from ONE version of it, even while a save replaces it.

    A plain ``os.listdir`` can read the old version while the save that swapped it away deletes it,
    and so miss files; a listing is kept only if the path still names the folder that was read.
    Raises FileNotFoundError (or NotADirectoryError) when there is no such folder.
    """
    directory = os.path.abspath(os.fspath(directory))
    for _ in range(attempts):
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            present = set(os.listdir(fd))
            if _same_folder(fd, directory):
                return present
        finally:
            os.close(fd)
        time.sleep(0.001)                                  # swapped while listed: list the new one
    raise OSError(f"{directory}: the folder kept changing while it was listed ({attempts} attempts)")


def _read_at(dir_fd: int, name: str) -> bytes:
    fd = os.open(name, os.O_RDONLY, dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def _same_folder(fd: int, path: str) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
