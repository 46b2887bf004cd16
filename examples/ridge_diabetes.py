"""Tutorial: learn one ridge penalty per feature by hypergradient descent (scikit-learn's diabetes data).

The inner problem fits ridge weights for given penalties; the outer problem tunes the ten log-penalties on a
validation split with ``hyperlevel.hypergradient``. We compare with the best single shared penalty found by a grid
search on the same validation split, and report both on a held-out test split.

Run: ``python examples/ridge_diabetes.py`` (a few seconds on a laptop CPU).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import hyperlevel
from hyperlevel import solvers


def load_splits(seed: int = 0):
    from sklearn.datasets import load_diabetes  # ships with scikit-learn: no download

    X, y = load_diabetes(return_X_y=True)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(y))
    X, y = X[idx], y[idx]
    n_train, n_val = 150, 150  # small training split: that is where per-feature penalties matter
    mean, std = X[:n_train].mean(0), X[:n_train].std(0)
    X = (X - mean) / std
    y = (y - y[:n_train].mean()) / y[:n_train].std()
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    return (
        (t(X[:n_train]), t(y[:n_train])),
        (t(X[n_train : n_train + n_val]), t(y[n_train : n_train + n_val])),
        (t(X[n_train + n_val :]), t(y[n_train + n_val :])),
    )


def fit_ridge(X, y, penalties):
    """The inner problem's exact minimiser (the tutorial's inner solver)."""
    return torch.linalg.solve(X.T @ X + torch.diag(penalties), X.T @ y)


def mse(X, y, w) -> float:
    return float(((X @ w - y) ** 2).mean())


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=0.05)
    args = parser.parse_args(argv)
    (Xt, yt), (Xv, yv), (Xs, ys) = load_splits()

    def inner_loss(outer, inner):
        return 0.5 * ((Xt @ inner["w"] - yt) ** 2).sum() + 0.5 * (torch.exp(outer["log_pen"]) * inner["w"] ** 2).sum()

    def outer_loss(outer, inner):
        return 0.5 * ((Xv @ inner["w"] - yv) ** 2).mean()

    # Baseline: best single shared penalty on a log grid (selected on validation).
    grid = torch.logspace(-3, 4, 141, dtype=torch.float64)
    val = [mse(Xv, yv, fit_ridge(Xt, yt, torch.full((Xt.shape[1],), g))) for g in grid]
    best = grid[int(np.argmin(val))]
    w_shared = fit_ridge(Xt, yt, torch.full((Xt.shape[1],), float(best), dtype=torch.float64))

    # Hypergradient descent on per-feature log-penalties, started from the best shared penalty.
    log_pen = torch.full((Xt.shape[1],), float(torch.log(best)), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([log_pen], lr=args.lr)
    solver = solvers.ConjugateGradient(iterations=50)
    for _ in range(args.steps):
        w = fit_ridge(Xt, yt, torch.exp(log_pen.detach()))
        grads = hyperlevel.hypergradient(outer_loss, inner_loss, {"log_pen": log_pen}, {"w": w}, solver)
        opt.zero_grad()
        log_pen.grad = grads["log_pen"]
        opt.step()
    w_per_feature = fit_ridge(Xt, yt, torch.exp(log_pen.detach()))

    results = {
        "shared_penalty": float(best),
        "shared_val_mse": mse(Xv, yv, w_shared),
        "shared_test_mse": mse(Xs, ys, w_shared),
        "per_feature_val_mse": mse(Xv, yv, w_per_feature),
        "per_feature_test_mse": mse(Xs, ys, w_per_feature),
    }
    print("Ridge on scikit-learn's diabetes data (standardised target; MSE, lower is better)")
    print(f"{'':28s}{'validation':>12s}{'test':>10s}")
    print(f"{'best shared penalty':28s}{results['shared_val_mse']:12.4f}{results['shared_test_mse']:10.4f}"
          f"   (penalty {float(best):.3g})")
    print(f"{'per-feature (hypergradient)':28s}{results['per_feature_val_mse']:12.4f}"
          f"{results['per_feature_test_mse']:10.4f}")
    print("learned penalties:", " ".join(f"{p:.3g}" for p in torch.exp(log_pen.detach()).tolist()))
    return results


if __name__ == "__main__":
    main()
