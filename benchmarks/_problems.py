"""Bilevel test problems with trustworthy reference hypergradients, shared by the benchmarks.

Every problem is float64 and seeded. It exposes

* ``outer`` / ``inner``: dicts of tensors (the outer variables and the *given inner point*);
* ``outer_loss(o, w)`` / ``inner_loss(o, w)``: pure functions of two dicts (hyperlevel's calling convention);
* ``inner_lr``, ``unroll_steps``: the step size and the number of plain gradient steps every library uses for
  its finite-difference (one step) and unrolled methods, and the Neumann step (``neumann_alpha``);
* ``point(method)``: the inner point a method is evaluated at (the same point for all methods, except for the
  CNN problem, see :class:`CNNReweighting`);
* ``reference(method)``: ``(name, dict)``, the exact value the method approximates:

  - ``ift``: the implicit-function-theorem hypergradient at the given inner point,
    ``d_o F - (d2_{wo} G)^T H^{-1} d_w F`` with ``H = d2_{ww} G``, from a closed form (ridge) or a dense
    Hessian solve built from explicit formulas (logistic, hyper-cleaning), never from an iterative solver;
  - ``one_step``: the gradient of ``F(o, w - lr * d_w G(o, w))`` by autograd (what DARTS-style finite
    differences approximate);
  - ``unrolled_T``: autograd (reverse mode, float64) through ``T`` plain gradient steps of size ``lr``.

``tests/test_benchmark_problems.py`` checks the closed forms against central finite differences.
"""

from __future__ import annotations

import functools
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as nnf
from torch import Tensor

Params = dict[str, Tensor]
DT = torch.float64

IFT_METHODS = ("cg", "neumann", "first_order")


# ----------------------------------------------------------------------------------------------------------------
# generic autograd references (exact, float64)
# ----------------------------------------------------------------------------------------------------------------
def _leaves(d: Params) -> Params:
    return {k: v.detach().clone().requires_grad_(True) for k, v in d.items()}


def unrolled_hypergradient(
    outer_loss: Callable, inner_loss: Callable, outer: Params, inner: Params, steps: int, lr: float
) -> Params:
    """d/do outer_loss(o, w_T) where w_{t+1} = w_t - lr * d_w inner_loss(o, w_t), w_0 = inner (reverse mode)."""
    o = _leaves(outer)
    w = {k: v.detach().clone().requires_grad_(True) for k, v in inner.items()}
    for _ in range(steps):
        g = torch.autograd.grad(inner_loss(o, w), list(w.values()), create_graph=True)
        w = {k: v - lr * gk for (k, v), gk in zip(w.items(), g)}
    gr = torch.autograd.grad(outer_loss(o, w), list(o.values()), allow_unused=True)
    return {k: (torch.zeros_like(v) if gk is None else gk.detach()) for (k, v), gk in zip(o.items(), gr)}


def first_order_gradient(outer_loss: Callable, outer: Params, inner: Params) -> Params:
    o = _leaves(outer)
    w = {k: v.detach() for k, v in inner.items()}
    value = outer_loss(o, w)
    if not value.requires_grad:  # the outer loss does not read the outer variables directly
        return {k: torch.zeros_like(v) for k, v in o.items()}
    gr = torch.autograd.grad(value, list(o.values()), allow_unused=True)
    return {k: (torch.zeros_like(v) if gk is None else gk.detach()) for (k, v), gk in zip(o.items(), gr)}


def rel_error(value: Params, ref: Params) -> float:
    num = math.sqrt(sum(float(((value[k].to(DT) - ref[k]) ** 2).sum()) for k in ref))
    den = math.sqrt(sum(float((ref[k] ** 2).sum()) for k in ref))
    return num / den if den > 0 else num


