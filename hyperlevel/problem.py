"""A nested problem: an ordered chain of levels, outermost first."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .errors import InvalidProblemError
from .level import Level
from .typing import ParamsByLevel


def call_objective(level: Level, params: Mapping[str, Mapping[str, Tensor]], batch: Any) -> Any:
    """``level.objective(params, batch)``, with the usual mistakes explained: a level without data (the batch is
    ``None``) and an objective that looks up a parameter or level that is not there."""
    try:
        return level.objective(params, batch)
    except (TypeError, KeyError, IndexError, AttributeError) as err:
        if batch is None and level.data is None and not isinstance(err, KeyError):  # e.g. None[0]
            raise InvalidProblemError(
                f"the objective of level {level.name!r} failed ({type(err).__name__}: {err}) and its batch is None: "
                f"the level has no data. Pass data=... (an iterable of batches, e.g. hyperlevel.ResumableLoader) "
                f"to Level({level.name!r}, ...), or make the objective ignore its batch"
            ) from err
        if isinstance(err, KeyError):
            raise InvalidProblemError(
                f"the objective of level {level.name!r} raised KeyError({err}); objectives are called as "
                f"objective(params, batch) with params[level][name]: the levels are {list(params)}"
            ) from err
        raise


class Problem:
    """An ordered chain of 2..N :class:`Level` objects, outermost first, validated on construction.

    Rejected with a clear error: fewer than two levels, duplicate or malformed names, the same tensor owned by
    two levels, mixed dtypes or devices. :meth:`check_objectives` (run by the engine before training) also
    rejects an objective that does not depend on its own level's parameters.
    """

    def __init__(self, levels: Sequence[Level]):
        levels = list(levels)
        if len(levels) < 2:
            raise InvalidProblemError(f"a nested problem needs at least 2 levels, got {len(levels)}")
        for lv in levels:
            if not isinstance(lv, Level):
                raise InvalidProblemError(f"levels must be hyperlevel.Level objects, got {type(lv).__name__}")
            if "/" in lv.name:
                raise InvalidProblemError(f"level name {lv.name!r} must not contain '/'")
        names = [lv.name for lv in levels]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise InvalidProblemError(f"duplicate level names: {dupes}")
        owner: dict[int, tuple[str, str]] = {}
        dtype_ref: tuple[str, str, Tensor] | None = None
        for lv in levels:
            for pname, t in lv.named_parameters().items():
                key = t.data_ptr() if t.numel() else id(t)
                if key in owner:
                    other = owner[key]
                    raise InvalidProblemError(
                        f"parameter {pname!r} of level {lv.name!r} is also {other[1]!r} of level {other[0]!r}: "
                        "a tensor must belong to exactly one level"
                    )
                owner[key] = (lv.name, pname)
                if dtype_ref is None:
                    dtype_ref = (lv.name, pname, t)
                elif t.dtype != dtype_ref[2].dtype or t.device != dtype_ref[2].device:
                    raise InvalidProblemError(
                        f"level {lv.name!r} parameter {pname!r} is {t.dtype} on {t.device}, but level "
                        f"{dtype_ref[0]!r} parameter {dtype_ref[1]!r} is {dtype_ref[2].dtype} on "
                        f"{dtype_ref[2].device}"
                    )
        self.levels = levels
        self._by_name = {lv.name: lv for lv in levels}

    @property
    def names(self) -> list[str]:
        return [lv.name for lv in self.levels]

    def __getitem__(self, name: str) -> Level:
        try:
            return self._by_name[name]
        except KeyError:
            raise InvalidProblemError(f"no level named {name!r}; levels are {self.names}") from None

    def __len__(self) -> int:
        return len(self.levels)

    def parameters(self) -> ParamsByLevel:
        """The live tensors of every level: ``{level: {name: tensor}}``."""
        return {lv.name: lv.named_parameters() for lv in self.levels}

    def detached(self) -> ParamsByLevel:
        return {lv: {n: t.detach() for n, t in ps.items()} for lv, ps in self.parameters().items()}

    def check_objectives(self, batches: Mapping[str, Any]) -> None:
        """Evaluate each objective once: it must be a finite scalar, evaluated at the parameters it is passed (not
        the live module), and each level's parameters must reach its own objective, directly or through the levels
        below it (:func:`~hyperlevel.validation.check_reach`: a hyper-parameter that only enters the inner loss is
        fine; a level whose parameters reach none of these objectives has no gradient to follow)."""
        from .validation import check_loss, check_reach, gradients_by_group, used_names

        points = {lv.name: {n: t.detach().requires_grad_() for n, t in lv.named_parameters().items()}
                  for lv in self.levels}
        live = {f"{owner.name}/{n}": t for owner in self.levels for n, t in owner.named_parameters().items()
                if t.requires_grad}
        groups = [*points.values(), live]
        used: list[list[set[str]]] = []  # used[j][k]: names of level k's parameters that objective j depends on
        for lv in self.levels:
            with torch.enable_grad():
                raw = call_objective(lv, {k: dict(v) for k, v in points.items()}, batches.get(lv.name))  # own copy
                if not isinstance(raw, Tensor) or raw.numel() != 1 or not torch.isfinite(raw).all():
                    check_loss(raw, f"objective of level {lv.name!r}")  # raises a clear error
                *row, used_live = used_names(groups, gradients_by_group(raw.reshape(()), groups))
            if used_live:
                first = [key for key in live if key in used_live]  # level order, as the problem lists them
                raise InvalidProblemError(
                    f"the objective of level {lv.name!r} uses the live parameters {first[:4]} instead of the ones it "
                    f"is passed (it calls the module directly), so solvers cannot evaluate it at other parameters "
                    f"and its hypergradient would be silently zero or wrong. Evaluate the module at params[level], "
                    f"e.g. torch.func.functional_call(module, params[{first[0].split('/')[0]!r}], (x,)) "
                    f"(hyperlevel.prefixed for sub-modules)"
                )
            used.append(row)
        check_reach(used, [list(p) for p in points.values()], self._unreached_message, every_parameter=False)

    def _unreached_message(self, k: int, names: list[str]) -> str:
        return (
            f"the parameters of level {self.levels[k].name!r} reach neither that level's own objective nor the "
            "objectives of the levels below it; does the objective read params[level_name]? (evaluate a module at "
            "the given parameters with torch.func.functional_call(module, params[level], ...))"
        )

    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for lv in self.levels:
            if isinstance(lv.params, nn.Module):
                out[lv.name] = lv.params.state_dict()
            else:
                out[lv.name] = {n: t.detach().clone() for n, t in lv.params.items()}
        return out

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        missing = [n for n in self.names if n not in state]
        if missing:
            raise InvalidProblemError(f"the checkpoint has no parameters for levels {missing}")
        for lv in self.levels:
            if isinstance(lv.params, nn.Module):
                lv.params.load_state_dict(state[lv.name])
            else:
                with torch.no_grad():
                    for n, t in lv.params.items():
                        if n not in state[lv.name]:
                            raise InvalidProblemError(f"the checkpoint has no tensor {n!r} for level {lv.name!r}")
                        t.copy_(state[lv.name][n])
