"""The shipped model: safetensors format, ``export`` (measured card), ``evaluate`` reproducing the card,
``enhance`` without ``--checkpoint``, and EXIF orientation."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from examples.trico import build_model, cli
from examples.trico import pretrained as pre
from examples.trico.checkpoint import load_model, save_model
from examples.trico.imageio import read_image

torch.set_num_threads(1)

SMALL = {"ir_width": 4, "fr_widths": [8, 8, 8], "enc_blocks": [1, 1, 1], "dec_blocks": [0, 0, 0],
         "refine_blocks": 1, "hr_blocks": 0, "heads": [1, 1, 1]}


def _photos(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    for i in range(2):
        img = np.clip(rng.integers(60, 200, (1, 1, 3)) + rng.normal(0, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"q{i}.png")
    return folder


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny randomly initialised checkpoint exported as a shipped model would be (on small folder photos)."""
    root = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    ckpt = root / "last.pt"
    save_model(ckpt, build_model(2, **SMALL))
    torch.manual_seed(1)
    naive = root / "naive.pt"
    save_model(naive, build_model(2, **SMALL))
    info = root / "info.json"
    info.write_text(json.dumps({"wall_seconds": 12.5, "hardware": "test"}))
    prefix = root / "pretrained" / "trico_x2"
    photos = _photos(root / "photos")
    rc = cli.main(["export", "--checkpoint", str(ckpt), "--out", str(prefix), "--compare", f"naive={naive}",
                   "--train-info", str(info), "--data", f"folder:{photos}", "--no-progress"])
    assert rc == 0
    return ckpt, prefix


def test_export_writes_a_loadable_safetensors_and_a_card(exported, tmp_path):
    ckpt, prefix = exported
    card = json.loads(prefix.with_suffix(".json").read_text())
    st = prefix.with_suffix(".safetensors")
    assert card["file"] == st.name and card["bytes"] == st.stat().st_size <= pre.MAX_SHIPPED_BYTES
    assert card["training"]["wall_seconds"] == 12.5 and card["training"]["checkpoint"] == str(ckpt)
    assert card["model_config"]["fr_widths"] == [8, 8, 8]
    meta = pre.read_metadata(st)
    assert json.loads(meta["model_config"]) == card["model_config"] and meta["card"] == "trico_x2.json"
    a, _ = load_model(ckpt)
    b, cfg = load_model(st)  # checkpoint.load_model reads .safetensors too
    assert cfg == a.config
    for k, v in a.trainable_state_dict().items():
        assert torch.equal(b.trainable_state_dict()[k], v), k
    res = card["evaluation"]["results"]
    assert set(res) == {"seen", "unseen"} and "evaluation_extra" not in card  # folder data: one test set
    for deg in res:
        assert list(res[deg])[:2] == ["shipped", "naive"]
        assert set(res[deg]) >= {"bicubic", "linear_gain_bicubic", "clahe_bicubic", "zero_dce_bicubic",
                                 "bicubic_zero_dce"}
        # a random network loses to the strong baseline: the card says so
        assert "psnr" in card["evaluation"]["not_better_than"][deg]["linear_gain_bicubic"]
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="safetensors"):
        load_model(tmp_path / "bad.safetensors")