class Problem(ABC):
    name = ""
    size = 0
    outer: Params
    inner: Params
    inner_lr: float
    neumann_alpha: float
    unroll_steps: int
    description = ""

    @abstractmethod
    def outer_loss(self, o: Params, w: Params) -> Tensor:
        """See the subclasses."""

    @abstractmethod
    def inner_loss(self, o: Params, w: Params) -> Tensor:
        """See the subclasses."""

    @abstractmethod
    def ift_reference(self) -> Params:
        """See the subclasses."""

    def point(self, method: str) -> Params:
        return self.inner

    def reference(self, method: str) -> tuple[str, Params]:
        if method == "finite_difference":
            return "one_step", self._cached(
                "one_step", lambda: unrolled_hypergradient(
                    self.outer_loss, self.inner_loss, self.outer, self.point(method), 1, self.inner_lr))
        if method == "unrolled":
            return f"unrolled_{self.unroll_steps}", self._cached("unrolled", self._unrolled_ref)
        return "ift", self._cached("ift", self.ift_reference)

    def _unrolled_ref(self) -> Params:
        return unrolled_hypergradient(self.outer_loss, self.inner_loss, self.outer, self.point("unrolled"),
                                      self.unroll_steps, self.inner_lr)

    def _cached(self, key: str, fn: Callable[[], Params]) -> Params:
        cache = self.__dict__.setdefault("_ref_cache", {})
        if key not in cache:
            cache[key] = fn()
        return cache[key]

    def spec(self) -> str:
        """JSON that rebuilds this problem (``from_spec``) in a measurement subprocess: data, not a pickle."""
        return json.dumps({"name": self.name, "kwargs": self._kwargs})


# ----------------------------------------------------------------------------------------------------------------
# 1. ridge regression, one penalty per feature
# ----------------------------------------------------------------------------------------------------------------
def ridge_samples(p: int) -> int:
    """Training examples of the ridge problem with ``p`` features: 2p (at least 200) up to p = 500, then 1 000, and
    200 from p = 10^5 on (X is n x p in float64: 1 000 x 10^5 would be 800 MB and ~0.3 s per product)."""
    return max(2 * p, 200) if p <= 500 else 1000 if p < 100_000 else 200


class Ridge(Problem):
    """Ridge regression with one penalty per feature.

    inner  G(l, w) = 1/(2n) ||X w - y||^2 + 1/2 sum_i exp(l_i) w_i^2     (w in R^p: ``size`` = p)
    outer  F(l, w) = 1/m ||X_v w - y_v||^2                                (validation MSE)

    The inner point is the exact minimiser w* = H^{-1} X^T y / n, H = X^T X / n + diag(exp(l)), and the hypergradient
    is dF/dl = -exp(l) * w* * H^{-1} (2/m X_v^T (X_v w* - y_v)). When p > n every solve with H uses the Woodbury
    identity (an n x n system), so p = 10^5 stays cheap. Log-penalties are uniform in [log 0.3, log 3].
    """

    name = "ridge"

    def __init__(self, n_features: int = 100, n_samples: int | None = None, seed: int = 0):
        n = n_samples if n_samples is not None else ridge_samples(n_features)
        self._kwargs = {"n_features": n_features, "n_samples": n, "seed": seed}
        g = torch.Generator().manual_seed(seed)
        p = n_features
        self.size, self.n = p, n
        beta = torch.randn(p, generator=g, dtype=DT) / math.sqrt(p)
        self.X = torch.randn(n, p, generator=g, dtype=DT)
        self.y = self.X @ beta + 0.5 * torch.randn(n, generator=g, dtype=DT)
        self.Xv = torch.randn(n, p, generator=g, dtype=DT)
        self.yv = self.Xv @ beta + 0.5 * torch.randn(n, generator=g, dtype=DT)
        lam = torch.empty(p, dtype=DT).uniform_(math.log(0.3), math.log(3.0), generator=g)
        self.outer = {"log_penalty": lam}
        self.inner = {"w": self.solve_inner(lam)}
        # step size 1/L with L the largest eigenvalue of H (power iteration, float64)
        L = self._lmax(lam)
        self.inner_lr = 1.0 / L
        self.neumann_alpha = 1.0 / L
        self.unroll_steps = 100
        self.description = f"ridge n={n} p={p}"

    def _solve(self, lam: Tensor, b: Tensor) -> Tensor:
        """H^{-1} b, H = X^T X/n + diag(exp(lam)), exactly (Cholesky, Woodbury when p > n)."""
        d = torch.exp(lam)
        n, p = self.X.shape
        if p <= n:
            H = self.X.T @ self.X / n + torch.diag(d)
            return torch.cholesky_solve(b[:, None], torch.linalg.cholesky(H))[:, 0]
        Xd = self.X / d  # X D^{-1}
        K = n * torch.eye(n, dtype=DT) + Xd @ self.X.T
        t = torch.cholesky_solve((Xd @ b)[:, None], torch.linalg.cholesky(K))[:, 0]
        return b / d - Xd.T @ t

    def _lmax(self, lam: Tensor) -> float:
        g = torch.Generator().manual_seed(1)
        v = torch.randn(self.size, generator=g, dtype=DT)
        d = torch.exp(lam)
        ev = 0.0
        for _ in range(100):
            hv = self.X.T @ (self.X @ v) / self.n + d * v
            ev = float(v @ hv / (v @ v))
            v = hv / torch.linalg.vector_norm(hv)
        return ev * 1.01

    def solve_inner(self, lam: Tensor) -> Tensor:
        return self._solve(lam, self.X.T @ self.y / self.n)

    def outer_loss(self, o, w):
        r = self.Xv @ w["w"] - self.yv
        return (r * r).mean()

    def inner_loss(self, o, w):
        r = self.X @ w["w"] - self.y
        return 0.5 * (r * r).mean() + 0.5 * (torch.exp(o["log_penalty"]) * w["w"] ** 2).sum()

    def hyperobjective(self, lam: Tensor) -> float:
        """F(l, w*(l)), for finite-difference checks."""
        w = self.solve_inner(lam)
        return float(self.outer_loss({}, {"w": w}))

    def ift_reference(self):
        lam, w = self.outer["log_penalty"], self.inner["w"]
        gw = 2.0 / self.Xv.shape[0] * self.Xv.T @ (self.Xv @ w - self.yv)
        return {"log_penalty": -torch.exp(lam) * w * self._solve(lam, gw)}


