import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def ridge():
    """The small ridge problem of ``_problems.Ridge`` at its inner solution: ``(problem, outer, inner)``."""
    from _problems import Ridge

    prob = Ridge.make()
    o, w = prob.params()
    return prob, o, w
