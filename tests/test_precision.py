"""Mixed precision (hyperlevel.precision): autocast forward passes, float32 solves, loss scaling."""

import pytest
import torch
from _problems import Logistic, Ridge, rel

import hyperlevel as hl
from hyperlevel import solvers
from hyperlevel.errors import InvalidProblemError
from hyperlevel.precision import Precision


def _float32(cls):
    """The float64 closed-form problem's data and point, in float32 (same numbers)."""
    p64 = cls.make()
    p = cls(*(t.float() for t in (p64.X, p64.y, p64.Xv, p64.yv, p64.lam)))
    o, w = p64.params()
    return p, {k: v.float() for k, v in o.items()}, {k: v.float() for k, v in w.items()}


SOLVERS = [
    lambda: solvers.ConjugateGradient(50, on_nonconvergence="ignore"),
    lambda: solvers.Neumann(300, 0.005, on_nonconvergence="ignore"),
    lambda: solvers.FiniteDifference(1e-2),
    lambda: solvers.Unrolled(20, 1e-2),
    lambda: solvers.Unrolled(20, 1e-2, checkpoint_every=6),
]


@pytest.mark.parametrize("make_solver", SOLVERS)
def test_loss_scaling_is_undone_exactly_for_every_solver(make_solver):
    """float32 'precision' with a loss scale: no autocast, only the scaling algebra (inner step sizes divided by
    the inner scale, the result by the outer scale): the result must equal the unscaled one."""
    p, o, w = _float32(Logistic)
    plain, info0 = hl.hypergradient(p.outer, p.inner, o, w, make_solver(), return_info=True)
    scaled, info = hl.hypergradient(p.outer, p.inner, o, w, make_solver(), return_info=True,
                                    precision=Precision("float32", loss_scale=64.0))
    assert rel(scaled["lam"], plain["lam"]) < 1e-5 and info.extra["loss_scale"] == 64.0
    assert info.outer_loss == pytest.approx(info0.outer_loss, rel=1e-6)


@pytest.mark.parametrize("cls", [Ridge, Logistic])
@pytest.mark.parametrize("dtype,tol", [("bfloat16", 4e-2), ("float16", 1e-2)])
@pytest.mark.parametrize("make_solver", SOLVERS[:4])
def test_autocast_accuracy_on_closed_form_problems(cls, dtype, tol, make_solver):
    p, o, w = _float32(cls)
    ref = hl.hypergradient(p.outer, p.inner, o, w, make_solver())["lam"]
    g, info = hl.hypergradient(p.outer, p.inner, o, w, make_solver(), precision=dtype, return_info=True)
    assert g["lam"].dtype == torch.float32 and torch.isfinite(g["lam"]).all()
    err = rel(g["lam"], ref)
    assert 1e-7 < err < tol  # lower precision really was used, and costs little
    assert info.extra["loss_scale"] == (1.0 if dtype == "bfloat16" else pytest.approx(info.extra["loss_scale"]))


def test_float16_scale_backs_off_on_overflow():
    p, o, w = _float32(Ridge)
    ref = hl.hypergradient(p.outer, p.inner, o, w, solvers.ConjugateGradient(50))["lam"]
    g, info = hl.hypergradient(p.outer, p.inner, o, w, solvers.ConjugateGradient(50, on_nonconvergence="ignore"),
                               precision=Precision("float16", loss_scale=2.0**20), return_info=True)
    assert info.extra["loss_scale"] < 2.0**20 and rel(g["lam"], ref) < 1e-2


def test_precision_needs_float32_parameters_and_a_known_dtype():
    prob = Ridge.make()
    with pytest.raises(InvalidProblemError, match="float32"):
        hl.hypergradient(prob.outer, prob.inner, *prob.params(), precision="bfloat16")
    with pytest.raises(ValueError, match="precision dtype"):
        Precision("int8")
    with pytest.raises(InvalidProblemError, match="float32"):
        hl.Level("a", {"x": torch.ones(2, dtype=torch.float64)}, lambda P, _: P["a"]["x"].sum(), precision="float16")


def _engine_run(precision, steps=4):
    g = torch.Generator().manual_seed(0)
    X, Xv = torch.randn(40, 5, generator=g), torch.randn(30, 5, generator=g)
    y, yv = X @ torch.ones(5) + 0.1 * torch.randn(40, generator=g), Xv @ torch.ones(5)
    lam, w = {"lam": torch.zeros(5)}, {"w": torch.zeros(5)}
    problem = hl.Problem([
        hl.Level("outer", lam, lambda P, _: ((Xv @ P["inner"]["w"] - yv) ** 2).mean(), optimizer=hl.sgd(0.5),
                 precision=precision),
        hl.Level("inner", w, lambda P, _: ((X @ P["inner"]["w"] - y) ** 2).mean()
                 + (torch.exp(P["outer"]["lam"]) * P["inner"]["w"] ** 2).mean(), optimizer=hl.sgd(0.2),
                 precision=precision),
    ])
    phase = hl.Phase("p", outer=["outer"], inner=["inner"], max_steps=steps, inner_steps=3,
                     solver=solvers.ConjugateGradient(20, on_nonconvergence="ignore"))
    hl.Engine(problem, [phase]).run()
    return torch.cat([lam["lam"].detach(), w["w"].detach()])


def test_engine_levels_under_autocast_and_loss_scaling():
    plain = _engine_run(None)
    assert rel(_engine_run(Precision("float32", loss_scale=256.0)), plain) < 1e-5  # scaling undone exactly
    for dtype, tol in (("bfloat16", 5e-2), ("float16", 1e-2)):
        mixed = _engine_run(dtype)
        assert mixed.dtype == torch.float32 and 1e-7 < rel(mixed, plain) < tol