# ----------------------------------------------------------------------------------------------------------------
# 2. L2-regularised logistic regression
# ----------------------------------------------------------------------------------------------------------------
class Logistic(Problem):
    """Binary logistic regression with one L2 penalty per feature.

    inner  G(l, w) = mean_i BCE(x_i . w, y_i) + 1/2 sum_j exp(l_j) w_j^2        (``size`` = p features)
    outer  F(l, w) = mean_i BCE on a validation set

    The inner point is solved by Newton's method to ||grad|| < 1e-13. Reference: dense solve with the explicit
    Hessian H = X^T diag(s(1-s)) X / n + diag(exp(l)); mixed term d2G/dw dl = diag(exp(l) * w).
    """

    name = "logistic"

    def __init__(self, n_features: int = 50, n_samples: int | None = None, seed: int = 0):
        n = n_samples if n_samples is not None else 4 * n_features
        self._kwargs = {"n_features": n_features, "n_samples": n, "seed": seed}
        g = torch.Generator().manual_seed(seed + 1)
        p = n_features
        self.size = p
        beta = 2.0 * torch.randn(p, generator=g, dtype=DT) / math.sqrt(p)
        self.X = torch.randn(n, p, generator=g, dtype=DT)
        self.y = (torch.rand(n, generator=g, dtype=DT) < torch.sigmoid(self.X @ beta)).to(DT)
        self.Xv = torch.randn(n, p, generator=g, dtype=DT)
        self.yv = (torch.rand(n, generator=g, dtype=DT) < torch.sigmoid(self.Xv @ beta)).to(DT)
        lam = torch.empty(p, dtype=DT).uniform_(math.log(0.01), math.log(0.1), generator=g)
        self.outer = {"log_penalty": lam}
        self.inner = {"w": self.solve_inner(lam)}
        L = float(torch.linalg.eigvalsh(self.hessian(lam, self.inner["w"]))[-1])
        self.inner_lr = 1.0 / L
        self.neumann_alpha = 1.0 / L
        self.unroll_steps = 100
        self.description = f"logistic n={n} p={p}"

    def hessian(self, lam, w):
        s = torch.sigmoid(self.X @ w)
        return self.X.T @ (self.X * (s * (1 - s))[:, None]) / self.X.shape[0] + torch.diag(torch.exp(lam))

    def solve_inner(self, lam):
        w = torch.zeros(self.size, dtype=DT)
        for _ in range(100):
            s = torch.sigmoid(self.X @ w)
            grad = self.X.T @ (s - self.y) / self.X.shape[0] + torch.exp(lam) * w
            if float(torch.linalg.vector_norm(grad)) < 1e-13:
                break
            w = w - torch.linalg.solve(self.hessian(lam, w), grad)
        return w

    def outer_loss(self, o, w):
        return nnf.binary_cross_entropy_with_logits(self.Xv @ w["w"], self.yv)

    def inner_loss(self, o, w):
        return (nnf.binary_cross_entropy_with_logits(self.X @ w["w"], self.y)
                + 0.5 * (torch.exp(o["log_penalty"]) * w["w"] ** 2).sum())

    def hyperobjective(self, lam):
        return float(self.outer_loss({}, {"w": self.solve_inner(lam)}))

    def ift_reference(self):
        lam, w = self.outer["log_penalty"], self.inner["w"]
        gw = self.Xv.T @ (torch.sigmoid(self.Xv @ w) - self.yv) / self.Xv.shape[0]
        q = torch.linalg.solve(self.hessian(lam, w), gw)
        return {"log_penalty": -torch.exp(lam) * w * q}


