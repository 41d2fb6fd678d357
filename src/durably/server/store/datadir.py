"""Owning a data directory: one server at a time (an OS lock), and never a silently re-created store.

Two files sit next to `durably.sqlite3`:

- `durably.lock` is locked with `flock` for as long as a store is open, so a second server on the same
  directory is refused (the kernel drops the lock when its holder dies, SIGKILL included). While held it
  holds the owner's pid; a clean close empties it, so a pid found in an unlocked file means the last
  owner did not stop cleanly.
- `durably.id` names the database (a random id that is also stored inside it). Once it exists the
  directory has held data: a missing, empty or foreign database file is refused instead of being
  replaced by an empty one, which would lose every invocation without a word.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from pathlib import Path

LOCK_FILE = "durably.lock"
ID_FILE = "durably.id"


class DataDirError(RuntimeError):
    """The data directory cannot be used; the message is one line that says why and what to do."""


class DataDirInUse(DataDirError):
    """Another process holds the data directory's lock."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        who = f"pid {pid}" if pid else "another process"
        super().__init__(f"--data-dir {data_dir} is in use by another durably server ({who}); stop it first "
                         "or pick another --data-dir")
        self.pid = pid


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


class DataDirLock:
    """An exclusive `flock` on `<data_dir>/durably.lock`, held until `release` or the process ends."""

    def __init__(self, data_dir: Path, fd: int, previous_pid: int | None) -> None:
        self.data_dir = data_dir
        self._fd: int | None = fd
        #: The pid of an earlier owner that did not stop cleanly (killed, crashed), else None.
        self.unclean_pid = previous_pid

    @classmethod
    def acquire(cls, data_dir: Path) -> DataDirLock:
        """Lock the directory or raise DataDirInUse naming the holder (DataDirError if unusable)."""
        path = data_dir / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise DataDirError(f"--data-dir {data_dir} cannot be used: {e.strerror} ({path})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise DataDirInUse(data_dir, pid) from None
        except OSError as e:
            os.close(fd)
            raise DataDirError(f"--data-dir {data_dir} cannot be locked: {e.strerror} ({path})") from None
        previous = _read_pid(fd)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as e:
            os.close(fd)
            raise DataDirError(f"--data-dir {data_dir} is not writable: {e.strerror} ({path})") from None
        return cls(data_dir, fd, previous)

    def mark_clean(self) -> None:
        """Say the store is closing cleanly (before its last connection goes and SQLite removes the WAL)."""
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
            except OSError:
                pass  # a read-only or full disk: the next start then checks a little more, nothing worse

    def release(self, clean: bool = True) -> None:
        """Unlock. `clean` (the store was closed properly) empties the file so the next owner knows; else
        the file keeps naming the last owner that did not stop cleanly (a refused start changes nothing)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
            if not clean and self.unclean_pid:
                os.pwrite(fd, f"{self.unclean_pid}\n".encode(), 0)
        except OSError:
            pass  # a read-only or full disk: the next start then checks a little more, nothing worse
        finally:
            os.close(fd)  # closing the only descriptor drops the flock


def read_database_id(data_dir: Path) -> str | None:
    """The id recorded in `durably.id`, or None if the directory never held a database."""
    path = data_dir / ID_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise DataDirError(f"--data-dir {data_dir}: cannot read {path}: {e.strerror}") from None
    try:
        value = json.loads(text)["database_id"]
        if not isinstance(value, str) or not value:
            raise ValueError(value)
        return value
    except (ValueError, KeyError, TypeError):
        raise DataDirError(f"--data-dir {data_dir}: {path} is damaged; it should hold the id of the database "
                           "(restore it from a backup, or remove it if this directory's database is right)") from None


def write_database_id(data_dir: Path, database_id: str) -> None:
    """Record the database's id next to it (atomically: a half-written marker would lock the user out)."""
    path = data_dir / ID_FILE
    tmp = path.with_suffix(".id.tmp")
    body = json.dumps({"database_id": database_id,
                       "note": "durably.sqlite3 in this directory must hold the same id; see `durably backup`"})
    with open(tmp, "w") as f:
        f.write(body + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(data_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def new_database_id() -> str:
    """A fresh random database id."""
    return uuid.uuid4().hex


def missing_message(data_dir: Path) -> str:
    """The refusal for a directory whose database vanished or was emptied."""
    return (f"--data-dir {data_dir} held a database that is now missing; refusing to start on an empty one "
            f"(restore it from a backup; to start afresh on purpose, remove {data_dir / ID_FILE})")
