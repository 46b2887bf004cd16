"""Issue 13: the joint nested method measures every lower level's total stationarity and warns when a level is off
its nested best response (hyperlevel/joint.py, module docstring), instead of returning a wrong number silently."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

from hyperlevel import InnerOptimalityError, InnerOptimalityWarning, nested_hypergradient
from hyperlevel.optimality import STATIONARITY_TOL
from hyperlevel.solvers import ConjugateGradient, MinimalResidual

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_nested import Case, flat_top, rel  # noqa: E402

JOINT = [None, MinimalResidual()]  # None: the default, Dense for this size
IDS = ["default-dense", "minres"]


def minres(policy):
    """MinimalResidual with a stationarity policy (its constructor does not take one; the attribute is read)."""
    solver = MinimalResidual()
    solver.on_nonstationary = policy
    return solver


@pytest.fixture(scope="module")
def three():
    return Case([3, 4, 5])


def off(case, level, shift=0.5):
    xs = list(case.xs)
    xs[level] = xs[level] + shift
    return case.to_params(xs)


@pytest.mark.parametrize("solver", JOINT, ids=IDS)
def test_exact_nested_solution_is_stationary_and_silent(three, solver):
    with warnings.catch_warnings():
        warnings.simplefilter("error", InnerOptimalityWarning)
        g, info = nested_hypergradient(three.losses, three.params, solver, return_info=True)
    assert info.method == "joint" and rel(flat_top(g), three.reference) < 1e-12
    assert [lv.level for lv in info.levels] == [1, 2]
    assert all(lv.stationarity < 1e-8 for lv in info.levels) and info.stationarity < 1e-8
    assert all(lv.inner_gradient_norm < 1e-8 for lv in info.levels)


@pytest.mark.parametrize("solver", JOINT, ids=IDS)
def test_middle_level_off_its_response_warns_naming_it(three, solver):
    params = off(three, 1)
    with pytest.warns(InnerOptimalityWarning, match=r"level 1 \(params\[1\].*solve_inner"), \
            warnings.catch_warnings():
        warnings.filterwarnings("ignore", "nested .*: level 2", InnerOptimalityWarning)
        g, info = nested_hypergradient(three.losses, params, solver, return_info=True)
    level1 = info.levels[0]
    assert level1.stationarity > 1.0 and level1.inner_gradient_norm > 0.1
    assert info.stationarity == max(lv.stationarity for lv in info.levels) > STATIONARITY_TOL
    # the number it warns about really is wrong: the hypergradient moved away from the one at the solution
    assert rel(flat_top(g), three.reference) > 1e-2
    # the same level's total gradient as the chord method's (an independent computation through the responses)
    chord = nested_hypergradient(three.losses, params, ConjugateGradient(iterations=50, on_nonstationary="ignore"),
                                 return_info=True)[1]
    assert level1.inner_gradient_norm == pytest.approx(chord.levels[0].inner_gradient_norm, rel=1e-8)


@pytest.mark.parametrize("solver", JOINT, ids=IDS)
def test_bottom_level_off_warns_and_matches_the_chord_figure(three, solver):
    params = off(three, 2)
    with pytest.warns(InnerOptimalityWarning, match=r"level 2 \(params\[2\]"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "nested .*: level 1", InnerOptimalityWarning)
        _, info = nested_hypergradient(three.losses, params, solver, return_info=True)
    chord = nested_hypergradient(three.losses, params, ConjugateGradient(iterations=50, on_nonstationary="ignore"),
                                 return_info=True)[1]
    # for the bottom level both methods use its own Hessian: the same figure
    assert info.levels[1].stationarity == pytest.approx(chord.levels[1].stationarity, rel=1e-10)
    assert info.levels[1].stationarity > 1.0


def test_policy_raise_and_ignore(three):
    params = off(three, 1)
    with pytest.raises(InnerOptimalityError, match="level 1"):
        nested_hypergradient(three.losses, params, minres("raise"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", InnerOptimalityWarning)
        _, info = nested_hypergradient(three.losses, params, minres("ignore"),
                                       return_info=True)
    assert info.levels[0].stationarity > 1.0  # still measured and reported in the info


def test_stationarity_is_invariant_to_rescaling_a_loss(three):
    params = off(three, 1, shift=0.1)
    base = nested_hypergradient(three.losses, params, minres("ignore"),
                                return_info=True)[1]
    scaled = list(three.losses)
    scaled[1] = lambda *ds: 7.0 * three.losses[1](*ds)
    scaled[2] = lambda *ds: 0.25 * three.losses[2](*ds)
    info = nested_hypergradient(scaled, params, minres("ignore"), return_info=True)[1]
    for a, b in zip(base.levels, info.levels, strict=True):
        assert a.stationarity == pytest.approx(b.stationarity, rel=1e-8)