# ----------------------------------------------------------------------------------------------------------------
# 3. data hyper-cleaning on scikit-learn's digits
# ----------------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _load_digits():
    from sklearn.datasets import load_digits

    return load_digits(return_X_y=True)


def _digits(seed: int):
    X, y = _load_digits()
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    X = torch.tensor(X[perm] / 16.0, dtype=DT)
    y = torch.tensor(y[perm], dtype=torch.long)
    return X, y


class HyperCleaning(Problem):
    """Data hyper-cleaning: learn one weight per training example on digits with corrupted labels.

    ``size`` = number of training examples (the outer dimension); a fraction ``corruption`` (50%) of their labels is
    replaced by a uniformly random *different* class. Outer variables u (one per example, initialised at 0), weights
    a = sigmoid(u). Inner: multinomial logistic regression W (65 x 10, bias as a constant feature, 650 parameters),

    inner  G(u, W) = 1/n sum_i a_i CE(x_i W, y_i) + mu/2 ||W||^2        (mu = 1e-2)
    outer  F(u, W) = mean CE on 500 clean validation examples

    The inner point is solved by Newton's method (dense 650 x 650 Hessian, assembled block-wise from the explicit
    formula) to ||grad|| < 1e-12. Reference: dF/du_i = -a_i (1 - a_i)/n <x_i (p_i - e_{y_i})^T, H^{-1} dF/dW>.
    """

    name = "hypercleaning"

    def __init__(self, n_train: int = 200, corruption: float = 0.5, mu: float = 1e-2, seed: int = 0,
                 n_val: int = 500):
        self._kwargs = {"n_train": n_train, "corruption": corruption, "mu": mu, "seed": seed, "n_val": n_val}
        X, y = _digits(seed)
        assert n_train + n_val <= len(y)
        ones = torch.ones(len(y), 1, dtype=DT)
        X = torch.cat([X, ones], 1)
        self.X, self.Xv = X[:n_train], X[n_train:n_train + n_val]
        y_tr, self.yv = y[:n_train].clone(), y[n_train:n_train + n_val]
        g = torch.Generator().manual_seed(seed + 2)
        flip = torch.rand(n_train, generator=g) < corruption
        shift = torch.randint(1, 10, (n_train,), generator=g)
        y_tr[flip] = (y_tr[flip] + shift[flip]) % 10
        self.y, self.flipped = y_tr, flip
        self.Y = nnf.one_hot(self.y, 10).to(DT)
        self.Yv = nnf.one_hot(self.yv, 10).to(DT)
        self.mu, self.size = mu, n_train
        u = torch.zeros(n_train, dtype=DT)
        self.outer = {"u": u}
        self.inner = {"W": self.solve_inner(u)}
        L = float(torch.linalg.eigvalsh(self.hessian(u, self.inner["W"]))[-1])
        self.inner_lr = 1.0 / L
        self.neumann_alpha = 1.0 / L
        self.unroll_steps = 100
        self.description = f"hyper-cleaning digits n_train={n_train} corrupted={int(flip.sum())}"

    @staticmethod
    def _flat(W):  # class-major: block c holds W[:, c]
        return W.T.reshape(-1)

    @staticmethod
    def _unflat(v, d):
        return v.reshape(10, d).T

    def hessian(self, u, W):
        a = torch.sigmoid(u)
        P = torch.softmax(self.X @ W, 1)
        n, d = self.X.shape
        H = torch.zeros(10 * d, 10 * d, dtype=DT)
        for c in range(10):
            for e in range(c, 10):
                coef = a * (P[:, c] * (float(c == e) - P[:, e]))
                blk = self.X.T @ (self.X * coef[:, None]) / n
                H[c * d:(c + 1) * d, e * d:(e + 1) * d] = blk
                H[e * d:(e + 1) * d, c * d:(c + 1) * d] = blk.T
        return H + self.mu * torch.eye(10 * d, dtype=DT)

    def _grad(self, u, W):
        a = torch.sigmoid(u)
        P = torch.softmax(self.X @ W, 1)
        return self.X.T @ (a[:, None] * (P - self.Y)) / self.X.shape[0] + self.mu * W

    def solve_inner(self, u):
        d = self.X.shape[1]
        W = torch.zeros(d, 10, dtype=DT)
        obj = self._objective(u, W)
        for _ in range(100):
            G = self._grad(u, W)
            if float(torch.linalg.vector_norm(G)) < 1e-12:
                break
            step = self._unflat(torch.linalg.solve(self.hessian(u, W), self._flat(G)), d)
            t = 1.0  # damped Newton: backtrack until the objective decreases (Armijo)
            while t > 1e-8:
                W_new = W - t * step
                obj_new = self._objective(u, W_new)
                if obj_new <= obj - 1e-4 * t * float((G * step).sum()):
                    break
                t *= 0.5
            W, obj = W_new, obj_new
        return W

    def _objective(self, u, W):
        return float(self.inner_loss({"u": u}, {"W": W}))

    def outer_loss(self, o, w):
        return nnf.cross_entropy(self.Xv @ w["W"], self.yv)

    def inner_loss(self, o, w):
        ce = nnf.cross_entropy(self.X @ w["W"], self.y, reduction="none")
        return (torch.sigmoid(o["u"]) * ce).mean() + 0.5 * self.mu * (w["W"] ** 2).sum()

    def hyperobjective(self, u):
        return float(self.outer_loss({}, {"W": self.solve_inner(u)}))

    def ift_reference(self):
        u, W = self.outer["u"], self.inner["W"]
        d = self.X.shape[1]
        gW = self.Xv.T @ (torch.softmax(self.Xv @ W, 1) - self.Yv) / self.Xv.shape[0]
        Q = self._unflat(torch.linalg.solve(self.hessian(u, W), self._flat(gW)), d)  # H^{-1} dF/dW
        P = torch.softmax(self.X @ W, 1)
        a = torch.sigmoid(u)
        # <x_i (p_i - y_i)^T, Q> = (p_i - y_i) . (x_i Q)
        inner_prod = ((P - self.Y) * (self.X @ Q)).sum(1)
        return {"u": -a * (1 - a) / self.X.shape[0] * inner_prod}


