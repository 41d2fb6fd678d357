"""What went wrong with the store, in words an operator acts on (disk full, read-only, I/O error)."""

from __future__ import annotations

import errno
import sqlite3

# SQLite primary result codes (the low byte of an extended code).
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_READONLY = 8
_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_NOTADB = 26

#: What to do about a corrupt database; every message about one ends with it.
RESTORE_ADVICE = ("restore the data directory from a backup made with `durably backup` "
                  "(serve the backup with --data-dir, or move it into place; see 'Data directory, backups and "
                  "faults' in the README)")

_ERRNO_CAUSES = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk full", errno.EROFS: "read-only",
                 errno.EACCES: "read-only", errno.EPERM: "read-only", errno.EIO: "I/O error"}


class StoreError(RuntimeError):
    """The store could not commit. `cause` is short ("disk full"); `retryable` if it may pass by itself."""

    def __init__(self, cause: str, detail: str, retryable: bool) -> None:
        super().__init__(f"{cause}: {detail}" if detail and detail != cause else cause)
        self.cause = cause
        self.detail = detail
        self.retryable = retryable


class StoreCorrupt(StoreError):
    """SQLite found the database file damaged (SQLITE_CORRUPT, SQLITE_NOTADB): never retried, never ignored."""

    def __init__(self, finding: str) -> None:
        super().__init__("database corrupt", f"{finding}; stop the server and {RESTORE_ADVICE}", False)
        self.finding = finding


def is_corruption(exc: BaseException) -> bool:
    """Whether a SQLite error says the database file is damaged."""
    if isinstance(exc, StoreCorrupt):
        return True
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(exc)
    return "malformed" in text or "not a database" in text


def classify(exc: BaseException) -> StoreError:
    """Name the cause of a failed commit; faults of the disk are retryable, anything else is not."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None
        text = str(exc)
        if primary == _SQLITE_FULL or "disk is full" in text:
            return StoreError("disk full", text, True)
        if primary == _SQLITE_READONLY or "readonly" in text:
            return StoreError("read-only", text, True)
        if primary in (_SQLITE_IOERR, _SQLITE_CANTOPEN) or "disk I/O error" in text:
            return StoreError("I/O error", text, True)
        if primary in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return StoreError("database locked", text, True)
        if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or is_corruption(exc):
            return StoreCorrupt(text)
        return StoreError("store error", text, False)
    if isinstance(exc, OSError) and exc.errno in _ERRNO_CAUSES:
        return StoreError(_ERRNO_CAUSES[exc.errno], exc.strerror or str(exc), True)
    return StoreError("store error", repr(exc), False)
