"""Where and when the engine writes its checkpoints: the run folder, ``last.pt`` and the numbered ones.

The file mechanics (atomic writes, checksums, safe loading, fallback) are :mod:`hyperlevel.checkpoint`'s, the
folder's lock and the new-run rule :mod:`hyperlevel.runfolder`'s; this module applies them to one run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from .. import checkpoint as ckpt
from ..errors import InvalidProblemError
from ..runfolder import RunFolderInUseError, RunLock

__all__ = ["RunCheckpoints"]


class RunCheckpoints:
    """A run's checkpoint policy (see :class:`~hyperlevel.Engine` for the meaning of each argument).

    Only the main process writes (``writer=False`` elsewhere: every method is then a no-op returning ``None``).
    """

    def __init__(self, folder: str | Path | None, *, every: int = 0, keep: int = 2,
                 extra: Callable[[], Mapping[str, Any]] | None = None, overwrite: bool = False,
                 lock: bool = True, writer: bool = True):
        if every and folder is None:
            raise InvalidProblemError("checkpoint_every needs a checkpoint_dir")
        for what, value in (("checkpoint_every", every), ("keep_checkpoints", keep)):
            if not isinstance(value, int) or value < 0:
                raise InvalidProblemError(f"{what} must be an integer >= 0, got {value!r}")
        self.folder = Path(folder) if folder is not None else None
        self.every, self.keep, self.extra = int(every), int(keep), extra
        self.overwrite, self.lock, self.writer = overwrite, lock, writer

    def claim(self, new_run: bool) -> AbstractContextManager[Any]:
        """Lock the folder for the run (a context manager releasing it), refuse or clear an earlier run's
        checkpoints when ``new_run`` (see ``overwrite``), and remove temporary files a killed writer left."""
        if not (self.writer and self.folder is not None and self.lock):
            return nullcontext()
        lock = RunLock(self.folder).acquire()
        try:
            if new_run and ckpt.holds_checkpoints(self.folder):
                if not self.overwrite:
                    raise RunFolderInUseError(
                        f"{self.folder} holds the checkpoints of an earlier run; resume it "
                        f"(resume={str(self.folder / 'last.pt')!r}) or start over with overwrite=True")
                ckpt.remove_checkpoints(self.folder)
            ckpt.clean_temporary_files(self.folder)
        except BaseException:
            lock.release()
            raise
        return lock

    def due(self, step: int) -> bool:
        """Whether a periodic checkpoint falls on global step ``step``."""
        return bool(self.every) and step % self.every == 0

    @property
    def last(self) -> Path | None:
        """``FOLDER/last.pt`` (``None`` without a folder or off the main process)."""
        return self.folder / "last.pt" if self.writer and self.folder is not None else None

    def write(self, state: Callable[[], dict[str, Any]], step: int, path: str | Path | None = None) -> Path | None:
        """Write ``state()`` (plus ``extra()``) to ``path``, by default ``last.pt``: kept as
        ``step_{step:08d}.pt`` with ``last.pt`` linked to it when ``keep`` > 0, older numbered ones pruned."""
        if not self.writer or (path is None and self.folder is None):
            return None
        path = Path(path) if path is not None else self.last
        assert path is not None
        content = state()
        if self.extra is not None:
            content["extra"] = dict(self.extra())
        if self.keep and self.folder is not None and path == self.folder / "last.pt":
            numbered = ckpt.save_atomic(content, self.folder / f"step_{step:08d}.pt")
            path = ckpt.link_or_copy(numbered, path)
            ckpt.prune_numbered(self.folder, self.keep, step)
            return path
        return ckpt.save_atomic(content, path)

    @staticmethod
    def read(resume: str | Path) -> tuple[dict[str, Any], Path]:
        """The state saved at ``resume`` and the file it came from (an unreadable ``last.pt`` falls back on the
        newest numbered checkpoint that loads, with a warning)."""
        return ckpt.load_with_fallback(resume)