# ----------------------------------------------------------------------------------------------------------------
# 4. a small CNN whose inner problem is a few SGD steps
# ----------------------------------------------------------------------------------------------------------------
class CNNReweighting(Problem):
    """Per-example loss weights for a small CNN on 8 x 8 digits (30% corrupted labels); no closed form.

    CNN: conv 3x3 (1 -> 8 channels, padding 1), tanh, 2x2 average pool, linear 128 -> 10 (1 370 parameters).
    Outer u (one per training example, ``size`` = n_train), weights sigmoid(u);
    inner  G(u, w) = 1/n sum_i sigmoid(u_i) CE_i(w) + 1e-4/2 ||w||^2,  outer F(u, w) = mean CE on 300 clean examples.

    The inner "solution" is ``unroll_steps`` (= 20) plain gradient steps of size 0.5 (full batch) from a fixed random
    initialisation w_0. References (all autograd in float64, so exact up to rounding):

    * ``unrolled`` and the implicit methods (``cg``, ``neumann``, ``first_order``): the hypergradient of that
      20-step procedure (``unrolled_20``). Unrolled methods start at w_0; implicit ones are evaluated at w_20 (the
      trained network) and approximate it, so their error measures the IFT-vs-short-horizon gap, not a bug.
    * ``finite_difference``: the one-step quantity at w_0.
    """

    name = "cnn"

    def __init__(self, n_train: int = 128, seed: int = 0, n_val: int = 300, steps: int = 20, lr: float = 0.5):
        self._kwargs = {"n_train": n_train, "seed": seed, "n_val": n_val, "steps": steps, "lr": lr}
        X, y = _digits(seed + 7)
        X = X.reshape(-1, 1, 8, 8)
        self.X, self.Xv = X[:n_train], X[n_train:n_train + n_val]
        y_tr, self.yv = y[:n_train].clone(), y[n_train:n_train + n_val]
        g = torch.Generator().manual_seed(seed + 3)
        flip = torch.rand(n_train, generator=g) < 0.3
        shift = torch.randint(1, 10, (n_train,), generator=g)
        y_tr[flip] = (y_tr[flip] + shift[flip]) % 10
        self.y, self.size = y_tr, n_train
        self.w0 = {
            "conv_w": torch.randn(8, 1, 3, 3, generator=g, dtype=DT) / 3.0,
            "conv_b": torch.zeros(8, dtype=DT),
            "fc_w": torch.randn(10, 128, generator=g, dtype=DT) / math.sqrt(128),
            "fc_b": torch.zeros(10, dtype=DT),
        }
        self.outer = {"u": torch.zeros(n_train, dtype=DT)}
        self.inner_lr, self.neumann_alpha, self.unroll_steps = lr, lr, steps
        w = {k: v.clone() for k, v in self.w0.items()}
        o = self.outer
        for _ in range(steps):
            wl = _leaves(w)
            gr = torch.autograd.grad(self.inner_loss(o, wl), list(wl.values()))
            w = {k: v.detach() - lr * gk for (k, v), gk in zip(wl.items(), gr)}
        self.inner = w
        self.description = f"CNN digits n_train={n_train}, {steps} SGD steps"

    @staticmethod
    def forward(w, X):
        h = torch.tanh(nnf.conv2d(X, w["conv_w"], w["conv_b"], padding=1))
        h = nnf.avg_pool2d(h, 2).flatten(1)
        return h @ w["fc_w"].T + w["fc_b"]

    def outer_loss(self, o, w):
        return nnf.cross_entropy(self.forward(w, self.Xv), self.yv)

    def inner_loss(self, o, w):
        ce = nnf.cross_entropy(self.forward(w, self.X), self.y, reduction="none")
        reg = sum((v ** 2).sum() for v in w.values())
        return (torch.sigmoid(o["u"]) * ce).mean() + 0.5e-4 * reg

    def point(self, method):
        return self.w0 if method in ("unrolled", "finite_difference") else self.inner

    def reference(self, method):
        if method in ("unrolled", "finite_difference"):
            return super().reference(method)
        return f"unrolled_{self.unroll_steps}", self._cached("unrolled", self._unrolled_ref)

    def ift_reference(self):  # no closed form; the implicit methods are compared with the unrolled procedure
        return self._cached("unrolled", self._unrolled_ref)


