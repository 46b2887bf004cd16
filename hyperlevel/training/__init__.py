"""The parts the :class:`~hyperlevel.Engine` composes, one job per module.

* :mod:`~hyperlevel.training.records`: :class:`StepRecord`, :class:`RunSummary`, :class:`Callback` and the
  :class:`LoggedValues` protocol through which levels report what to log;
* :mod:`~hyperlevel.training.optimizers`: the current phase's optimizers and LR schedulers;
* :mod:`~hyperlevel.training.state`: the checkpoint format (what an exact resume restores);
* :mod:`~hyperlevel.training.checkpoints`: where and when checkpoints are written, the run folder's claim;
* :mod:`~hyperlevel.training.nonfinite`: stop or skip on non-finite values;
* :mod:`~hyperlevel.training.agreement`: what data-parallel ranks agree on each step.

The step kinds themselves are in :mod:`hyperlevel.steps`; Ctrl-C handling is :mod:`hyperlevel.signals`.
"""

from .records import Callback, LoggedValues, RunSummary, StepRecord, logged_values

__all__ = ["Callback", "LoggedValues", "RunSummary", "StepRecord", "logged_values"]
