"""Small differentiation helpers shared by the solvers.

By default, Hessian-vector products use plain double-backward (``torch.autograd.grad`` with
``create_graph=True``, then a second ``grad``). Measured on a 500 x 100 ridge problem in float64, 50 CG iterations took ~3 ms that way versus
~46 ms through ``torch.func.jvp`` of ``torch.func.grad`` (docs/concepts.md): the gradient graph is built once and
each product is a single backward pass over it. ``hyperlevel.hvp`` offers the other paths and picks one by
measurement (``hvp="auto"``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from ._flat import flatten, unflatten
from .errors import InvalidProblemError
from .typing import PairLoss, Params
from .validation import check_loss, unused_names


def evaluate(loss: PairLoss, outer: Params, inner: Params, what: str) -> Tensor:
    """Call a two-argument loss and check that it is a scalar with a graph (finiteness is checked once, on the
    solver's result: ``hyperlevel.hypergradient``)."""
    try:
        value = loss(outer, inner)
    except KeyError as err:
        raise _key_error(err, what, outer, inner) from err
    return check_loss(value, what, finite=False)


def _key_error(err: KeyError, what: str, outer: Params, inner: Params) -> InvalidProblemError:
    """A loss looked up a name its dict does not have: most often the two arguments are swapped."""
    key = err.args[0] if err.args else None
    swapped = ""
    if key in outer and key not in inner:
        swapped = f" {key!r} is an outer parameter: does {what} take (inner, outer) instead of (outer, inner)?"
    elif key in inner and key not in outer:
        swapped = f" {key!r} is an inner parameter: does {what} take (inner, outer) instead of (outer, inner)?"
    return InvalidProblemError(
        f"{what} raised KeyError({key!r}). Losses are called as {what}(outer_params, inner_params) with outer "
        f"keys {list(outer)} and inner keys {list(inner)}.{swapped}"
    )


def grads(
    value: Tensor,
    params: Mapping[str, Tensor],
    *,
    create_graph: bool = False,
    retain_graph: bool | None = None,
    grad_outputs: Sequence[Tensor] | Tensor | None = None,
    allow_unused: bool = True,
) -> list[Tensor | None]:
    """``torch.autograd.grad`` over a dict of tensors; ``None`` marks a tensor the value does not depend on."""
    inputs = list(params.values())
    if not value.requires_grad:
        return [None] * len(inputs)
    return list(
        torch.autograd.grad(
            value,
            inputs,
            grad_outputs=grad_outputs,
            create_graph=create_graph,
            retain_graph=retain_graph,
            allow_unused=allow_unused,
            materialize_grads=False,
        )
    )


def zeros_for_none(gs: Sequence[Tensor | None], like: Mapping[str, Tensor] | Sequence[Tensor]) -> list[Tensor]:
    """``gs`` with each ``None`` replaced by zeros shaped like the matching tensor of ``like`` (a dict's values or a
    sequence, in the order of ``gs``).

    ``torch.autograd.grad(..., allow_unused=True)`` marks a tensor the value does not depend on with ``None``.
    hyperlevel keeps the ``None`` where it carries information (which parameters a loss ignores:
    :func:`check_outer_used`, :func:`inner_gradient`) and calls this one helper where a gradient is needed as a
    tensor (a step, a right-hand side, a result).
    """
    tensors = like.values() if isinstance(like, Mapping) else like
    return [torch.zeros_like(t) if g is None else g for g, t in zip(gs, tensors, strict=True)]


def total_derivative(
    direct: Sequence[Tensor | None],
    coupled: Sequence[Tensor | None],
    like: Mapping[str, Tensor] | Sequence[Tensor],
    scale: float | None = None,
) -> list[Tensor]:
    """``direct - coupled`` per outer tensor (``direct - scale * coupled`` with a ``scale``), ``None`` in either
    meaning zero: a hypergradient from the outer loss's partial derivative and the term through the inner
    response (for the implicit solvers ``(d_o d_w G) x``, for ``FiniteDifference`` its difference quotient)."""
    out = []
    for d, c in zip(zeros_for_none(direct, like), coupled, strict=True):
        out.append(d if c is None else d - (c if scale is None else scale * c))
    return out


def inner_gradient(
    inner_loss: PairLoss, outer: Params, inner: Params, *, create_graph: bool = True, what: str = "inner_loss"
) -> list[Tensor]:
    """Gradient of the inner loss with respect to each inner tensor (graph kept for HVPs when asked).

    The tensors are returned as autograd produced them, not concatenated: a flat copy would add a view node
    that every later Hessian-vector product back-propagates through (about 8% of a small problem's HVP).
    """
    value = evaluate(inner_loss, outer, inner, what)
    gs = grads(value, inner, create_graph=create_graph)
    missing = unused_names(list(inner), gs)
    if missing:
        raise InvalidProblemError(
            f"inner parameters {missing} do not influence {what}: its Hessian is singular and their best "
            "response is undefined; remove them or make the inner loss depend on them"
        )
    if create_graph and not any(g.requires_grad for g in gs):  # type: ignore[union-attr]
        raise InvalidProblemError(
            f"{what} is linear in the inner parameters: its Hessian is zero, so it has no minimiser to "
            "differentiate; add a curvature term (for instance L2 regularisation)"
        )
    return gs  # type: ignore[return-value]


def _engine_backward():
    """The autograd engine's ``run_backward``, when it behaves exactly like ``torch.autograd.grad`` here.

    ``torch.autograd.grad`` validates its arguments on every call (shape checks through the symbolic-shape
    machinery): about 7 us per call, 25% of a Hessian-vector product on a 100-parameter problem. Products inside
    an iterative solver reuse one graph with ``grad_outputs`` shaped by construction, so they call the engine
    directly. A self-test at import time falls back to ``torch.autograd.grad`` on any torch where the private
    entry point is missing or differs.
    """
    engine = getattr(torch.autograd.Variable, "_execution_engine", None)
    if engine is None:
        return None
    try:
        x = torch.tensor([1.0, 2.0], requires_grad=True)
        g = torch.autograd.grad((x**3).sum(), x, create_graph=True)[0]
        v = torch.tensor([1.0, -1.0])
        fast = engine.run_backward((g,), (v,), True, False, (x,), True, False)
        slow = torch.autograd.grad(g, x, grad_outputs=v, retain_graph=True)
        if len(fast) == 1 and torch.equal(fast[0], slow[0]):
            return engine
    except Exception:  # noqa: BLE001 - any difference means: use the public API
        return None
    return None


_ENGINE = _engine_backward()


def backward_products(outputs: Sequence[Tensor], grad_outputs: Sequence[Tensor], inputs: Sequence[Tensor]):
    """``torch.autograd.grad(outputs, inputs, grad_outputs, retain_graph=True, allow_unused=True)`` without the
    per-call argument validation (the caller guarantees matching shapes and dtypes)."""
    if _ENGINE is not None:
        return _ENGINE.run_backward(tuple(outputs), tuple(grad_outputs), True, False, tuple(inputs), True, False)
    return torch.autograd.grad(outputs, inputs, grad_outputs=grad_outputs, retain_graph=True, allow_unused=True)


class HessianOperator:
    """The linear map v -> H v for the Hessian of the inner loss at a fixed point, via double backward.

    ``grad`` is the inner gradient built with ``create_graph=True``: one flat tensor, or one tensor per inner
    parameter (then ``v`` is split into views of their shapes). Every product reuses its graph, so the forward
    pass is paid once.
    """

    def __init__(self, grad: Tensor | Sequence[Tensor], inner: Mapping[str, Tensor]):
        self.grad = [grad] if isinstance(grad, Tensor) else list(grad)
        self.inputs = list(inner.values())
        self.calls = 0
        self._flat = len(self.grad) == 1 and self.grad[0].dim() == 1

    def split(self, v: Tensor) -> list[Tensor]:
        """``v`` as views shaped like the gradient tensors (the ``grad_outputs`` of a product)."""
        return [v] if self._flat else unflatten(v, self.grad)

    def __call__(self, v: Tensor) -> Tensor:
        self.calls += 1
        hv = backward_products(self.grad, self.split(v), self.inputs)
        if len(hv) == 1 and hv[0] is not None:  # the common single-tensor level: no list, no concatenation
            return hv[0].reshape(-1)
        return flatten(zeros_for_none(hv, self.inputs))

    def batched(self, V: Tensor) -> Tensor:
        """``H V^T`` row by row for a ``(k, n)`` block ``V`` in one vectorised backward pass
        (``is_grads_batched=True``), for the independent products of a preconditioner's sketch. Measured
        (docs/benchmarks.md, "CG levers"): 2.4-3.8x cheaper per vector than single products on small dense
        problems, 1.4x dearer on a small CNN (vmap over the convolution's double backward). Returns a ``(k, n)``
        block; counts as ``k`` products."""
        self.calls += V.shape[0]
        outs = [V] if self._flat else [c.reshape(V.shape[0], *g.shape)
                                         for c, g in zip(V.split([g.numel() for g in self.grad], dim=1), self.grad)]
        hv = torch.autograd.grad(self.grad, self.inputs, grad_outputs=outs, retain_graph=True, allow_unused=True,
                                 is_grads_batched=True)
        return torch.cat([(torch.zeros(V.shape[0], t.numel(), dtype=V.dtype, device=V.device) if h is None
                           else h.reshape(V.shape[0], -1)) for h, t in zip(hv, self.inputs)], dim=1)

    def mixed(self, outer: Mapping[str, Tensor], v: Tensor) -> list[Tensor | None]:
        """``(d_o d_w G) v``: how the inner gradient along ``v`` changes with the outer parameters (``None``
        for an outer tensor the inner gradient does not depend on). Releases the graph."""
        return list(torch.autograd.grad(self.grad, list(outer.values()), grad_outputs=self.split(v),
                                        allow_unused=True))


def outer_partials(
    outer_loss: PairLoss, outer: Params, inner: Params, what: str = "outer_loss"
) -> tuple[Tensor, list[Tensor | None], list[Tensor | None]]:
    """The outer loss and its partial derivatives with respect to outer and inner parameters."""
    value = evaluate(outer_loss, outer, inner, what)
    both = {**{("o", k): v for k, v in outer.items()}, **{("i", k): v for k, v in inner.items()}}
    gs = torch.autograd.grad(value, list(both.values()), allow_unused=True)
    n = len(outer)
    return value, list(gs[:n]), list(gs[n:])


def check_outer_used(
    outer: Params, direct: Sequence[Tensor | None], coupled: Sequence[Tensor | None] | None
) -> None:
    """An outer parameter must reach the outer loss directly or the inner loss (through the best response)."""
    names = list(outer)
    unused = [
        n for i, n in enumerate(names) if direct[i] is None and (coupled is None or coupled[i] is None)
    ]
    if unused:
        raise InvalidProblemError(
            f"outer parameters {unused} influence neither outer_loss nor inner_loss: their hypergradient is "
            "undefined; remove them or check that the losses use them"
        )
