"""Closed-form bilevel problems shared by the solver tests (float64)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Ridge:
    """Ridge regression with one penalty exp(lam_j) per feature; validation MSE outer loss."""

    X: Tensor
    y: Tensor
    Xv: Tensor
    yv: Tensor
    lam: Tensor

    @classmethod
    def make(cls, n=60, p=8, nv=40, dtype=torch.float64, seed=0):
        g = torch.Generator().manual_seed(seed)
        X = torch.randn(n, p, generator=g, dtype=dtype)
        w_true = torch.randn(p, generator=g, dtype=dtype)
        y = X @ w_true + 0.5 * torch.randn(n, generator=g, dtype=dtype)
        Xv = torch.randn(nv, p, generator=g, dtype=dtype)
        yv = Xv @ w_true + 0.5 * torch.randn(nv, generator=g, dtype=dtype)
        lam = 0.5 * torch.randn(p, generator=g, dtype=dtype)
        return cls(X, y, Xv, yv, lam)

    def inner(self, o, i):
        return 0.5 * ((self.X @ i["w"] - self.y) ** 2).sum() + 0.5 * (torch.exp(o["lam"]) * i["w"] ** 2).sum()

    def outer(self, o, i):
        return 0.5 * ((self.Xv @ i["w"] - self.yv) ** 2).sum()

    def A(self):
        return self.X.T @ self.X + torch.diag(torch.exp(self.lam))

    def w_star(self):
        return torch.linalg.solve(self.A(), self.X.T @ self.y)

    def exact(self):
        w = self.w_star()
        q = torch.linalg.solve(self.A(), self.Xv.T @ (self.Xv @ w - self.yv))
        return -q * torch.exp(self.lam) * w

    def one_step(self, w, lr):
        """Exact gradient of F(w - lr * grad_w G(lam, w)) with respect to lam."""
        w_hat = w - lr * (self.A() @ w - self.X.T @ self.y)
        return -lr * torch.exp(self.lam) * w * (self.Xv.T @ (self.Xv @ w_hat - self.yv))

    def params(self):
        return {"lam": self.lam.clone()}, {"w": self.w_star()}


@dataclass
class Logistic:
    """L2-regularised logistic regression with one penalty per feature; validation log-loss outer."""

    X: Tensor
    y: Tensor
    Xv: Tensor
    yv: Tensor
    lam: Tensor

    @classmethod
    def make(cls, n=80, p=6, nv=50, dtype=torch.float64, seed=1):
        g = torch.Generator().manual_seed(seed)
        X = torch.randn(n, p, generator=g, dtype=dtype)
        w_true = torch.randn(p, generator=g, dtype=dtype)
        y = (torch.rand(n, generator=g, dtype=dtype) < torch.sigmoid(X @ w_true)).to(dtype)
        Xv = torch.randn(nv, p, generator=g, dtype=dtype)
        yv = (torch.rand(nv, generator=g, dtype=dtype) < torch.sigmoid(Xv @ w_true)).to(dtype)
        lam = 0.3 * torch.randn(p, generator=g, dtype=dtype)
        return cls(X, y, Xv, yv, lam)

    @staticmethod
    def _nll(X, y, w):
        z = X @ w
        return torch.nn.functional.softplus(z).sum() - (y * z).sum()

    def inner(self, o, i):
        return self._nll(self.X, self.y, i["w"]) + 0.5 * (torch.exp(o["lam"]) * i["w"] ** 2).sum()

    def outer(self, o, i):
        return self._nll(self.Xv, self.yv, i["w"])

    def w_star(self):
        w = torch.zeros(self.X.shape[1], dtype=self.X.dtype)
        for _ in range(50):
            s = torch.sigmoid(self.X @ w)
            g = self.X.T @ (s - self.y) + torch.exp(self.lam) * w
            H = self.X.T @ (self.X * (s * (1 - s))[:, None]) + torch.diag(torch.exp(self.lam))
            w = w - torch.linalg.solve(H, g)
        return w

    def exact(self):
        """Implicit hypergradient from the analytic Hessian (independent of autograd)."""
        w = self.w_star()
        s = torch.sigmoid(self.X @ w)
        H = self.X.T @ (self.X * (s * (1 - s))[:, None]) + torch.diag(torch.exp(self.lam))
        gv = self.Xv.T @ (torch.sigmoid(self.Xv @ w) - self.yv)
        return -torch.linalg.solve(H, gv) * torch.exp(self.lam) * w

    def params(self):
        return {"lam": self.lam.clone()}, {"w": self.w_star()}


def rel(a: Tensor, b: Tensor) -> float:
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))
