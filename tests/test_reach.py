"""The one well-posedness rule shared by ``nested_hypergradient`` and ``Problem.check_objectives``: the parameters of
level ``k`` must reach objective ``k`` or a lower one (``hyperlevel.validation.check_reach``)."""

import pytest
import torch

import hyperlevel as hl
from hyperlevel.errors import InvalidProblemError
from hyperlevel.validation import check_reach, gradients_by_group, used_names

NAMES = [["lam"], ["w", "spare"], ["z"]]


def describe(k, names):
    return f"level {k}: {names}"


def test_a_parameter_may_reach_its_level_only_through_a_lower_objective():
    # used[j][k]: names of level k that objective j depends on. lam appears only in objective 1 (a hyper-parameter);
    # w reaches objective 1 itself, spare only objective 2 (below it); z its own objective
    used = [[set(), {"w"}, {"z"}], [{"lam"}, {"w"}, set()], [set(), {"spare"}, {"z"}]]
    check_reach(used, NAMES, describe)


def test_reaching_only_a_higher_objective_is_not_enough():
    used = [[{"lam"}, {"w", "spare"}, {"z"}], [set(), {"w"}, set()], [set(), set(), {"z"}]]  # spare: objective 0 only
    with pytest.raises(InvalidProblemError, match=r"^level 1: \['spare'\]$"):
        check_reach(used, NAMES, describe)
    check_reach(used, NAMES, describe, every_parameter=False)  # per level: w reaches, so level 1 is fine
    used[1][1] = set()
    with pytest.raises(InvalidProblemError, match=r"^level 1: \['w', 'spare'\]$"):
        check_reach(used, NAMES, describe, every_parameter=False)


def test_the_top_level_may_reach_any_objective_and_the_first_failing_level_is_named():
    used = [[set(), set(), set()], [set(), {"w", "spare"}, set()], [{"lam"}, set(), set()]]  # z reaches nothing
    with pytest.raises(InvalidProblemError, match=r"^level 2: \['z'\]$"):
        check_reach(used, NAMES, describe)


def test_gradients_by_group_splits_one_backward_pass():
    a = {"x": torch.tensor([1.0, 2.0], requires_grad=True), "unused": torch.ones(1, requires_grad=True)}
    b = {"y": torch.tensor(3.0, requires_grad=True)}
    value = (a["x"] ** 2).sum() * b["y"]
    grads = gradients_by_group(value, [a, b])
    assert torch.equal(grads[0][0], torch.tensor([6.0, 12.0])) and grads[0][1] is None
    assert torch.equal(grads[1][0], torch.tensor(5.0))
    assert used_names([a, b], grads) == [{"x"}, {"y"}]
    assert gradients_by_group(torch.tensor(1.0), [a, b]) == [[None, None], [None]]  # no graph: nothing used


def _problem(calls):
    def objective(name, expr):
        def f(P, _):
            calls[name] += 1
            return expr(P)
        return f

    a = {"lam": torch.tensor(1.0)}
    b = {"w": torch.tensor(2.0), "spare": torch.tensor(0.5)}  # spare is used by no objective
    return hl.Problem([
        hl.Level("a", a, objective("a", lambda P: (P["b"]["w"] - 3) ** 2)),
        hl.Level("b", b, objective("b", lambda P: P["a"]["lam"] * P["b"]["w"] ** 2 - P["b"]["w"])),
    ])


def test_problem_checks_per_level_and_evaluates_each_objective_once():
    calls = {"a": 0, "b": 0}
    problem = _problem(calls)
    problem.check_objectives({"a": None, "b": None})  # level b's w reaches its objective: spare is tolerated
    assert calls == {"a": 1, "b": 1}


def test_nested_hypergradient_checks_every_parameter_with_the_same_rule():
    problem = _problem({"a": 0, "b": 0})
    params = [{k: t.double() for k, t in p.items()} for p in problem.parameters().values()]
    losses = [lambda a, b: (b["w"] - 3) ** 2, lambda a, b: a["lam"] * b["w"] ** 2 - b["w"]]
    with pytest.raises(InvalidProblemError, match=r"params\[1\] entries \['spare'\] do not influence losses\[1\]"):
        hl.nested_hypergradient(losses, params)
