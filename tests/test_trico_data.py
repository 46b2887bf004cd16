"""Tests of the TriCo data: imageio, RELLISUR loader, synthetic pipeline, embedded set, splits, iterators."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from examples.trico.data import (
    DegradationParams,
    Rellisur,
    RellisurError,
    SyntheticPairs,
    collate_samples,
    degrade,
    embedded_dataset,
    parse_lllr_name,
    split_upper_lower,
)
from examples.trico.imageio import ImageReadError, read_image, write_image
from hyperlevel import ResumableLoader


def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _fake_rellisur(root, scenes=("00001", "00002"), evs=(2.5, 3.5, 5.0), lr=8, duplicates=True):
    """Write a tiny tree in the RELLISUR layout; the HR target of scene k is constant (k * 40)."""
    rng = np.random.default_rng(0)
    for split in ("Train", "Test"):
        for k, scene in enumerate(scenes, start=1):
            for s in (1, 2, 4):
                hr = np.full((lr * s, lr * s, 3), 40 * k, np.uint8)
                _png(root / split / "NLHR" / f"X{s}" / f"{scene}.png", hr)
                if duplicates:
                    for ev in evs:
                        _png(root / split / "NLHR-Duplicates" / f"X{s}" / f"{scene}-{ev}.png", hr)
            for ev in evs:
                _png(root / split / "LLLR" / f"{scene}-{ev}.png", rng.integers(0, 30, (lr, lr, 3), dtype=np.uint8))
    return root


def test_imageio_roundtrip_and_errors(tmp_path):
    torch.manual_seed(0)
    x = torch.rand(3, 9, 11)
    write_image(tmp_path / "a.png", x)
    assert torch.allclose(read_image(tmp_path / "a.png"), (x * 255).round() / 255, atol=1e-6)
    write_image(tmp_path / "b.png", x, bits=16)
    write_image(tmp_path / "c.tif", x, bits=16)
    for name in ("b.png", "c.tif"):
        assert (read_image(tmp_path / name) - x).abs().max() <= 0.5 / 65535 + 1e-6
    _png(tmp_path / "g.png", np.full((4, 5), 51, np.uint8))
    g = read_image(tmp_path / "g.png")
    assert g.shape == (3, 4, 5) and torch.allclose(g, torch.full_like(g, 0.2))
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 0  # fully transparent red: alpha is dropped, red stays
    _png(tmp_path / "rgba.png", rgba)
    assert read_image(tmp_path / "rgba.png")[0].min() == 1.0
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ImageReadError, match="bad.png"):
        read_image(tmp_path / "bad.png")
    with pytest.raises(ValueError, match="missing.png"):
        read_image(tmp_path / "missing.png")


def test_parse_names():
    assert parse_lllr_name("00736-5.0") == ("00736", 5.0)
    assert parse_lllr_name("00018-2.5") == ("00018", 2.5)
    with pytest.raises(ValueError):
        parse_lllr_name("00736")


def test_rellisur_pairs_crops_and_filter(tmp_path):
    root = _fake_rellisur(tmp_path / "R")
    ds = Rellisur(root, split="train", scale=4)
    assert len(ds) == 6 and ds.exposures == [2.5, 3.5, 5.0]
    item = ds[0]
    assert item["name"] == "00001-2.5" and item["ev"] == 2.5
    assert item["input"].shape == (3, 8, 8) and item["target"].shape == (3, 32, 32)
    assert ds.pairs[0].target_path.parent.parent.name == "NLHR-Duplicates"
    assert torch.allclose(ds[3]["target"], torch.full((3, 32, 32), 80 / 255))
    # exposure filter: values and inclusive range
    assert len(Rellisur(root, "Test", 2, exposures=[5.0])) == 2
    assert sorted({ds2["ev"] for ds2 in Rellisur(root, "Test", 2, exposures=(2.5, 3.5))}) == [2.5, 3.5]
    # aligned random crops + flips are reproducible for (seed, epoch, index)
    crop = Rellisur(root, "Train", 2, crop=4, augment=True, seed=3)
    a, b = crop[(1, 0)], crop[(1, 0)]
    assert a["input"].shape == (3, 4, 4) and a["target"].shape == (3, 8, 8)
    assert torch.equal(a["input"], b["input"]) and torch.equal(a["target"], b["target"])
    assert any(not torch.equal(a["input"], crop[(1, e)]["input"]) for e in range(1, 6))
    cc = Rellisur(root, "Test", 4, centre_crop=4)[0]
    assert cc["input"].shape == (3, 4, 4) and cc["target"].shape == (3, 16, 16)


def test_rellisur_aligned_crop_content(tmp_path):
    """The HR crop is exactly the s-times window of the LR crop (checked with a coordinate-coded image)."""
    root = tmp_path / "R"
    lr = np.zeros((8, 8, 3), np.uint8)
    lr[..., 0] = np.arange(8)[:, None] * 10
    lr[..., 1] = np.arange(8)[None, :] * 10
    hr = np.repeat(np.repeat(lr, 2, axis=0), 2, axis=1)
    _png(root / "Val" / "LLLR" / "00001-3.0.png", lr)
    _png(root / "Val" / "NLHR" / "X2" / "00001.png", hr)
    ds = Rellisur(root, "Val", 2, crop=3, augment=True, seed=0)
    for epoch in range(6):
        item = ds[(0, epoch)]
        up = item["input"].repeat_interleave(2, 1).repeat_interleave(2, 2)
        assert torch.equal(up, item["target"])


def test_rellisur_errors(tmp_path):
    root = _fake_rellisur(tmp_path / "R", duplicates=False)
    assert Rellisur(root, "Train", 2).pairs[0].target_path.parent.parent.name == "NLHR"
    _png(root / "Train" / "LLLR" / "00009-4.0.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(RellisurError, match="00009-4.0.png"):
        Rellisur(root, "Train", 2)
    root2 = _fake_rellisur(tmp_path / "S")
    (root2 / "Test" / "NLHR-Duplicates" / "X2" / "00002-3.5.png").write_bytes(b"broken")
    with pytest.raises(RellisurError, match="00002-3.5.png"):
        Rellisur(root2, "Test", 2)
    _png(root2 / "Train" / "NLHR-Duplicates" / "X2" / "00001-5.0.png", np.zeros((9, 9, 3), np.uint8))
    with pytest.raises(RellisurError, match="size mismatch.*00001-5.0.png"):
        Rellisur(root2, "Train", 2)


def test_synthetic_degradation_determinism_and_ranges():
    torch.manual_seed(0)
    hr = torch.rand(3, 32, 48)
    a = degrade(hr, 4, 3.0, seed=7)
    b = degrade(hr, 4, 3.0, seed=7)
    c = degrade(hr, 4, 3.0, seed=8)
    assert a.shape == (3, 8, 12) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    assert torch.allclose(a * 255, (a * 255).round(), atol=1e-4)  # 8-bit levels
    # without noise, a flat grey of linear value L becomes srgb(L * 2^-ev)
    flat = torch.full((3, 8, 8), 0.5)
    clean = degrade(flat, 2, 2.0, params=DegradationParams(full_well=1e12, read_noise=0.0, quantize=False))
    lin = ((0.5 + 0.055) / 1.055) ** 2.4 / 4
    assert torch.allclose(clean, torch.full_like(clean, 1.055 * lin ** (1 / 2.4) - 0.055), atol=1e-4)
    # darker with more EV
    assert degrade(hr, 2, 4.0, seed=1).mean() < degrade(hr, 2, 2.0, seed=1).mean()


def test_synthetic_pairs_dataset(tmp_path):
    for i in range(2):
        _png(tmp_path / f"p{i}.png", np.random.default_rng(i).integers(0, 255, (40, 36, 3), dtype=np.uint8))
    ds = SyntheticPairs(tmp_path, scale=2, ev_range=(2.0, 4.0), crop=8, seed=5, samples_per_epoch=10)
    assert len(ds) == 10
    s = ds[(3, 2)]
    assert s["input"].shape == (3, 8, 8) and s["target"].shape == (3, 16, 16) and 2.0 <= s["ev"] <= 4.0
    assert torch.equal(s["input"], ds[(3, 2)]["input"])
    assert not torch.equal(s["input"], ds[(3, 1)]["input"])
    full = SyntheticPairs(tmp_path, scale=4, ev_range=3.0, seed=0, augment=False)
    assert full[0]["target"].shape == (3, 40, 36) and full[0]["input"].shape == (3, 10, 9)


def test_embedded_dataset_shapes_and_determinism():
    test = embedded_dataset("test", scale=2)
    assert len(test) == 6
    s = test[0]
    assert s["name"] == "chelsea-2.5" and s["input"].shape == (3, 128, 128) and s["target"].shape == (3, 256, 256)
    again = embedded_dataset("test", scale=2)
    assert all(torch.equal(test[i]["input"], again[i]["input"]) for i in range(6))
    assert 0.02 < float(s["input"].mean()) < float(s["target"].mean())
    train = embedded_dataset("train", scale=4, crop=16, samples_per_epoch=12)
    t = train[(5, 0)]
    assert len(train) == 12 and t["input"].shape == (3, 16, 16) and t["target"].shape == (3, 64, 64)
    assert torch.equal(t["input"], train[(5, 0)]["input"])
    assert {train[i]["name"].rsplit("-", 1)[0] for i in range(12)}.isdisjoint({"chelsea", "rocket"})


class _Idx(torch.utils.data.Dataset):
    """Returns its key so that the batch order can be checked."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, key):
        i, e = key
        return {"input": torch.tensor([i, e]), "name": f"{i}"}


