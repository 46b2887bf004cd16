"""Tutorial: bring your own coupled restoration task.

A small denoiser is trained on noisy patches of a photo (lower level) while the weights of its three candidate
losses (L1, MSE, total variation) are learned on a held-out validation split (upper level). The user code
between the two ``---`` markers is the whole recipe: under 40 lines.

Run: ``python examples/byo_denoiser.py [--steps 150]`` (a few seconds on a laptop CPU).
"""

from __future__ import annotations

import argparse

import torch
from torch import nn


def noisy_patches(n: int, seed: int, size: int = 24, sigma: float = 0.1):
    """Pairs (noisy, clean) of grey patches from scikit-image's camera photo (ships with the package)."""
    from skimage.data import camera

    img = torch.tensor(camera(), dtype=torch.float32) / 255.0
    g = torch.Generator().manual_seed(seed)
    ys = torch.randint(0, img.shape[0] - size, (n,), generator=g)
    xs = torch.randint(0, img.shape[1] - size, (n,), generator=g)
    clean = torch.stack([img[y : y + size, x : x + size] for y, x in zip(ys.tolist(), xs.tolist())])[:, None]
    noisy = clean + sigma * torch.randn(clean.shape, generator=g)
    return [(noisy[i], clean[i]) for i in range(n)]


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description="learn a denoiser's loss weights on a validation split")
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    train, val, test = noisy_patches(512, 1), noisy_patches(128, 2), noisy_patches(128, 3)
    # --- user code: the whole two-level problem --------------------------------------------------
    import hyperlevel as hl

    net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 1, 3, padding=1))
    weights = hl.LossWeights(["l1", "mse", "tv"])

    def denoise(P, noisy):
        return noisy + torch.func.functional_call(net, P["denoiser"], (noisy,))

    def candidate_losses(P, batch):
        noisy, clean = batch
        out = denoise(P, noisy)
        tv = (out[..., 1:, :] - out[..., :-1, :]).abs().mean() + (out[..., 1:] - out[..., :-1]).abs().mean()
        return {"l1": (out - clean).abs().mean(), "mse": ((out - clean) ** 2).mean(), "tv": tv}

    def validation_mse(P, batch):  # what we really care about, on data the denoiser never trains on
        noisy, clean = batch
        return ((denoise(P, noisy) - clean) ** 2).mean()

    def training_loss(P, batch):
        return weights.total(P["weights"], candidate_losses(P, batch))

    problem = hl.Problem([
        hl.Level("weights", weights, validation_mse, hl.adam(1e-2), hl.ResumableLoader(val, 32, seed=1)),
        hl.Level("denoiser", net, training_loss, hl.adam(2e-3), hl.ResumableLoader(train, 32, seed=2)),
    ])
    phase = hl.Phase("learn weights", outer=["weights"], inner=["denoiser"],
                     solver=hl.solvers.FiniteDifference(inner_lr=2e-3), max_steps=args.steps)
    hl.Engine(problem, [phase]).run()
    # --- end of user code ------------------------------------------------------------------------
    with torch.no_grad():
        noisy = torch.stack([p[0] for p in test])
        clean = torch.stack([p[1] for p in test])
        mse_in = float(((noisy - clean) ** 2).mean())
        mse_out = float(((noisy + net(noisy) - clean) ** 2).mean())
    psnr = lambda m: 10 * torch.log10(torch.tensor(1.0 / m)).item()  # noqa: E731
    print(f"test PSNR: noisy {psnr(mse_in):.2f} dB -> denoised {psnr(mse_out):.2f} dB")
    print("learned weights s:", {k: round(v, 3) for k, v in weights.weights().items()})
    return {"psnr_noisy": psnr(mse_in), "psnr_denoised": psnr(mse_out), **weights.weights()}


if __name__ == "__main__":
    main()
