"""Engine callbacks: progress bar, CSV and TensorBoard scalars, console logging."""

from __future__ import annotations

import csv
import logging
import math
import sys
from pathlib import Path
from typing import Any

from .engine import Callback, Engine, RunSummary, StepRecord
from .schedule import Phase

log = logging.getLogger("hyperlevel")


class ProgressBar(Callback):
    """A tqdm bar over all phases' maximal steps when the output is a terminal; plain lines otherwise.

    A bar redraws itself with carriage returns, which is right on a terminal and wrong in a redirected log (every
    redraw becomes bytes in the file). So the bar is used only when tqdm is installed and ``file`` is a terminal;
    otherwise one line (step, phase, losses, loss weights) is printed every ``print_every`` steps.

    Args:
        print_every: steps between lines in non-interactive mode (>= 1).
        leave: keep the bar after the run.
        file: where to write (default ``sys.stderr``).
        interactive: force the bar (``True``) or the lines (``False``); default: whether ``file`` is a terminal.
        **tqdm_kwargs: passed to tqdm.
    """

    def __init__(self, print_every: int = 50, leave: bool = True, file: Any = None,
                 interactive: bool | None = None, **tqdm_kwargs: Any):
        if not isinstance(print_every, int) or print_every < 1:
            raise ValueError(f"print_every must be an integer >= 1, got {print_every!r}")
        self.print_every = print_every
        self.leave = leave
        self.file = file
        self.interactive = interactive
        self.tqdm_kwargs = tqdm_kwargs
        self._bar: Any = None

    def _stream(self) -> Any:
        return self.file if self.file is not None else sys.stderr

    def _print(self, text: str) -> None:
        print(text, file=self._stream(), flush=True)

    def on_run_start(self, engine: Engine) -> None:
        total = sum(p.max_steps for p in engine.schedule.phases)
        interactive = self.interactive
        if interactive is None:
            isatty = getattr(self._stream(), "isatty", None)
            interactive = bool(isatty is not None and isatty())
        self._bar = None
        if not interactive:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - exercised only without tqdm
            return
        self._bar = tqdm(total=total, initial=engine.global_step, leave=self.leave, dynamic_ncols=True,
                         file=self._stream(), **self.tqdm_kwargs)

    def on_phase_start(self, engine: Engine, phase: Phase) -> None:
        if self._bar is not None:
            self._bar.set_description(phase.name)
        else:
            self._print(f"phase {phase.name} starts at step {engine.global_step}")

    def on_step_end(self, engine: Engine, record: StepRecord) -> None:
        info = {"outer": record.outer_loss, "inner": record.inner_loss}
        for ws in record.weights.values():
            info.update(ws)
        shown = {k: f"{v:.4g}" for k, v in info.items() if not math.isnan(v)}
        if self._bar is not None:
            self._bar.set_description(record.phase)
            self._bar.set_postfix(shown, refresh=False)
            self._bar.update(1)
        elif record.step % self.print_every == 0:
            text = " ".join(f"{k}={v}" for k, v in shown.items())
            self._print(f"step {record.step} [{record.phase}] {text}{' (skipped)' if record.skipped else ''}")

    def on_phase_end(self, engine: Engine, phase: Phase) -> None:
        if self._bar is not None:  # a phase that converged early skips the rest of its budget
            remaining = sum(p.max_steps for p in engine.schedule.phases[: engine.phase_index + 1])
            self._bar.total = self._bar.total - (remaining - engine.global_step)
            self._bar.refresh()

    def on_run_end(self, engine: Engine, summary: RunSummary) -> None:
        if self._bar is not None:
            self._bar.close()


class CSVLogger(Callback):
    """Scalars in tidy (long) form: ``step,phase,name,value`` per row, one file for the whole run.

    Long form keeps one file valid when later phases log other scalars. On resume, rows past the checkpoint's
    step are dropped so the file matches an uninterrupted run.
    """

    def __init__(self, path: str | Path, every: int = 1):
        self.path = Path(path)
        self.every = every
        self._file: Any = None
        self._writer: Any = None

    def on_run_start(self, engine: Engine) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows: list[list[str]] = []
        if engine.global_step > 0 and self.path.exists():
            with self.path.open(newline="") as f:
                reader = csv.reader(f)
                next(reader, None)
                rows = [r for r in reader if r and int(r[0]) <= engine.global_step]
        self._file = self.path.open("w", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(["step", "phase", "name", "value"])
        self._writer.writerows(rows)

    def on_step_end(self, engine: Engine, record: StepRecord) -> None:
        if record.step % self.every:
            return
        for name, value in record.scalars().items():
            self._writer.writerow([record.step, record.phase, name, f"{value:.9g}"])

    def on_checkpoint(self, engine: Engine, path: Path) -> None:
        if self._file is not None:
            self._file.flush()

    def on_run_end(self, engine: Engine, summary: RunSummary) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class TensorBoardLogger(Callback):
    """Scalars and phase changes to TensorBoard (needs the ``tensorboard`` package)."""

    def __init__(self, log_dir: str | Path, every: int = 1):
        self.log_dir = Path(log_dir)
        self.every = every
        self._writer: Any = None

    def on_run_start(self, engine: Engine) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ImportError(
                "TensorBoardLogger needs the tensorboard package: pip install tensorboard"
            ) from err
        # purge_step drops events written after the checkpoint we resume from
        self._writer = SummaryWriter(str(self.log_dir), purge_step=engine.global_step + 1 or None)

    def on_phase_start(self, engine: Engine, phase: Phase) -> None:
        self._writer.add_text("phase", f"{phase.name} starts (solver {phase.solver!r})", engine.global_step)

    def on_step_end(self, engine: Engine, record: StepRecord) -> None:
        if record.step % self.every:
            return
        for name, value in record.scalars().items():
            self._writer.add_scalar(name, value, record.step)

    def on_checkpoint(self, engine: Engine, path: Path) -> None:
        self._writer.flush()

    def on_run_end(self, engine: Engine, summary: RunSummary) -> None:
        self._writer.close()
