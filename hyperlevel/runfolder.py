"""One run per folder: an exclusive lock on a run (checkpoint) folder, and the rule for starting into one.

Two trainings writing into the same folder corrupt each other silently: ``last.pt`` ends up holding the other
run's weights and logs interleave. :class:`RunLock` makes the second one refuse at once instead.

How the lock works: ``FOLDER/.hyperlevel.lock`` is locked with ``fcntl.flock`` (POSIX). The kernel drops that
lock when its process ends in any way, SIGKILL and power loss included, so a lock is never left behind by a
dead process. The file also records who holds it (process id, host, start time, command line) for the error
message. Where ``flock`` is not available (Windows, some network file systems), the record alone decides: a
lock whose process no longer runs on this host is stale and taken over; a lock held from another host is
respected (we cannot see its processes) and the message says which file to delete if that run is gone.

Within one process the lock is re-entrant (a library and the program around it may both claim the folder).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .errors import HyperlevelError

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "RunFolderError", "RunFolderLockedError", "RunFolderInUseError", "RunLock"]

LOCK_NAME = ".hyperlevel.lock"
log = logging.getLogger("hyperlevel")


class RunFolderError(HyperlevelError):
    """A run folder cannot be used as asked; the message names the folder and the way out."""


class RunFolderLockedError(RunFolderError):
    """Another live process holds the folder's lock."""


class RunFolderInUseError(RunFolderError):
    """A new run was started into a folder that holds an earlier run (resume it, or overwrite it explicitly)."""


_held: dict[str, tuple[int | None, int]] = {}  # resolved lock path -> (file descriptor, re-entry count)
_held_guard = threading.Lock()


def _process_start(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (Linux), to tell a reused process id from the
    holder; ``None`` where ``/proc`` does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:  # pragma: no cover - platforms without signals
        return True
    return True


def _describe(record: dict[str, Any] | None) -> str:
    if not record:
        return "an unknown process"
    since = record.get("started_at")
    when = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, int | float) else ""
    return f"process {record.get('pid')} on host {record.get('host')!r}{when}"


class RunLock:
    """Exclusive ownership of a run folder for the lifetime of one run.

    Use as a context manager, or :meth:`acquire` / :meth:`release`. Raises :class:`RunFolderLockedError` at
    once (no waiting) when another live process holds it.
    """

    def __init__(self, folder: str | os.PathLike[str]):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.stale_record: dict[str, Any] | None = None  # set when a dead holder's record was taken over
        self._key: str | None = None

    # ------------------------------------------------------------------ public
    def acquire(self) -> RunLock:
        if self._key is not None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        key = str(self.path.resolve())
        with _held_guard:
            if key in _held:
                fd, count = _held[key]
                _held[key] = (fd, count + 1)
                self._key = key
                return self
            fd = self._lock_with_flock() if fcntl is not None else None
            if fd is None:
                self._lock_with_record()
            self._write_record(fd)
            _held[key] = (fd, 1)
            self._key = key
        if self.stale_record is not None:
            log.warning("%s: took over the lock of %s, which no longer runs", self.folder,
                        _describe(self.stale_record))
        return self

    def release(self) -> None:
        key, self._key = self._key, None
        if key is None:
            return
        with _held_guard:
            fd, count = _held.pop(key)
            if count > 1:
                _held[key] = (fd, count - 1)
                return
            try:
                # unlink while still holding the lock: a process that opened the old file then finds that its
                # inode is no longer the folder's lock file and retries (see _lock_with_flock)
                self.path.unlink(missing_ok=True)
            finally:
                if fd is not None:
                    os.close(fd)

    def holder(self) -> dict[str, Any] | None:
        """The record of the process holding (or last holding) the lock, if readable."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    # ------------------------------------------------------------------ internals
    def _refuse(self, record: dict[str, Any] | None, remote: bool = False) -> RunFolderLockedError:
        hint = (f"if that run is gone, delete {self.path}" if remote
                else "wait for it to finish or stop it, or use another output folder")
        return RunFolderLockedError(f"{self.folder} is in use by another run ({_describe(record)}); {hint}")

    def _lock_with_flock(self) -> int | None:
        for _ in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._refuse(self.holder()) from None
            except OSError:  # the file system does not support flock: fall back on the record
                os.close(fd)
                return None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                record = self.holder()
                if record and record.get("pid") is not None:
                    self.stale_record = record  # the holder died without releasing (the kernel freed flock)
                return fd
            os.close(fd)  # the holder released (and unlinked) the file between our open and flock: retry
        raise RunFolderLockedError(f"{self.folder}: could not lock {self.path} (it keeps changing)")

    def _lock_with_record(self) -> None:
        """Without flock: create the file exclusively; take over a record whose process is gone."""
        for _ in range(20):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                record = self.holder()
                if record is None:
                    time.sleep(0.05)  # being written right now; look again
                    record = self.holder()
                if record is None or record.get("host") != socket.gethostname():
                    raise self._refuse(record, remote=record is not None) from None
                pid = int(record.get("pid", -1))
                start = record.get("process_start")
                if _alive(pid) and (start is None or _process_start(pid) in (None, start)):
                    raise self._refuse(record) from None
                self.stale_record = record
                self.path.unlink(missing_ok=True)
                continue
            os.close(fd)
            return
        raise RunFolderLockedError(f"{self.folder}: could not create {self.path}")

    def _write_record(self, fd: int | None) -> None:
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": int(time.time()),
                  "process_start": _process_start(os.getpid()), "command": " ".join(sys.argv)}
        data = (json.dumps(record) + "\n").encode()
        if fd is not None:
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
        else:
            self.path.write_bytes(data)
