"""Bilevel algorithms (hyperlevel.algorithms, hyperlevel.optimize): registry, oracle counts, the quadratic target,
stochastic batches, and the engine phase with exact resume."""

import pytest
import torch

import hyperlevel as hl
from hyperlevel.algorithms import available, get
from hyperlevel.errors import InvalidProblemError

METHODS = ["bome", "f2sa", "implicit", "meso", "pgdo", "soba", "vfo"]


def quadratic(d: int = 4, p: int = 2, mu: float = 0.1, seed: int = 0):
    """Inner 0.5 y'Ay - y'Bx (eigenvalues of A evenly in [1, 10]), outer 0.5 |y - c|^2 + 0.5 mu |x|^2.

    y*(x) = A^-1 B x, so the hyper-objective is quadratic and x* solves (mu I + B'A^-2 B) x = B'A^-1 c.
    """
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    A = q @ torch.diag(torch.linspace(1, 10, d, dtype=torch.float64)) @ q.T
    B = torch.randn(d, p, generator=g, dtype=torch.float64) / d**0.5
    c = torch.randn(d, generator=g, dtype=torch.float64)
    A_inv = torch.linalg.inv(A)
    x_star = torch.linalg.solve(mu * torch.eye(p, dtype=torch.float64) + B.T @ A_inv @ A_inv @ B, B.T @ A_inv @ c)

    def outer(x, y):
        return 0.5 * ((y["y"] - c) ** 2).sum() + 0.5 * mu * (x["x"] ** 2).sum()

    def inner(x, y):
        return 0.5 * y["y"] @ A @ y["y"] - y["y"] @ B @ x["x"]

    start = ({"x": torch.zeros(p, dtype=torch.float64)}, {"y": torch.zeros(d, dtype=torch.float64)})
    return outer, inner, start, x_star


def rel_error(x, x_star) -> float:
    return float((x["x"] - x_star).norm() / x_star.norm())


def test_registry_lists_every_method_and_names_the_known_ones_on_errors():
    assert available() == METHODS
    outer, inner, (x0, y0), _ = quadratic()
    with pytest.raises(InvalidProblemError, match=r"unknown method 'nope'; available: \['bome', 'f2sa'"):
        hl.optimize(outer, inner, x0, y0, method="nope", steps=1)
    with pytest.raises(InvalidProblemError, match=r"no option\(s\) \['lam'\].*inner_steps, lam_growth"):
        hl.optimize(outer, inner, x0, y0, method="f2sa", steps=1, lam=3.0)
    with pytest.raises(InvalidProblemError, match="outer_lr must be a positive number"):
        get("soba", outer_lr=-1.0, inner_lr=0.1)
    with pytest.raises(InvalidProblemError, match="'inner_steps' must be a positive integer"):
        get("bome", outer_lr=0.1, inner_lr=0.1, inner_steps=0)
    with pytest.raises(InvalidProblemError, match="unknown solver 'nope'"):
        get("implicit", outer_lr=0.1, inner_lr=0.1, solver="nope")
    assert hl.algorithms.defaults("bome") == {"inner_steps": 50, "eta": 0.5, "warm_start": False, "y_scale": 0.1}


@pytest.mark.parametrize(
    ("method", "options", "gradients", "hvps"),
    [
        ("bome", {"inner_steps": 3}, 3 + 3, 0),
        ("vfo", {"inner_steps": 2, "pre_steps": 1}, 1 + 2 + 3, 0),
        ("f2sa", {"inner_steps": 2}, 3 * 2 + 3, 0),
        ("pgdo", {"inner_steps": 2}, 2 + 2 + 3, 0),
        ("meso", {}, 4, 0),
        ("soba", {}, 2, 1),
    ],
)
def test_oracle_calls_per_step_are_as_documented(method, options, gradients, hvps):
    outer, inner, (x0, y0), _ = quadratic()
    r = hl.optimize(outer, inner, x0, y0, method=method, steps=3, record_every=1, **options)
    assert [h.step for h in r.history] == [0, 1, 2, 3]
    assert [h.gradient_calls for h in r.history] == [0, gradients, 2 * gradients, 3 * gradients]
    assert [h.hvp_calls for h in r.history] == [0, hvps, 2 * hvps, 3 * hvps]
    assert all(a.seconds <= b.seconds for a, b in zip(r.history, r.history[1:], strict=False))
    assert x0["x"].abs().sum() == 0 and y0["y"].abs().sum() == 0  # the start is never modified


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_every_method_reaches_the_closed_form_solution_of_the_quadratic(method):
    """The issue's target: |x - x*| / |x*| <= 1e-2 within 5,000 steps at outer_lr=0.05, inner_lr=0.1, defaults."""
    outer, inner, (x0, y0), x_star = quadratic()
    r = hl.optimize(outer, inner, x0, y0, method=method, steps=5000, outer_lr=0.05, inner_lr=0.1, record_every=25,
                    until=lambda x, y: rel_error(x, x_star) <= 1e-2)
    assert rel_error(r.outer, x_star) <= 1e-2, (method, r.history[-1])
    assert r.history[-1].step <= 5000


