"""Learnable loss weights (hyper-variables) as a first-class level."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from .errors import InvalidProblemError


class LossWeights(nn.Module):
    r"""Positive weights ``s_u`` over named losses, with the regularised total

    .. math:: \mathcal{L}_{total} = \sum_u \frac{\mathcal{L}_u}{2 s_u} + \ln(1 + s_u^2).

    The weights are ``s = exp(log_s)``: positive under any optimizer step by construction (no clipping), and
    initialised to ones (``log_s = 0``). The regulariser stops the trivial solution
    ``s -> inf``; at fixed losses the optimum satisfies ``L_u (1 + s_u^2) = 4 s_u^3``, so a *larger* loss gets
    a larger ``s_u`` and thus a smaller effective weight ``1 / (2 s_u)``. :meth:`weights` reports ``s``;
    :meth:`effective_weights` reports ``1 / (2 s)``.

    Use it as a :class:`~hyperlevel.Level`'s ``params``; inside a pure objective call
    ``loss_weights.total(params[level_name], losses)``.
    """

    def __init__(self, names: Sequence[str], init: float | Sequence[float] = 1.0):
        super().__init__()
        names = list(names)
        if not names or len(set(names)) != len(names):
            raise InvalidProblemError(f"LossWeights needs distinct names, got {names}")
        init_values = [float(init)] * len(names) if isinstance(init, (int, float)) else [float(v) for v in init]
        if len(init_values) != len(names) or any(not v > 0 for v in init_values):
            raise InvalidProblemError("LossWeights init must be positive, one value or one per name")
        self.names = names
        self.log_s = nn.Parameter(torch.tensor([math.log(v) for v in init_values]))

    def values(self, params: Mapping[str, Tensor] | None = None) -> Tensor:
        """The weights ``s`` as a tensor (from ``params`` when given, for pure evaluation)."""
        log_s = self.log_s if params is None else params["log_s"]
        return torch.exp(log_s)

    def total(self, params: Mapping[str, Tensor] | None, losses: Mapping[str, Tensor] | Sequence[Tensor]) -> Tensor:
        """The regularised weighted total of ``losses`` (a dict keyed by the weights' names, or a sequence)."""
        if isinstance(losses, Mapping):
            missing = [n for n in self.names if n not in losses]
            extra = [n for n in losses if n not in self.names]
            if missing or extra:
                raise InvalidProblemError(f"losses do not match the weights: missing {missing}, unexpected {extra}")
            stacked = torch.stack([losses[n].reshape(()) for n in self.names])
        else:
            if len(losses) != len(self.names):
                raise InvalidProblemError(f"expected {len(self.names)} losses, got {len(losses)}")
            stacked = torch.stack([v.reshape(()) for v in losses])
        s = self.values(params).to(stacked.dtype)
        return (stacked / (2 * s)).sum() + torch.log1p(s**2).sum()

    def weights(self, params: Mapping[str, Tensor] | None = None) -> dict[str, float]:
        """Current weights ``s`` by name, for logging."""
        return dict(zip(self.names, self.values(params).detach().tolist(), strict=True))

    def effective_weights(self, params: Mapping[str, Tensor] | None = None) -> dict[str, float]:
        """The multipliers ``1 / (2 s)`` that the losses actually get in the total."""
        return {k: 1.0 / (2.0 * v) for k, v in self.weights(params).items()}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v:.4g}" for k, v in self.weights().items())
