"""InnerStep: a phase without outer levels is plain training, step for step the same as torch's optimizer."""

import math

import pytest
import torch

import hyperlevel as hl
from hyperlevel.steps import InnerStep, StepContext
from hyperlevel.training import StepRecord


def _data():
    g = torch.Generator().manual_seed(1)
    X, y = torch.randn(4, 8, 3, generator=g), torch.randn(4, 8, generator=g)
    return [(X[i], y[i]) for i in range(4)]


def _loss(a, b, batch):
    x, y = batch
    return ((x @ a * b - y) ** 2).mean()


@pytest.mark.parametrize("inner_steps, expected_steps", [(3, 3), (0, 1)])
def test_inner_step_equals_plain_adam_steps_on_the_same_batches(inner_steps, expected_steps):
    data = _data()
    a0, b0 = torch.randn(3), torch.tensor(0.7)
    pa, pb = {"a": a0.clone()}, {"b": b0.clone()}
    objective = lambda P, batch: _loss(P["first"]["a"], P["second"]["b"], batch)  # noqa: E731
    problem = hl.Problem([hl.Level("first", pa, objective, hl.adam(0.1), data=data),
                          hl.Level("second", pb, objective, hl.adam(0.1), data=data)])
    phase = hl.Phase("train", outer=[], inner=["first", "second"], inner_steps=inner_steps)
    optimizers = {n: problem[n].optimizer(list(problem[n].named_parameters().values())) for n in phase.inner}
    record = StepRecord(0, "train", 0)
    InnerStep(phase)(StepContext(problem, optimizers), record)

    a, b = a0.clone().requires_grad_(), b0.clone().requires_grad_()
    reference = torch.optim.Adam([a], lr=0.1), torch.optim.Adam([b], lr=0.1)
    for batch in data[:expected_steps]:
        loss = _loss(a, b, batch)
        ga, gb = torch.autograd.grad(loss, [a, b])
        a.grad, b.grad = ga, gb
        for opt in reference:
            opt.step()
    assert torch.equal(pa["a"].detach(), a.detach()) and torch.equal(pb["b"].detach(), b.detach())
    assert math.isclose(record.inner_loss, float(loss.detach()), rel_tol=1e-6)
    assert set(record.hypergradient_norm) == {"first", "second"}


def test_inner_step_uses_the_named_inner_objective_and_sgd():
    w = {"w": torch.tensor([1.0, -2.0])}
    problem = hl.Problem([
        hl.Level("hyper", {"h": torch.tensor(3.0)}, lambda P, _: (P["hyper"]["h"] * P["model"]["w"] ** 2).sum()),
        hl.Level("model", w, lambda P, _: (P["hyper"]["h"] * P["model"]["w"] ** 2).sum(), hl.sgd(0.1)),
    ])
    phase = hl.Phase("train", outer=[], inner=["model"], frozen=["hyper"])
    optimizers = {"model": problem["model"].optimizer([w["w"]])}
    InnerStep(phase)(StepContext(problem, optimizers), StepRecord(0, "train", 0))
    # gradient 2 h w = 6 w: w <- w - 0.1 * 6 w = 0.4 w
    torch.testing.assert_close(w["w"].detach(), torch.tensor([0.4, -0.8]))
