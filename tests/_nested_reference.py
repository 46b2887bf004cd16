"""Dense, independent references for nested (N-level) hypergradients, used by tests/test_nested.py.

Nothing here uses hyperlevel: each lower level is solved by full Newton with dense Hessians (torch.linalg.solve)
to ~1e-15, then a few *differentiable* Newton steps from the converged point give a response whose derivatives
(by quadratic convergence of Newton) are exact to order ``2**steps - 1``; autograd through them gives the total
derivative. ``fd_gradient`` checks that by central finite differences of the fully re-solved objective.

Problems are written on one flat vector per level: ``f[k](*xs) -> scalar``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _grad_jac(g_fn, x, create_graph=True):
    """g(x) (kept in the graph) and its dense Jacobian (in the graph too when differentiable steps need it)."""
    g = g_fn(x)
    rows = [
        torch.autograd.grad(g[i], x, retain_graph=True, create_graph=create_graph)[0] for i in range(x.numel())
    ]
    return g, torch.stack(rows)


def _leaf(x):
    return x if x.requires_grad else x.detach().requires_grad_()


def _steps_for(order):
    """Differentiable Newton steps from a converged point: s steps are exact to order 2**s - 1."""
    s = 0
    while 2**s - 1 < order:
        s += 1
    return s


def _newton(g_fn, x0, order, converge, what):
    x = x0.detach().clone()
    if converge:
        for _ in range(100):
            xl = x.detach().requires_grad_()
            g, jac = _grad_jac(g_fn, xl, create_graph=False)
            step = torch.linalg.solve(jac, g.detach())
            x = x - step
            if step.norm() <= 1e-15 * (1 + x.norm()):
                break
        else:  # pragma: no cover - a reference that does not converge must not be trusted
            raise RuntimeError(f"reference Newton did not converge at {what}")
    for _ in range(_steps_for(order)):
        xi = _leaf(x)
        g, jac = _grad_jac(g_fn, xi)
        x = xi - torch.linalg.solve(jac, g)
    return x


def respond(f, guess, k, upper, mode="nested", order=1, converge=True):
    """Responses ``[x_k, ..., x_{N-1}]`` to ``upper = [x_0..x_{k-1}]``, differentiable with respect to ``upper``
    with exact derivatives up to ``order``.

    mode "nested": level k is stationary for its reduced objective (total derivative through the lower responses);
    mode "partial": level k is stationary for the partial derivative in its own slot (the lower levels' response
    is ignored when level k chooses, though it still moves with x_k): the wrong, Nash-like nesting.
    ``converge=False`` trusts ``guess`` to be converged already (the reference gradient at the given point).
    """
    n = len(f)
    if k == n:
        return []
    # Gamma_k to order m and its Jacobian's value need the lower responses to order max(m + 1, 2)
    lower_order = max(order + 1, 2)

    def g_fn(x):
        lower = respond(f, guess, k + 1, [*upper, x], mode, lower_order, converge)
        if mode == "nested":
            value = f[k](*upper, x, *lower)
            return torch.autograd.grad(value, x, create_graph=True)[0]
        y = x + 0  # the own slot, separately from the lower responses' argument
        value = f[k](*upper, y, *lower)
        return torch.autograd.grad(value, y, create_graph=True)[0]

    x = _newton(g_fn, guess[k], order, converge, f"level {k}")
    return [x, *respond(f, guess, k + 1, [*upper, x], mode, order, converge)]


def equilibrium(f, x0, guess, mode="nested"):
    """The converged responses of levels 1..N-1 to the top point ``x0`` (detached)."""
    with torch.enable_grad():
        return [r.detach() for r in respond(f, guess, 1, [x0.detach()], mode, order=0)]


def total_gradient(f, x0, guess, mode="nested", converge=False):
    """d/dx0 f[0](x0, x1*(x0), ...) by autograd through differentiable Newton steps (``guess``: converged)."""
    x = x0.detach().requires_grad_()
    value = f[0](x, *respond(f, guess, 1, [x], mode, order=1, converge=converge))
    return torch.autograd.grad(value, x)[0]


def hyperobjective(f, x0, guess, mode="nested"):
    """f[0] at the fully re-solved responses (the levels below the top stay differentiable: their reduced
    objectives need the derivatives of the responses below them)."""
    with torch.enable_grad():
        lower = respond(f, guess, 1, [x0.detach()], mode, order=0)
        return f[0](x0.detach(), *[r.detach() for r in lower]).detach()


def fd_gradient(f, x0, guess, mode="nested", h=1e-5):
    """Central finite differences of the fully re-solved objective."""
    out = torch.zeros_like(x0)
    for i in range(x0.numel()):
        e = torch.zeros_like(x0)
        e[i] = h
        out[i] = (hyperobjective(f, x0 + e, guess, mode) - hyperobjective(f, x0 - e, guess, mode)) / (2 * h)
    return out


def joint(f):
    """The lumped variant: levels 1..N-1 as ONE inner level minimising the sum of their losses jointly."""
    sizes = None

    def set_sizes(xs):
        nonlocal sizes
        sizes = [x.numel() for x in xs]

    def split(z):
        return list(torch.split(z, sizes))

    def f0(x0, z):
        return f[0](x0, *split(z))

    def f1(x0, z):
        parts = split(z)
        return sum(fk(x0, *parts) for fk in f[1:])

    return set_sizes, [f0, f1]


def make_problem(dims, seed=0, dtype=torch.float64, coupling=0.6):
    """Non-quadratic N-level losses (softplus, log-cosh, quartic terms coupling the levels).

    Level k >= 1 is strongly convex in its own variable for fixed others and jointly convex in
    ``(x_k, ..., x_{N-1})``; its reduced objective is kept convex near the solution by moderate couplings.
    """
    gen = torch.Generator().manual_seed(seed)
    n = len(dims)

    def rnd(*shape, scale=1.0):
        return scale * torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)

    m = [d + 1 for d in dims]
    mats = [[rnd(m[k], dims[j], scale=coupling / dims[j] ** 0.5) for j in range(n)] for k in range(n)]
    shifts = [rnd(m[k], scale=0.5) for k in range(n)]
    links = [rnd(dims[k], dims[k - 1], scale=0.8 / dims[k - 1] ** 0.5) if k else None for k in range(n)]
    pulls = [[rnd(dims[j], dims[k], scale=0.7 / dims[k] ** 0.5) for j in range(n)] for k in range(n)]
    targets = [rnd(d) for d in dims]

    def loss(k):
        def fk(*xs):
            z = sum(mats[k][j] @ xs[j] for j in range(n)) + shifts[k]
            value = F.softplus(z).sum()
            if k == 0:
                value = value + sum(torch.log(torch.cosh(xs[j] - targets[j])).sum() for j in range(1, n))
                return value + 0.05 * (xs[0] ** 2).sum()
            x = xs[k]
            value = value + x @ x + 0.3 * torch.log(torch.cosh(x - links[k] @ xs[k - 1])).sum()
            value = value + 0.05 * (x**4).sum()
            for j in range(k + 1, n):  # level k wants the levels below near a point that it moves
                value = value + 0.5 * ((xs[j] - pulls[k][j] @ x - 0.3 * targets[j]) ** 2).sum()
            return value

        return fk

    return [loss(k) for k in range(n)]