# ----------------------------------------------------------------------------------------------------------------
# 5. the same CNN trained to a strict local minimum (implicit methods are exact there)
# ----------------------------------------------------------------------------------------------------------------
def dense_hessian(loss: Callable[[Tensor], Tensor], w: Tensor, chunk: int = 256) -> Tensor:
    """The exact Hessian of ``loss`` at the flat point ``w``, from Hessian-vector products batched over identity
    columns (``torch.autograd.grad(..., is_grads_batched=True)``), symmetrised."""
    wl = w.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(loss(wl), wl, create_graph=True)
    n = w.numel()
    eye = torch.eye(n, dtype=w.dtype)
    rows = [torch.autograd.grad(g, wl, eye[i:i + chunk], retain_graph=True, is_grads_batched=True)[0]
            for i in range(0, n, chunk)]
    H = torch.cat(rows)
    return 0.5 * (H + H.T)


class CNNMinimum(CNNReweighting):
    """The CNN of :class:`CNNReweighting` with an L2 weight ``mu`` (1e-2) and its inner point a strict local minimum.

    inner  G(u, w) = 1/n sum_i sigmoid(u_i) CE_i(w) + mu/2 ||w||^2 - g0 . w,   outer F(u, w) = mean CE on 300 clean
    examples.

    The inner problem is solved from the fixed initialisation by L-BFGS (float64, strong-Wolfe line search) to
    ``||grad|| < 1e-6``; the constant tilt ``g0`` is that point's remaining gradient (``||g0|| < 1e-6``), which makes
    the L-BFGS point an exact stationary point (``||grad|| ~ 1e-16``) without changing any second derivative. The
    exact Hessian there (1 370 x 1 370, from Hessian-vector products batched over identity columns) has a positive
    smallest eigenvalue (checked, kept as ``lambda_min``): a strict local minimum, where the implicit function
    theorem applies. Reference for the implicit methods: ``ift`` by a dense solve with that Hessian and the mixed
    product by autograd; finite differences and unrolled (``unroll_steps`` = 20 steps of size 1/L) start at the
    minimum too. The solved point and Hessian are cached on disk (``HYPERLEVEL_BENCH_CACHE``, default
    ``~/.cache/hyperlevel-bench``) per problem description, since building them takes seconds of CPU.
    """

    name = "cnn_min"

    def __init__(self, n_train: int = 128, seed: int = 0, n_val: int = 300, mu: float = 1e-2, steps: int = 20):
        super().__init__(n_train=n_train, seed=seed, n_val=n_val, steps=0)
        self._kwargs = {"n_train": n_train, "seed": seed, "n_val": n_val, "mu": mu, "steps": steps}
        self.mu = mu
        self._names = list(self.w0)
        self._like = [self.w0[k] for k in self._names]
        self.tilt = torch.zeros(sum(t.numel() for t in self._like), dtype=DT)
        w, self.tilt, self.H = self._cached_solution()
        self.grad_norm = float(torch.linalg.vector_norm(self._gradient(w)))
        evals = torch.linalg.eigvalsh(self.H)
        self.lambda_min, L = float(evals[0]), float(evals[-1])
        if not self.lambda_min > 0:
            raise RuntimeError(f"cnn_min: the inner point is not a strict minimum (lambda_min {self.lambda_min:.3e})")
        self.inner = self._unflat(w)
        self.inner_lr = self.neumann_alpha = 1.0 / L
        self.unroll_steps = steps
        self.condition = L / self.lambda_min
        self.description = (f"CNN digits n_train={n_train}, L2 {mu:g}, inner minimum (grad {self.grad_norm:.1e}, "
                            f"Hessian eigenvalues {self.lambda_min:.2e}..{L:.2e})")

    def _cached_solution(self) -> tuple[Tensor, Tensor, Tensor]:
        import hashlib
        import os
        from pathlib import Path

        root = Path(os.environ.get("HYPERLEVEL_BENCH_CACHE", Path.home() / ".cache" / "hyperlevel-bench"))
        key = hashlib.sha256(json.dumps(self._kwargs, sort_keys=True).encode()).hexdigest()[:16]
        path = root / f"cnn_min_{key}.pt"
        if path.exists():
            d = torch.load(path, weights_only=True)
            return d["w"], d["tilt"], d["H"]
        w = self._lbfgs(self._flat(self.w0))
        tilt = self._gradient(w)  # G - tilt . w is exactly stationary at w; second derivatives unchanged
        H = self.hessian_flat(w)
        root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save({"w": w, "tilt": tilt, "H": H}, tmp)
        tmp.replace(path)
        return w, tilt, H

    def _flat(self, d: Params) -> Tensor:
        return torch.cat([d[k].reshape(-1) for k in self._names])

    def _unflat(self, v: Tensor) -> Params:
        out, i = {}, 0
        for k, t in zip(self._names, self._like):
            out[k] = v[i:i + t.numel()].reshape(t.shape)
            i += t.numel()
        return out

    def inner_loss(self, o, w):
        ce = nnf.cross_entropy(self.forward(w, self.X), self.y, reduction="none")
        reg = sum((v ** 2).sum() for v in w.values())
        tilt = sum((t * w[k]).sum() for k, t in self._unflat(self.tilt).items())
        return (torch.sigmoid(o["u"]) * ce).mean() + 0.5 * self.mu * reg - tilt

    def _flat_loss(self, u: Tensor) -> Callable[[Tensor], Tensor]:
        return lambda v: self.inner_loss({"u": u}, self._unflat(v))

    def hessian_flat(self, w: Tensor) -> Tensor:
        return dense_hessian(self._flat_loss(self.outer["u"]), w)

    def _gradient(self, w: Tensor, u: Tensor | None = None) -> Tensor:
        wl = w.detach().clone().requires_grad_(True)
        return torch.autograd.grad(self._flat_loss(self.outer["u"] if u is None else u)(wl), wl)[0]

    def _lbfgs(self, w: Tensor) -> Tensor:
        loss = self._flat_loss(self.outer["u"])
        wl = w.detach().clone().requires_grad_(True)
        opt = torch.optim.LBFGS([wl], lr=1.0, max_iter=3000, history_size=50, tolerance_grad=1e-6,
                                tolerance_change=0.0, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            value = loss(wl)
            value.backward()
            return value

        opt.step(closure)
        return wl.detach()

    def point(self, method):
        return self.inner

    def reference(self, method):
        return Problem.reference(self, method)

    def ift_reference(self):
        u, w = self.outer["u"], self._flat(self.inner)
        wl = w.clone().requires_grad_(True)
        gw = torch.autograd.grad(self.outer_loss({}, self._unflat(wl)), wl)[0]
        q = torch.linalg.solve(self.H, gw)  # H^{-1} dF/dw
        ul = u.clone().requires_grad_(True)
        g_inner = torch.autograd.grad(self.inner_loss({"u": ul}, self._unflat(wl)), wl, create_graph=True)[0]
        mixed = torch.autograd.grad(g_inner @ q, ul)[0]
        return {"u": -mixed.detach()}

    def hyperobjective(self, u: Tensor) -> float:
        """F(u, w*(u)), w*(u) re-solved from the minimum by chord Newton steps with the Hessian at the minimum (it
        converges linearly, fast for small changes of u, and stays on the same branch)."""
        factor = torch.linalg.cholesky(self.H)
        w = self._flat(self.inner)
        for _ in range(100):
            g = self._gradient(w, u)
            if float(torch.linalg.vector_norm(g)) < 1e-14:
                break
            w = w - torch.cholesky_solve(g[:, None], factor)[:, 0]
        return float(self.outer_loss({}, self._unflat(w)))


PROBLEMS = {"ridge": Ridge, "logistic": Logistic, "hypercleaning": HyperCleaning, "cnn": CNNReweighting,
            "cnn_min": CNNMinimum}


def from_spec(spec: str) -> Problem:
    """The problem a ``Problem.spec()`` string describes."""
    data = json.loads(spec)
    return PROBLEMS[data["name"]](**data["kwargs"])


def make_problem(name: str, size: int) -> Problem:
    if name == "ridge":
        return Ridge(n_features=size)
    if name == "logistic":
        return Logistic(n_features=size)
    if name == "hypercleaning":
        return HyperCleaning(n_train=size)
    if name == "cnn":
        return CNNReweighting(n_train=size)
    if name == "cnn_min":
        return CNNMinimum(n_train=size)
    raise KeyError(name)
