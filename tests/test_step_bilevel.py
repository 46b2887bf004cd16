"""BilevelStep on the ridge problem: one step moves the outer parameters by exactly lr x the closed-form
hypergradient (SGD), then the inner parameters by one SGD step at the new outer point."""

import math

import torch

import hyperlevel as hl
from hyperlevel.steps import BilevelStep, StepContext
from hyperlevel.training import StepRecord


def _ridge_problem(prob, lam, w, outer_lr, inner_lr):
    return hl.Problem([
        hl.Level("outer", {"lam": lam}, lambda P, _: prob.outer(P["outer"], P["inner"]), hl.sgd(outer_lr)),
        hl.Level("inner", {"w": w}, lambda P, _: prob.inner(P["outer"], P["inner"]), hl.sgd(inner_lr)),
    ])


def _context(problem, names, reduce=None):
    optimizers = {n: problem[n].optimizer(list(problem[n].named_parameters().values())) for n in names}
    return StepContext(problem, optimizers, reduce)


def test_bilevel_step_moves_outer_by_lr_times_the_exact_hypergradient(ridge):
    prob, o, w = ridge
    lam, w_star = o["lam"].clone(), w["w"].clone()
    outer_lr, inner_lr = 0.05, 1e-3
    problem = _ridge_problem(prob, lam.clone(), w_star.clone(), outer_lr, inner_lr)
    phase = hl.Phase("b", outer=["outer"], inner=["inner"], solver=hl.solvers.Dense(), inner_steps=1)
    record = StepRecord(step=0, phase="b", phase_step=0)
    BilevelStep(phase)(_context(problem, ["outer", "inner"]), record)

    exact = prob.exact()  # closed form at (lam, w*(lam))
    lam_new = lam - outer_lr * exact
    torch.testing.assert_close(problem["outer"].params["lam"].detach(), lam_new, rtol=1e-10, atol=1e-12)
    # the inner step comes after the outer one (Alg. 1): its gradient is taken at the new lam, where w* is no
    # longer optimal: grad_w G(lam_new, w*) = (exp(lam_new) - exp(lam)) * w*
    w_new = w_star - inner_lr * (torch.exp(lam_new) - torch.exp(lam)) * w_star
    torch.testing.assert_close(problem["inner"].params["w"].detach(), w_new, rtol=1e-10, atol=1e-12)
    assert math.isclose(record.hypergradient_norm["outer"], float(exact.norm()), rel_tol=1e-10)
    assert math.isclose(record.outer_loss, float(prob.outer({"lam": lam}, {"w": w_star})), rel_tol=1e-12)
    assert math.isclose(record.inner_loss, float(prob.inner({"lam": lam_new}, {"w": w_star})), rel_tol=1e-12)
    assert record.solver_info is not None and record.solver_info.converged


def test_bilevel_step_with_zero_inner_steps_leaves_the_inner_level(ridge):
    prob, o, w = ridge
    problem = _ridge_problem(prob, o["lam"].clone(), w["w"].clone(), 0.05, 1e-3)
    phase = hl.Phase("b", outer=["outer"], inner=["inner"], solver=hl.solvers.Dense(), inner_steps=0)
    BilevelStep(phase)(_context(problem, ["outer", "inner"]), StepRecord(0, "b", 0))
    assert torch.equal(problem["inner"].params["w"].detach(), w["w"])
    assert not torch.equal(problem["outer"].params["lam"].detach(), o["lam"])


def test_bilevel_step_averages_through_the_reduce(ridge):
    """One process with an identity reduce: the same step, and the data-dependent quantities (here the inner
    step's gradient last) go through the reduce."""
    prob, o, w = ridge
    calls = []

    def reduce(t):
        calls.append(t.numel())
        return t

    problem = _ridge_problem(prob, o["lam"].clone(), w["w"].clone(), 0.05, 1e-3)
    phase = hl.Phase("b", outer=["outer"], inner=["inner"], solver=hl.solvers.Dense(), inner_steps=1)
    BilevelStep(phase)(_context(problem, ["outer", "inner"], reduce), StepRecord(0, "b", 0))
    torch.testing.assert_close(problem["outer"].params["lam"].detach(), o["lam"] - 0.05 * prob.exact(),
                               rtol=1e-10, atol=1e-12)
    assert calls and calls[-1] == w["w"].numel()  # the inner step's gradient went through the reduce
