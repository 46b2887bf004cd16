"""The ridge tutorial runs and its per-feature penalties beat the best shared one on validation."""

from examples.ridge_diabetes import main


def test_ridge_tutorial_learns_better_penalties(capsys):
    r = main(["--steps", "60"])
    assert r["per_feature_val_mse"] < r["shared_val_mse"]
    assert "per-feature (hypergradient)" in capsys.readouterr().out
