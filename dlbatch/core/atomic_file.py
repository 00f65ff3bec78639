"""Atomic file writing: a file is written completely or not at all, even when the process is
killed or the disk fills up in the middle.

The bytes go to a temporary file in the target's folder, `.<name>.<host>.<pid>.<random>.tmp`,
which is fsynced, renamed over the target (os.replace) and the folder fsynced, so after a
crash the target holds the complete old or the complete new content. A killed writer leaves
its temporary file behind; the next write of the same target removes it, but only when it is
certainly abandoned: its process (on this host) no longer exists, or it has not been touched
for STALE_AFTER_S seconds. A concurrent writer's file is never removed.
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import socket
import time
from typing import Callable

from .errors import DLModelFileError

STALE_AFTER_S = 30 * 60  # a temporary file untouched this long is abandoned whatever its pid
_CHUNK = 8 << 20
_TEMP = re.compile(r"^\.(?P<target>.+)\.(?P<host>[0-9a-f]{8})\.(?P<pid>\d+)\.[0-9a-f]+\.tmp$")
_LEGACY_TEMP = re.compile(r"^\.(?P<target>.+)\.[A-Za-z0-9_]{8}\.tmp$")  # tempfile.mkstemp names of older dlbatch


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def temp_name(target_name: str) -> str:
    """A fresh temporary file name for writing `target_name` from this process."""
    return f".{target_name}.{_host_tag()}.{os.getpid()}.{secrets.token_hex(6)}.tmp"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid() or os.name != "posix":
        return True  # another thread may be writing it; on Windows os.kill would end the process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else
    return True


def _abandoned(folder: str, name: str, now: float) -> bool | None:
    """True for an abandoned temporary file, False for one a writer may still be using, None
    for a name that is no dlbatch temporary file."""
    try:
        age = now - os.stat(os.path.join(folder, name), follow_symlinks=False).st_mtime
    except OSError:
        return False
    if age > STALE_AFTER_S:
        return True
    m = _TEMP.match(name)
    if m is None:
        return False
    return m["host"] == _host_tag() and not _pid_alive(int(m["pid"]))


def temp_target(name: str) -> str | None:
    """The target a dlbatch temporary file name belongs to, or None for any other name."""
    m = _TEMP.match(name) or _LEGACY_TEMP.match(name)
    return m["target"] if m else None


def clear_stale_temps(folder, belongs: Callable[[str], bool] | str) -> list[str]:
    """Remove the abandoned temporary files in `folder` of targets named `belongs` (a name, or
    a test on the target's name); the names removed."""
    folder = os.fspath(folder)
    wanted = (lambda n: n == belongs) if isinstance(belongs, str) else belongs
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    now, removed = time.time(), []
    for name in names:
        target = temp_target(name)
        if target is None or not wanted(target) or not _abandoned(folder, name, now):
            continue
        try:
            os.unlink(os.path.join(folder, name))
            removed.append(name)
        except OSError:
            pass  # gone already (another writer cleared it) or not ours to remove
    return removed


def _fsync_dir(folder: str) -> None:
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a folder; the rename itself is done
    finally:
        os.close(fd)


def _write_all(fd: int, data) -> None:
    view = memoryview(data)
    while view:
        done = os.write(fd, view[:_CHUNK])
        view = view[done:]


def _failure(path: str, existed: bool, exc: OSError) -> DLModelFileError:
    kept = f"the existing {path} was left unchanged" if existed else "no file was written"
    hint = ("the disk is full: free some space and write again" if exc.errno in (errno.ENOSPC, errno.EDQUOT)
            else "check the folder's permissions and free space, then write again")
    return DLModelFileError(f"cannot write {path}: {exc.strerror or exc}; {kept}; {hint}")


def atomic_write(path: str | os.PathLike, make_bytes: Callable[[], bytes]) -> None:
    """Write `make_bytes()` to `path` through a temporary file in the same folder (fsync,
    os.replace, fsync of the folder): a failure or a kill at any point leaves an existing file
    untouched. An OSError (a full disk, say) becomes a DLModelFileError naming the file."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise DLModelFileError(f"cannot write {path}: the folder {folder} does not exist")
    data = make_bytes()  # before any file exists, so a failure here leaves nothing behind
    name = os.path.basename(path)
    clear_stale_temps(folder, name)
    existed = os.path.exists(path)
    tmp = os.path.join(folder, temp_name(name))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as exc:
        raise _failure(path, existed, exc) from exc
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, DLModelFileError):
            raise _failure(path, existed, exc) from exc
        raise
    _fsync_dir(folder)
