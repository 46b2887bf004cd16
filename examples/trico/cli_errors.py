"""Errors of the TriCo command line: one line naming the file or key and the fix, and a documented exit status.

Every command runs inside :func:`handle_errors`, which turns the exceptions a user can cause (a bad config, a
missing or corrupt data file or checkpoint, a busy run folder, an unusable output path) into one line on
stderr and the exit status below. ``--debug`` shows the traceback instead. Anything else is a bug: it is
reported in one line too, with a pointer to ``--debug``.

| status | meaning |
|---|---|
| 0 | success |
| 1 | the command ran but failed (non-finite loss, some inputs of ``enhance`` failed, an unexpected error) |
| 2 | usage or configuration error (unknown key, bad value, conflicting options such as ``--scale``) |
| 3 | data error (missing, empty or malformed data folder, unpaired, unreadable or too small image) |
| 4 | checkpoint error (missing, empty, truncated, corrupt, unsafe or of another model) |
| 5 | run folder in use (another run holds its lock, or it holds a run: ``--resume`` or ``--overwrite``) |
| 6 | output path unusable (cannot be created, is a file where a folder is needed, not writable) |
| 130 | stopped by SIGINT (Ctrl-C) after writing a checkpoint (``train``) |
| 143 | stopped by SIGTERM after writing a checkpoint (``train``) |
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from examples.restoration.data.common import DataError  # noqa: F401 - re-exported: every command's data error
from hyperlevel import HyperlevelError
from hyperlevel.checkpoint import CheckpointError
from hyperlevel.runfolder import RunFolderError

__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_DATA", "EXIT_CHECKPOINT", "EXIT_RUN_FOLDER", "EXIT_OUTPUT",
           "UsageError", "DataError", "OutputPathError", "handle_errors", "check_output_file",
           "check_output_dir", "one_line_warnings"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DATA, EXIT_CHECKPOINT, EXIT_RUN_FOLDER, EXIT_OUTPUT = 0, 1, 2, 3, 4, 5, 6


class UsageError(ValueError):
    """Options that contradict each other or the checkpoint (exit status 2)."""


class OutputPathError(OSError):
    """An output path cannot be written; raised before any computing starts (exit status 6)."""


def _classify(exc: BaseException) -> tuple[int, str]:
    from examples.restoration.imageio import ImageReadError

    from .config import ConfigError

    if isinstance(exc, ConfigError | UsageError):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, CheckpointError):
        return EXIT_CHECKPOINT, str(exc)
    if isinstance(exc, RunFolderError):
        return EXIT_RUN_FOLDER, str(exc)
    if isinstance(exc, OutputPathError):
        return EXIT_OUTPUT, str(exc)
    if isinstance(exc, DataError | ImageReadError):
        return EXIT_DATA, str(exc)
    if isinstance(exc, HyperlevelError):
        return EXIT_FAILED, str(exc)
    if isinstance(exc, MemoryError):
        return EXIT_FAILED, "out of memory; use smaller batches, crops or tiles (--tile), or another --device"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return EXIT_FAILED, (f"unexpected {type(exc).__name__}: {text} (a bug? rerun with --debug for the "
                         "traceback and report it)")


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def one_line_warnings() -> None:
    """Print warnings as ``warning: MESSAGE`` lines (no source line), once per message."""

    def show(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:
        print(f"warning: {_one_line(str(message))}", file=file or sys.stderr)

    warnings.showwarning = show  # type: ignore[assignment]


def handle_errors(func: Callable[[], int], debug: bool = False) -> int:
    """Run ``func`` and return its exit status; a raised error becomes one line on stderr and its status."""
    if debug:
        return int(func() or 0)
    try:
        return int(func() or 0)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - the point of this module
        code, message = _classify(exc)
        print(f"error: {_one_line(message)}", file=sys.stderr)
        return code
    finally:
        sys.stderr.flush()


def check_output_file(path: str | Path, what: str = "--output") -> Path:
    """Check, before any computing, that ``path`` can be written as a file (its folder exists or can be
    created, is writable, and ``path`` is not a folder). Creates the folder; does not touch ``path``."""
    import os
    import tempfile

    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{what} {path} is a folder; give a file name, e.g. {path / 'report.json'}")
    parent = path.parent if str(path.parent) else Path(".")
    _make_dir(parent, what)
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{path.name}.", suffix=".check"):
            pass
    except OSError as err:
        raise OutputPathError(f"{what} {path}: cannot write in {parent} ({err.strerror or err}); "
                              "choose a writable location") from None
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"{what} {path} exists and is not writable; choose another file")
    return path


def check_output_dir(path: str | Path, what: str = "--output") -> Path:
    """Create the output folder ``path`` (with parents) and check that files can be written in it."""
    import tempfile

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{what} {path} is a file, not a folder; give a folder (it is created if needed)")
    _make_dir(path, what)
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check.", suffix=".tmp"):
            pass
    except OSError as err:
        raise OutputPathError(f"{what} {path} is not writable ({err.strerror or err}); "
                              "choose another folder") from None
    return path


def _make_dir(path: Path, what: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        blocker = next((p for p in [path, *path.parents] if p.exists() and not p.is_dir()), path)
        raise OutputPathError(f"{what}: cannot create folder {path}: {blocker} is a file; choose another "
                              "path") from None
    except NotADirectoryError:
        blocker = next((p for p in [path, *path.parents] if p.exists() and not p.is_dir()), path)
        raise OutputPathError(f"{what}: cannot create folder {path}: {blocker} is a file; choose another "
                              "path") from None
    except OSError as err:
        raise OutputPathError(f"{what}: cannot create folder {path} ({err.strerror or err}); choose a writable "
                              "location") from None