def test_split_ratio_and_disjoint():
    ul, ll = split_upper_lower(_Idx(60))
    assert len(ul) == 10 and len(ll) == 50
    assert set(ul.indices).isdisjoint(ll.indices) and set(ul.indices) | set(ll.indices) == set(range(60))
    assert split_upper_lower(_Idx(60), seed=0)[0].indices == ul.indices
    assert split_upper_lower(_Idx(60), seed=1)[0].indices != ul.indices
    ul2, ll2 = split_upper_lower(_Idx(60), ratio=(1, 2))
    assert (len(ul2), len(ll2)) == (20, 40)
    assert ul[(0, 3)]["input"].tolist() == [ul.indices[0], 3]  # epoch forwarded


def test_core_loader_over_split_resumes_and_shards():
    """The TriCo data goes through hyperlevel.ResumableLoader (pass_epoch=True): (index, epoch) keys reach the
    subset, a resumed loader yields the same batches, shards are disjoint."""
    ul, _ = split_upper_lower(_Idx(60))
    it = ResumableLoader(ul, batch_size=4, seed=11, collate_fn=collate_samples, pass_epoch=True)
    first = [next(it)["input"] for _ in range(3)]  # 10 samples: 2 batches per epoch, so epoch 1 starts
    assert first[2][0, 1].item() == 1 and first[0][0, 1].item() == 0  # the epoch is forwarded
    assert set(first[0][:, 0].tolist()) <= set(ul.indices)
    state = it.state_dict()
    rest = [next(it)["input"] for _ in range(5)]
    resumed = ResumableLoader(ul, batch_size=4, seed=11, collate_fn=collate_samples, pass_epoch=True)
    resumed.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(rest, [next(resumed)["input"] for _ in range(5)]))
    shards = [ResumableLoader(_Idx(30), 3, seed=2, rank=r, world_size=3, pass_epoch=True) for r in range(3)]
    seen = [set(torch.cat([next(sh)["input"][:, 0] for _ in range(len(sh))]).tolist()) for sh in shards]
    assert seen[0].isdisjoint(seen[1]) and seen[1].isdisjoint(seen[2]) and seen[0].isdisjoint(seen[2])
    assert sum(len(x) for x in seen) == 27
