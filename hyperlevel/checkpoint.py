"""Checkpoint files: atomic writes with a checksum record, safe loading with clear errors, the last K kept.

Writing: :func:`save_atomic` writes to a temporary file in the same folder, flushes it to disk and renames it
over the target (``os.replace`` is atomic), then records the file's size and SHA-256 beside it
(``NAME.sha256``, the format ``sha256sum -c`` reads, plus a size comment). A crash while writing leaves the previous
file intact; a temporary file left by a killed process is removed by :func:`clean_temporary_files`, which the
engine calls when it starts into its folder (holding the folder's lock, so no other writer can be active).

Reading: :func:`load` checks the record (a truncated or overwritten file is named as such instead of failing
somewhere inside the unpickler), loads with ``weights_only=True`` only (tensors and plain containers, never
code) and turns every failure into one :class:`CheckpointError` that names the file and says what is wrong.
:func:`load_with_fallback` reads ``last.pt`` and, when it is unreadable, the newest numbered checkpoint
(``step_00001000.pt``) of the same folder that loads, with a warning naming both files.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import re
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import HyperlevelError

__all__ = ["CheckpointError", "CheckpointFallbackWarning", "save_atomic", "write_text_atomic", "link_or_copy", "load",
           "load_with_fallback", "numbered_checkpoints", "prune_numbered", "remove_checkpoints",
           "clean_temporary_files", "holds_checkpoints", "checksum_path", "rng_state", "set_rng_state"]

_NUMBERED = re.compile(r"^step_(\d+)\.pt$")
_TEMPORARY = re.compile(r"^\..+\.tmp$")


class CheckpointError(HyperlevelError, ValueError):
    """A checkpoint cannot be read or does not fit; the message names the file and the reason."""


class CheckpointFallbackWarning(UserWarning):
    """``last.pt`` was unreadable and an earlier checkpoint of the same folder was loaded instead."""


def checksum_path(path: str | os.PathLike[str]) -> Path:
    """Where the size and SHA-256 record of checkpoint ``path`` lives: ``path`` + ``.sha256``."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextmanager
def _replacing(target: Path) -> Iterator[tuple[int, str]]:
    """A temporary file ``(fd, name)`` beside ``target`` that replaces it when the block ends normally
    (``os.replace`` is atomic) and is removed when the block raises: a crash never leaves ``target`` half written."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        yield fd, tmp
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary file in the same folder, fsync, rename)."""
    path = Path(path)
    with _replacing(path) as (fd, _), os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _write_record(path: Path, digest: str | None = None) -> None:
    digest = digest or _digest(path)
    write_text_atomic(checksum_path(path), f"{digest}  {path.name}\n# size {path.stat().st_size}\n")


def _read_record(path: Path) -> tuple[str, int] | None:
    try:
        lines = checksum_path(path).read_text().splitlines()
        digest = lines[0].split()[0]
        size = int(lines[1].split()[-1])
    except (OSError, IndexError, ValueError):
        return None
    return digest, size


def save_atomic(obj: Any, path: str | os.PathLike[str], *, record: bool = True) -> Path:
    """``torch.save`` to a temporary file in the same folder, flush it to disk, then rename over ``path``; then
    write the size and checksum record (``record=False``: none).

    A crash while writing leaves the previous file intact: ``os.replace`` is atomic on POSIX and Windows.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _replacing(path) as (fd, tmp):
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        digest = _digest(Path(tmp)) if record else None
    if record:
        _write_record(path, digest)
    else:
        checksum_path(path).unlink(missing_ok=True)
    return path


def link_or_copy(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Make ``target`` an atomic replacement holding the bytes of ``source`` (a hard link where the file system
    allows it, else a copy), with its own checksum record."""
    import shutil

    source, target = Path(source), Path(target)
    with _replacing(target) as (fd, tmp):
        os.close(fd)
        os.unlink(tmp)
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
    record = _read_record(source)
    _write_record(target, record[0] if record is not None else None)
    return target


def _reason(exc: BaseException) -> str:
    """What went wrong, in words, without torch's advice to load with ``weights_only=False`` (unsafe: a
    checkpoint loaded that way can run arbitrary code)."""
    if isinstance(exc, EOFError):
        return "the file ends early (empty or truncated)"
    if isinstance(exc, pickle.UnpicklingError) and "weights only" in str(exc).lower():
        return ("it holds Python objects other than tensors and plain containers, which safe loading refuses "
                "(a checkpoint must not run code when read); re-save it with tensors, numbers and strings only")
    text = str(exc)
    if isinstance(exc, RuntimeError | zipfile.BadZipFile) and ("zip archive" in text or "central directory" in text
                                                            or isinstance(exc, zipfile.BadZipFile)):
        return "not a complete PyTorch checkpoint (truncated, or not a checkpoint file)"
    if isinstance(exc, KeyError | ValueError | pickle.UnpicklingError | UnicodeDecodeError):
        return f"not a PyTorch checkpoint ({type(exc).__name__} while reading it)"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if "weights_only" in first:
        first = "it cannot be loaded safely"
    return f"{type(exc).__name__}: {first[:200]}" if first else type(exc).__name__


