"""What a step does on non-finite values (``Engine(on_nonfinite=...)``): stop with an error that names the
step and phase, or skip the update and count it."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Literal

from ..errors import InvalidProblemError, NonFiniteError, SkippedStepsWarning, SolverDivergedError

if TYPE_CHECKING:
    from ..schedule import Phase
    from .records import StepRecord

__all__ = ["NonFinitePolicy"]


class NonFinitePolicy:
    """``"raise"``: a :class:`~hyperlevel.NonFiniteError` or :class:`~hyperlevel.SolverDivergedError` of a step
    is raised again with the step and phase in its message; ``"skip"``: the step is marked skipped and counted.
    Any other error gets a note naming step, phase and levels (Python >= 3.11) and keeps its type."""

    def __init__(self, on_nonfinite: Literal["raise", "skip"] = "raise"):
        if on_nonfinite not in ("raise", "skip"):
            raise InvalidProblemError(f"on_nonfinite must be 'raise' or 'skip', got {on_nonfinite!r}")
        self.on_nonfinite = on_nonfinite
        self.skipped = 0
        self.first_skip: str | None = None

    @contextmanager
    def guard(self, step: int, phase: Phase, record: StepRecord) -> Iterator[None]:
        """Run step number ``step`` (1-based) of ``phase`` inside this block."""
        where = f"step {step} (phase {phase.name!r})"
        try:
            yield
        except (NonFiniteError, SolverDivergedError) as err:
            if self.on_nonfinite == "raise":
                raise type(err)(f"{where}: {err}") from err
            self.skipped += 1
            record.skipped = True
            if self.first_skip is None:
                self.first_skip = f"{where}: {err}"
        except Exception as err:
            note = getattr(err, "add_note", None)
            if note is not None:
                note(f"(hyperlevel engine: step {step}, phase {phase.name!r}, levels outer={list(phase.outer)} "
                     f"inner={list(phase.inner)})")
            raise

    def warn_if_skipped(self, steps: int) -> None:
        """At the end of a run: warn with a count and the first skipped step when any were skipped."""
        if self.skipped:
            warnings.warn(
                f"{self.skipped} of {steps} steps were skipped because of non-finite values "
                f"(on_nonfinite='skip'); the first: {self.first_skip or 'before this resume'}. A run that skips "
                "many steps trains on few: lower the learning rates or the solver's step (inner_lr, alpha)",
                SkippedStepsWarning, stacklevel=3,  # the caller of Engine.run
            )