def check_card_is_reproduced(prefix: Path, capsys, tolerance_db: float = 0.05, key: str = "evaluation") -> dict:
    """Run ``evaluate`` on the shipped file of ``prefix`` and compare with its card's ``key`` measurement."""
    card = json.loads(prefix.with_suffix(".json").read_text())
    ev = card[key]
    capsys.readouterr()
    rc = cli.main(["evaluate", "--checkpoint", str(prefix.with_suffix(".safetensors")), "--baselines", "none",
                   "--data", ev["data_spec"], "--split", ev.get("split", "test"), "--scale", str(ev["scale"]),
                   "--metrics", *ev["metrics"], "--json", "--no-progress"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    measured = {}
    for deg, rows in ev["results"].items():
        got = out["degradations"][deg]["methods"]["trico"]["metrics"]
        recorded = rows["shipped"]["metrics"]
        assert abs(got["psnr"]["mean"] - recorded["psnr"]) <= tolerance_db, deg
        assert abs(got["ssim"]["mean"] - recorded["ssim"]) <= 1e-3, deg
        measured[deg] = got["psnr"]["mean"]
    return measured


def test_evaluate_reproduces_the_exported_card(exported, capsys):
    check_card_is_reproduced(exported[1], capsys)


SHIPPED = pre.shipped_checkpoint(2)


if SHIPPED is not None:  # defined once examples/trico/pretrained/trico_x2.safetensors exists (the lead exports it)

    @pytest.mark.slow
    def test_shipped_model_loads_and_reproduces_its_card(capsys):
        prefix = SHIPPED.with_suffix("")
        assert SHIPPED.stat().st_size <= pre.MAX_SHIPPED_BYTES
        model, config = load_model(SHIPPED)
        assert config["scale"] == 2 and config["semantic"] == "none"
        assert sum(p.numel() for p in model.trainable_parameters()) <= 1_500_000
        card = json.loads(prefix.with_suffix(".json").read_text())
        assert card["sha256"] == hashlib.sha256(SHIPPED.read_bytes()).hexdigest()  # the card describes this file
        assert card["evaluation"]["data_spec"] == "embedded" and set(card["evaluation"]["results"]) == {
            "seen", "unseen"}
        check_card_is_reproduced(prefix, capsys)
        if "evaluation_extra" in card:  # the second test set (photos from other wheels)
            assert card["evaluation_extra"]["split"] == "extra"
            check_card_is_reproduced(prefix, capsys, key="evaluation_extra")


def _card_table(evaluation: dict, degradation: str) -> list[str]:
    """The model card's rows of one table as docs/trico.md prints them (best of each column in bold)."""
    rows, metrics = evaluation["results"][degradation], evaluation["metrics"]
    pick = {m: (min if m == "rmse" else max) for m in metrics}
    best = {m: pick[m](r["metrics"][m] for r in rows.values() if "metrics" in r) for m in metrics}
    lines = []
    for row in rows.values():
        cells = []
        for m in metrics:
            text = f"{row['metrics'][m]:.2f}" if m == "psnr" else f"{row['metrics'][m]:.4f}"
            cells.append(f"**{text}**" if row["metrics"][m] == best[m] else text)
        lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    return lines


if SHIPPED is not None:

    def test_docs_model_card_tables_are_the_cards():
        card = json.loads(SHIPPED.with_suffix(".json").read_text())
        text = (Path(__file__).resolve().parents[1] / "docs" / "trico.md").read_text()
        section = text[text.index("### Model card"):text.index("#### How the shipped model was chosen")]
        for key in ("evaluation", "evaluation_extra"):
            for degradation in ("seen", "unseen"):
                expected = "\n".join(_card_table(card[key], degradation))
                assert expected in section, (key, degradation)
        assert f"{card['trainable_tensors_numel']:,} trainable parameters" in section
        prior = card["model_config"]["exposure_prior"]
        assert f"exp({prior['alpha']:.4f} + {prior['beta']:.4f} * log m)" in section
        assert f"level^{prior['weight']:g}" in section


def test_enhance_defaults_to_the_shipped_model(exported, tmp_path, monkeypatch, capsys):
    src = tmp_path / "in.png"
    Image.fromarray(np.full((10, 14, 3), 30, np.uint8)).save(src)
    monkeypatch.setattr(pre, "PRETRAINED_DIR", tmp_path / "empty")
    assert cli.main(["enhance", "--input", str(src), "--output", str(tmp_path / "o")]) == 2  # a usage error (exit statuses: docs/trico.md)
    assert "no shipped x2 model" in capsys.readouterr().err
    monkeypatch.setattr(pre, "PRETRAINED_DIR", exported[1].parent)
    assert cli.main(["enhance", "--input", str(src), "--output", str(tmp_path / "o")]) == 0
    assert read_image(tmp_path / "o" / "in.png").shape == (3, 20, 28)


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_orientation_is_applied_before_enhancing(orientation, exported, tmp_path):
    stored = np.zeros((48, 80, 3), np.uint8)  # stored 80 wide, 48 high; a bright block at the stored top-left
    stored[:16, :16] = 255
    src = tmp_path / f"rot{orientation}.jpg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(src, quality=95, exif=exif.tobytes())
    x = read_image(src)
    assert x.shape == (3, 80, 48)  # displayed: 48 wide, 80 high
    # orientation 6 = the viewer rotates 90 degrees clockwise (stored top-left -> displayed top-right);
    # 8 = counter-clockwise (stored top-left -> displayed bottom-left)
    displayed = np.rot90(stored, k=-1 if orientation == 6 else 1)
    assert np.abs(x.permute(1, 2, 0).numpy() * 255 - displayed).mean() < 3.0
    rc = cli.main(["enhance", "--checkpoint", str(exported[1].with_suffix(".safetensors")), "--input", str(src),
                   "--output", str(tmp_path / "o")])
    assert rc == 0
    assert read_image(tmp_path / "o" / f"rot{orientation}.png").shape == (3, 160, 96)


def test_docs_tile_figures_are_the_measured_ones():
    """docs/trico.md, "Tiles": the means and the per-photo comparison behind enhance's default tile of 512."""
    from examples.trico.enhance import add_arguments

    root = Path(__file__).resolve().parents[1]
    photos = json.loads((root / "docs" / "results" / "tiles" / "tiles.json").read_text())["photos"]
    text = (root / "docs" / "trico.md").read_text()
    means = {t: sum(r[t][0] for r in photos.values()) / len(photos) for t in ("128", "256", "0")}
    assert f"mean PSNR {means['128']:.2f} dB with 128-px tiles, {means['256']:.2f} with 256-px tiles, " \
           f"{means['0']:.2f}\nwhole" in text
    tiled = {n: r for n, r in photos.items() if max(r["lr"]) > 256}
    gains = [r["0"][0] - r["256"][0] for r in tiled.values()]
    assert len(tiled) == 5 and min(gains) > 0  # the whole image beat 256-px tiles on every photo larger than a tile
    assert f"(+{min(gains):.2f} to +{max(gains):.2f} dB)" in text
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(["--input", "x", "--output", "y"]).tile == 512