def load(path: str | os.PathLike[str], map_location: str | torch.device | None = "cpu") -> Any:
    """Load a checkpoint safely (``weights_only=True``: tensors and plain containers only, no code).

    Raises :class:`CheckpointError` (a ``ValueError``) naming the file for a missing, empty, truncated,
    corrupt or unsafe file; a file whose size or checksum differs from its record is reported as such.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"cannot load checkpoint {path}: the file is empty")
    record = _read_record(path)
    if record is not None:
        digest, expected = record
        if size != expected:
            raise CheckpointError(f"cannot load checkpoint {path}: it is {size} bytes, its record "
                                  f"{checksum_path(path).name} says {expected} (truncated or overwritten)")
        if _digest(path) != digest:
            raise CheckpointError(f"cannot load checkpoint {path}: its SHA-256 differs from the record "
                                  f"{checksum_path(path).name} (the file is corrupt)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types; all become one error naming the file
        raise CheckpointError(f"cannot load checkpoint {path}: {_reason(exc)}") from None


def numbered_checkpoints(folder: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """``(step, path)`` of the numbered checkpoints ``step_00001000.pt`` in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NUMBERED.match(p.name))]
    return sorted(found)


def load_with_fallback(path: str | os.PathLike[str], map_location: str | torch.device | None = "cpu",
                       ) -> tuple[Any, Path]:
    """Load ``path``; if it is a folder's ``last.pt`` and cannot be loaded (missing, truncated, corrupt), load
    the newest numbered checkpoint of that folder that can, warning with both names. Returns ``(state, file)``.

    Raises :class:`CheckpointError` naming every file tried when none loads.
    """
    path = Path(path)
    try:
        return load(path, map_location), path
    except CheckpointError as err:
        if path.name != "last.pt":
            raise
        first = err
    tried = [path.name]
    for step, candidate in reversed(numbered_checkpoints(path.parent)):
        try:
            state = load(candidate, map_location)
        except CheckpointError:
            tried.append(candidate.name)
            continue
        warnings.warn(f"{first}; resuming from the newest loadable checkpoint {candidate} (step {step}) instead",
                      CheckpointFallbackWarning, stacklevel=2)
        return state, candidate
    if len(tried) == 1:
        raise first
    raise CheckpointError(f"{first}; no earlier checkpoint in {path.parent} loads either "
                          f"(tried {', '.join(tried[1:])})")


def holds_checkpoints(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds a run's checkpoint (``last.pt`` or a numbered one)."""
    folder = Path(folder)
    return (folder / "last.pt").exists() or bool(numbered_checkpoints(folder))


def remove_checkpoints(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete ``last.pt``, the numbered checkpoints and their records in ``folder`` (starting a run over)."""
    folder = Path(folder)
    files = [folder / "last.pt"] + [p for _, p in numbered_checkpoints(folder)]
    removed = []
    for f in files:
        for p in (f, checksum_path(f)):
            if p.exists():
                p.unlink()
                removed.append(p)
    return removed


def prune_numbered(folder: str | os.PathLike[str], keep: int, current_step: int) -> list[Path]:
    """Keep the ``keep`` newest numbered checkpoints at or before ``current_step``; delete older ones, and later
    ones (left by a run that was resumed from an earlier point: that future was abandoned)."""
    numbered = numbered_checkpoints(folder)
    past = [p for s, p in numbered if s <= current_step]
    doomed = past[: max(len(past) - keep, 0)] + [p for s, p in numbered if s > current_step]
    for p in doomed:
        p.unlink(missing_ok=True)
        checksum_path(p).unlink(missing_ok=True)
    return doomed


def clean_temporary_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files (``.NAME.XXXX.tmp``) a killed writer left in ``folder``.

    Call it only while no other process writes there (the engine holds the folder's :class:`~hyperlevel.runfolder.RunLock`).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if _TEMPORARY.match(p.name) and p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def rng_state() -> dict[str, Any]:
    """Every random generator a training step may draw from, in a form ``weights_only`` loading accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "state": list(py_state), "gauss": gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