def test_implicit_with_an_exact_solver_is_gradient_descent_on_the_hyper_objective():
    """From the exact inner solution, one step equals x - lr * dF/dx with the closed-form hypergradient."""
    outer, inner, _, _ = quadratic()
    A, B, c = _matrices()  # the same matrices as quadratic() (same seed and draws)
    x = {"x": torch.tensor([0.7, -1.3], dtype=torch.float64)}
    y = {"y": torch.linalg.solve(A, B @ x["x"])}
    r = hl.optimize(outer, inner, x, y, method="implicit", steps=1, outer_lr=0.05, inner_lr=0.1)
    hypergradient = 0.1 * x["x"] + B.T @ torch.linalg.solve(A, y["y"] - c)
    torch.testing.assert_close(r.outer["x"], x["x"] - 0.05 * hypergradient, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(r.inner["y"], y["y"], rtol=1e-12, atol=1e-12)  # the inner steps stay put


def _matrices():
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))
    A = q @ torch.diag(torch.linspace(1, 10, 4, dtype=torch.float64)) @ q.T
    B = torch.randn(4, 2, generator=g, dtype=torch.float64) / 2.0
    c = torch.randn(4, generator=g, dtype=torch.float64)
    return A, B, c


def test_minibatches_are_drawn_once_per_step_and_passed_to_the_losses():
    _, _, (x0, y0), _ = quadratic()
    A, B, c = _matrices()
    seen = []

    def outer(x, y, batch):
        seen.append(("outer", batch))
        return 0.5 * batch * ((y["y"] - c) ** 2).sum() + 0.05 * (x["x"] ** 2).sum()

    def inner(x, y, batch):
        seen.append(("inner", batch))
        return 0.5 * y["y"] @ A @ y["y"] - batch * y["y"] @ B @ x["x"]

    hl.optimize(outer, inner, x0, y0, method="soba", steps=3, record_every=1,
                outer_data=[1.0, 2.0], inner_data=[3.0])
    outer_batches = [b for w, b in seen if w == "outer"]
    inner_batches = [b for w, b in seen if w == "inner"]
    assert outer_batches == [1.0, 2.0, 1.0]  # one outer gradient per SOBA step, the iterable restarts
    assert inner_batches == [3.0, 3.0, 3.0]


def _levels(x0, y0):
    A, B, c = _matrices()
    up = hl.Level("up", {"x": x0["x"].clone()}, lambda P, _: 0.5 * ((P["low"]["y"] - c) ** 2).sum()
                  + 0.05 * (P["up"]["x"] ** 2).sum())
    low = hl.Level("low", {"y": y0["y"].clone()}, lambda P, _: 0.5 * P["low"]["y"] @ A @ P["low"]["y"]
                   - P["low"]["y"] @ B @ P["up"]["x"])
    return hl.Problem([up, low]), up, low


@pytest.mark.parametrize("method", ["f2sa", "soba"])
def test_engine_phase_with_a_method_matches_optimize_and_resumes_exactly(tmp_path, method):
    A, B, c = _matrices()
    x0 = {"x": torch.tensor([0.3, -0.2], dtype=torch.float64)}
    y0 = {"y": torch.zeros(4, dtype=torch.float64)}

    def outer(x, y):
        return 0.5 * ((y["y"] - c) ** 2).sum() + 0.05 * (x["x"] ** 2).sum()

    def inner(x, y):
        return 0.5 * y["y"] @ A @ y["y"] - y["y"] @ B @ x["x"]

    reference = hl.optimize(outer, inner, x0, y0, method=method, steps=6, outer_lr=0.05, inner_lr=0.1)

    def phase():
        return hl.Phase("bilevel", outer=["up"], inner=["low"], max_steps=6,
                        method=get(method, outer_lr=0.05, inner_lr=0.1))

    problem, up, low = _levels(x0, y0)
    hl.Engine(problem, [phase()]).run()
    torch.testing.assert_close(up.params["x"].detach(), reference.outer["x"], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(low.params["y"].detach(), reference.inner["y"], rtol=1e-12, atol=1e-14)

    problem, up, low = _levels(x0, y0)
    assert hl.Engine(problem, [phase()], checkpoint_dir=tmp_path).run(stop_after=4).status == "stopped"
    problem, up, low = _levels({"x": torch.ones(2, dtype=torch.float64)}, y0)  # restored from the checkpoint
    assert hl.Engine(problem, [phase()], checkpoint_dir=tmp_path).run(resume=tmp_path / "last.pt").steps == 6
    torch.testing.assert_close(up.params["x"].detach(), reference.outer["x"], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(low.params["y"].detach(), reference.inner["y"], rtol=1e-12, atol=1e-14)


def test_phase_rejects_a_method_that_is_not_an_algorithm():
    with pytest.raises(InvalidProblemError, match="method must be a hyperlevel.algorithms.Algorithm"):
        hl.Phase("p", outer=["a"], inner=["b"], method="bome")
    with pytest.raises(InvalidProblemError, match="needs outer levels"):
        hl.Phase("p", outer=[], inner=["b"], method=get("bome", outer_lr=0.1, inner_lr=0.1))


@pytest.mark.parametrize("method", ["f2sa", "pgdo", "meso", "bome", "soba"])
def test_an_outer_loss_of_the_inner_variables_only_is_accepted(method):
    """Hyper-parameter problems (hyper-cleaning): F depends on x only through y*(x); its d_x F is zero."""
    A, B, c = _matrices()

    def outer(x, y):
        return 0.5 * ((y["y"] - c) ** 2).sum()

    def inner(x, y):
        return 0.5 * y["y"] @ A @ y["y"] - y["y"] @ B @ x["x"]

    x0 = {"x": torch.tensor([0.5, 0.5], dtype=torch.float64)}
    r = hl.optimize(outer, inner, x0, {"y": torch.zeros(4, dtype=torch.float64)}, method=method, steps=2)
    assert torch.isfinite(r.outer["x"]).all() and not torch.equal(r.outer["x"], x0["x"])
    with pytest.raises(InvalidProblemError, match="does not depend on any parameter"):
        hl.optimize(lambda x, y: torch.tensor(1.0, dtype=torch.float64), inner, x0,
                    {"y": torch.zeros(4, dtype=torch.float64)}, method="bome", steps=1)
