"""The ridge tutorial runs and its per-feature penalties beat the best shared one on validation."""

from examples.ridge_diabetes import main


def test_ridge_tutorial_learns_better_penalties(capsys):
    r = main(["--steps", "60"])
    assert r["per_feature_val_mse"] < r["shared_val_mse"]
    assert "per-feature (hypergradient)" in capsys.readouterr().out


def test_bring_your_own_denoiser_tutorial_learns_weights_and_denoises(capsys):
    from examples.byo_denoiser import main as byo

    r = byo(["--steps", "25"])
    assert r["psnr_denoised"] > r["psnr_noisy"] + 1.0
    assert any(abs(r[k] - 1.0) > 1e-3 for k in ("l1", "mse", "tv"))  # the weights moved
    assert "learned weights" in capsys.readouterr().out
