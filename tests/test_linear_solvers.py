"""The matrix-free linear solvers (``conjugate_gradient``, ``neumann_series``) against ``torch.linalg.solve``.

Random symmetric matrices with chosen eigenvalues, float64: accuracy, warm starts, indefinite matrices, and the
number of products each solver spends (counted by the operator itself, not taken from the solver's report).
"""

import pytest
import torch

from hyperlevel.errors import SolverDivergedError
from hyperlevel.solvers import conjugate_gradient, neumann_series

N = 40


def symmetric(eigenvalues, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``Q diag(eigenvalues) Q^T`` with a random orthogonal ``Q``, and ``Q`` (its columns are the eigenvectors)."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=g, dtype=torch.float64))
    lam = torch.as_tensor(eigenvalues, dtype=torch.float64)
    return (q * lam) @ q.T, q


def rhs(seed: int = 1) -> torch.Tensor:
    return torch.randn(N, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


class Counted:
    """``v -> A v`` that counts its calls."""

    def __init__(self, a: torch.Tensor):
        self.a, self.calls = a, 0

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.a @ v


SPD = torch.linspace(1.0, 10.0, N).tolist()  # condition number 10


def relative_error(x: torch.Tensor, exact: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(x - exact) / torch.linalg.vector_norm(exact))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_conjugate_gradient_matches_linalg_solve_and_counts_one_product_per_iteration(seed):
    a, _ = symmetric(SPD, seed)
    b = rhs(seed + 10)
    op = Counted(a)
    x, info = conjugate_gradient(op, b, iterations=200, tol=1e-12)
    assert relative_error(x, torch.linalg.solve(a, b)) < 1e-10
    assert info.converged and not info.indefinite and info.message == ""
    # the reported residual is the true one (CG's recurrence tracks it; rounding only)
    true_residual = float(torch.linalg.vector_norm(a @ x - b) / torch.linalg.vector_norm(b))
    assert info.residual <= 1e-12 and true_residual < 1e-11
    assert op.calls == info.matvecs == info.iterations
    # kappa = 10: the CG bound 2 ((sqrt(k) - 1) / (sqrt(k) + 1))^k <= 1e-12 (in the A-norm) needs k ~ 40
    assert info.iterations <= N


def test_conjugate_gradient_needs_one_iteration_per_distinct_eigenvalue():
    a, _ = symmetric([1.0] * 20 + [4.0] * 10 + [9.0] * 10)
    op = Counted(a)
    x, info = conjugate_gradient(op, rhs(), iterations=50, tol=1e-10)
    assert info.iterations == 3 and op.calls == 3  # Krylov space of dimension 3 holds the solution
    assert relative_error(x, torch.linalg.solve(a, rhs())) < 1e-10


def test_conjugate_gradient_warm_start_takes_fewer_iterations_and_one_more_product():
    a, _ = symmetric(SPD, seed=3)
    b = rhs(4)
    exact = torch.linalg.solve(a, b)
    cold_op = Counted(a)
    _, cold = conjugate_gradient(cold_op, b, iterations=200, tol=1e-10)
    # a start 1e-4 away (relative): the initial residual is 1e-4 smaller, so about a quarter of the iterations
    near = exact + 1e-4 * torch.linalg.vector_norm(exact) * rhs(5) / torch.linalg.vector_norm(rhs(5))
    warm_op = Counted(a)
    x, warm = conjugate_gradient(warm_op, b, iterations=200, tol=1e-10, x0=near)
    assert relative_error(x, exact) < 1e-9 and warm.converged
    assert warm.iterations < cold.iterations * 0.75, (warm.iterations, cold.iterations)
    assert warm_op.calls == warm.matvecs == warm.iterations + 1  # the initial residual b - A x0 costs a product
    # started at the solution: no iteration, only the residual check
    exact_op = Counted(a)
    x, info = conjugate_gradient(exact_op, b, iterations=200, tol=1e-10, x0=exact)
    assert info.iterations == 0 and exact_op.calls == info.matvecs == 1 and info.converged
    assert torch.equal(x, exact)


def test_conjugate_gradient_stops_at_negative_curvature_with_its_value():
    lam = [-2.0] + SPD[1:]
    a, q = symmetric(lam, seed=6)
    b = 3.0 * q[:, 0]  # along the negative eigenvector: p^T A p = -2 * 9 at the first iteration
    op = Counted(a)
    x, info = conjugate_gradient(op, b, iterations=100, tol=1e-10)
    assert info.indefinite and not info.converged and info.iterations == 1 and op.calls == 1
    assert "non-positive curvature" in info.message and f"{-18.0:.3e}" in info.message
    assert "not positive definite" in info.message
    assert torch.equal(x, torch.zeros_like(b))  # no step taken along the bad direction


def test_conjugate_gradient_detects_a_negative_definite_matrix_on_any_right_hand_side():
    a, _ = symmetric([-v for v in SPD], seed=7)
    for seed in range(3):
        _, info = conjugate_gradient(Counted(a), rhs(seed), iterations=100, tol=1e-10)
        assert info.indefinite and info.iterations == 1 and "not positive definite" in info.message


def test_conjugate_gradient_zero_right_hand_side_costs_nothing():
    a, _ = symmetric(SPD)
    op = Counted(a)
    x, info = conjugate_gradient(op, torch.zeros(N, dtype=torch.float64), iterations=10, tol=1e-10)
    assert op.calls == 0 and info.iterations == 0 and info.converged and torch.equal(x, torch.zeros(N, dtype=x.dtype))


def test_neumann_series_is_the_truncated_series_in_closed_form():
    """``K`` terms give exactly ``(I - (I - alpha A)^(K+1)) A^-1 b``, for ``K`` products plus one residual."""
    a, _ = symmetric(SPD, seed=8)
    b, alpha, k = rhs(9), 0.1, 7
    op = Counted(a)
    x, info = neumann_series(op, b, iterations=k, alpha=alpha, tol=1e-14)
    m = torch.eye(N, dtype=torch.float64) - alpha * a
    expected = (torch.eye(N, dtype=torch.float64) - torch.linalg.matrix_power(m, k + 1)) @ torch.linalg.solve(a, b)
    assert relative_error(x, expected) < 1e-12
    assert info.iterations == k and op.calls == info.matvecs == k + 1 and not info.converged
    true_residual = float(torch.linalg.vector_norm(a @ x - b) / torch.linalg.vector_norm(b))
    assert info.residual == pytest.approx(true_residual, rel=1e-12)


def test_neumann_series_matches_linalg_solve_and_stops_early():
    a, _ = symmetric(SPD, seed=10)
    b = rhs(11)
    op = Counted(a)
    # rate max |1 - lambda / 10| = 0.9: a term falls below 1e-11 ||b|| after about log(1e-11) / log(0.9) = 240 terms
    x, info = neumann_series(op, b, iterations=1000, alpha=0.1, tol=1e-11)
    assert relative_error(x, torch.linalg.solve(a, b)) < 1e-9
    assert info.converged and info.residual < 1e-9
    assert 200 <= info.iterations <= 260 and info.iterations % 10 == 0  # checked every 10 terms
    assert op.calls == info.matvecs == info.iterations + 1


def test_neumann_series_with_too_large_a_step_names_lambda_max():
    a, _ = symmetric(SPD, seed=12)  # lambda_max = 10: alpha must stay below 0.2
    op = Counted(a)
    # the advice comes from the curvature along the diverging term: lambda_max = 10 to 4 digits
    with pytest.raises(SolverDivergedError, match=r"exceeds 2 / lambda_max.*about (9\.99\de\+00|1\.000e\+01)\): "
                                                  r"lower alpha below 2\.00\de-01"):
        neumann_series(op, rhs(13), iterations=2000, alpha=0.25, tol=1e-10)


def test_neumann_series_on_an_indefinite_matrix_says_no_step_helps():
    lam = torch.tensor([-1.0] + SPD[1:], dtype=torch.float64)  # |1 - alpha lambda| = 1.05 on the negative one
    a, q = symmetric(lam.tolist(), seed=14)
    b, alpha = rhs(15), 0.05
    op = Counted(a)
    with pytest.raises(SolverDivergedError, match=r"negative curvature -1\.000e\+00.*no alpha makes the series"):
        neumann_series(op, b, iterations=2000, alpha=alpha, tol=1e-10)
    # the k-th term is (I - alpha A)^k b; it is checked every 10 terms and refused once above 1e8 ||b||
    c2 = (q.T @ b) ** 2
    norms = [float(torch.sqrt(((1 - alpha * lam) ** (2 * k) * c2).sum())) for k in range(10, 2001, 10)]
    first = 10 * (1 + next(i for i, v in enumerate(norms) if v > 1e8 * float(torch.linalg.vector_norm(b))))
    assert op.calls == first + 1  # one more product measures the curvature along the diverging term
