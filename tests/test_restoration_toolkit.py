"""The restoration toolkit (examples/restoration): registries, typed YAML, checkpoints, tiling, data sources."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
import torch
from torch import nn

from examples.restoration import checkpoint as ckpt
from examples.restoration.config import ConfigError, apply_overrides, from_dict, load_yaml, to_dict
from examples.restoration.data.sources import DataSource, SourceRegistry, parse_spec
from examples.restoration.degradations import (
    DEGRADATIONS,
    build_degradation,
    degrade_with,
    gaussian_blur,
    register_degradation,
)
from examples.restoration.metrics import (
    METRICS,
    Metric,
    MetricUnavailable,
    evaluate_pairs,
    full_reference,
    no_reference,
    register_metric,
)
from examples.restoration.registry import Registry, RegistryError
from examples.restoration.tiling import enhance_tiled


# ------------------------------------------------------------------------------------------------- registry
def test_registry_register_get_and_errors():
    reg: Registry[int] = Registry("widget")
    reg.register("a", 1)

    @reg.register("b")
    def b():
        return 2

    assert reg.get("a") == 1 and reg.get("b")() == 2 and reg.names() == ["a", "b"] and "a" in reg
    with pytest.raises(RegistryError, match=r"unknown widget 'c'; available: \['a', 'b'\]"):
        reg.get("c")
    with pytest.raises(ValueError, match="already registered"):  # also a ValueError: a bad setting
        reg.register("a", 3)
    reg.register("a", 3, replace=True)
    assert reg.get("a") == 3 and reg.unregister("a") == 3 and reg.names() == ["b"]


# -------------------------------------------------------------------------------------------------- metrics
def test_standard_metric_entries_declare_target_direction_and_parameters():
    expected = {"psnr": (True, False), "ssim": (True, False), "lpips": (True, True), "rmse": (True, True),
                "fsim": (True, False), "niqe": (False, True), "brisque": (False, True), "metaiqa": (False, False)}
    for name, (needs_target, lower) in expected.items():
        m = METRICS.get(name)
        assert (m.needs_target, m.lower_is_better) == (needs_target, lower), name
        assert m.parameters
    assert set(full_reference()) >= {"psnr", "ssim", "lpips", "rmse", "fsim"}
    assert set(no_reference()) >= {"niqe", "brisque", "metaiqa"}


def test_metric_without_its_weights_is_skipped_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # no cached AlexNet backbone
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    report = evaluate_pairs([x], [x], metric_names=["psnr", "lpips"],
                            weight_paths={"lpips": str(tmp_path / "missing_alex.pth")})
    assert "lpips" in report["skipped"] and "missing_alex.pth" in report["skipped"]["lpips"]
    assert "lpips" not in report["metrics"] and report["metrics"]["psnr"]["mean"] == pytest.approx(100.0)


def test_a_task_registers_a_metric_in_one_call():
    def setup(ctx):
        return lambda b: (b.x - b.y).abs().flatten(1).mean(1)

    def refuse(ctx):
        raise MetricUnavailable("needs the moon")

    register_metric(Metric("mae_test", needs_target=True, lower_is_better=True, setup=setup))
    register_metric(Metric("moon_test", needs_target=False, lower_is_better=False, setup=refuse))
    try:
        pred = torch.zeros(2, 3, 8, 8)
        target = torch.full((2, 3, 8, 8), 51 / 255)  # exactly representable after uint8 quantisation
        report = evaluate_pairs([pred], [target], metric_names=["mae_test", "moon_test", "rmse"])
        assert report["metrics"]["mae_test"] == {"mean": pytest.approx(0.2), "count": 2, "lower_is_better": True}
        assert report["metrics"]["rmse"]["mean"] == pytest.approx(0.2)
        assert report["skipped"] == {"moon_test": "needs the moon"}
        with pytest.raises(ValueError, match="metric mae_test needs a target"):
            evaluate_pairs([pred], [None], metric_names=["mae_test"])
        with pytest.raises(ValueError, match="unknown metric"):
            evaluate_pairs([pred], [target], metric_names=["nope"])
    finally:
        METRICS.unregister("mae_test")
        METRICS.unregister("moon_test")


# ------------------------------------------------------------------------------------------------- config
@dataclass
class _Inner:
    steps: int = 3
    rate: float = 0.5
    mode: Literal["a", "b"] = "a"

    def validate(self, key: str) -> None:
        if self.steps < 1:
            raise ConfigError(f"{key}.steps: must be >= 1, got {self.steps}")


@dataclass
class _Outer:
    name: str = "x"
    inner: _Inner = field(default_factory=_Inner)
    sizes: list[int] = field(default_factory=lambda: [1, 2])
    extra: dict[str, Any] = field(default_factory=dict)
    root: str | None = None


def test_yaml_converter_round_trip_and_overrides():
    cfg = from_dict(_Outer, {"name": "y", "inner": {"steps": 5, "rate": "1e-3"}, "sizes": [4]})
    assert cfg == _Outer(name="y", inner=_Inner(steps=5, rate=1e-3), sizes=[4])
    assert from_dict(_Outer, to_dict(cfg)) == cfg
    data = apply_overrides({"inner": {"steps": 2}}, ["inner.mode=b", "root=/data", "extra.k=[1, 2]"])
    assert from_dict(_Outer, data) == _Outer(inner=_Inner(steps=2, mode="b"), root="/data", extra={"k": [1, 2]})


@pytest.mark.parametrize("data, message", [
    ({"inner": {"steps": "ten"}}, "inner.steps: expected int, got str 'ten'"),
    ({"inner": {"stepz": 1}}, "unknown key inner.stepz"),
    ({"inner": {"mode": "c"}}, r"inner.mode: must be one of \['a', 'b'\], got 'c'"),
    ({"sizes": [1, "2"]}, r"sizes\[1\]: expected int"),
    ({"inner": {"steps": 0}}, "inner.steps: must be >= 1, got 0"),
    ({"inner": {"rate": float("nan")}}, "inner.rate: must be a finite number"),
    ({"name": None}, "name: may not be null"),
    ({"inner": [1]}, "inner: expected a mapping"),
])
def test_yaml_converter_errors_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(_Outer, data)


def test_load_yaml_names_the_file_and_never_evaluates(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("inner:\n  steps: 4\n")
    assert load_yaml(_Outer, path, ["inner.rate=2"]).inner == _Inner(steps=4, rate=2.0)
    path.write_text("name: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(_Outer, path)
    path.write_text("name: z\n")
    with pytest.raises(ConfigError, match=r"c.yaml: inner.steps: expected int"):
        load_yaml(_Outer, path, ["inner.steps=1.5"])
    assert load_yaml(_Outer, "c", config_dir=tmp_path, overrides=["name=ok"]).name == "ok"  # bare name


# --------------------------------------------------------------------------------------------- checkpoints
class _Affine(nn.Module):
    def __init__(self, channels: int = 3, gain: float = 1.0):
        super().__init__()
        self.config = {"channels": channels, "gain": gain}
        self.conv = nn.Conv2d(channels, channels, 1)
        self.gain = gain

    def forward(self, x):
        return self.gain * self.conv(x)


@pytest.fixture
def affine_builder():
    b = ckpt.register_model_builder(ckpt.ModelBuilder("affine_test", build=_Affine, label="Affine",
                                                      config_defaults={"gain": 2.0}))
    yield b
    ckpt.MODEL_BUILDERS.unregister("affine_test")


def test_checkpoint_round_trip_with_a_registered_builder(tmp_path, affine_builder):
    torch.manual_seed(0)
    model = _Affine(3, 0.5)
    x = torch.rand(1, 3, 5, 5)
    ckpt.save_model(tmp_path / "m.pt", model, "affine_test", extra={"step": 7})
    loaded, config = ckpt.load_model(tmp_path / "m.pt")  # the builder's name is recorded in the file
    assert config == {"channels": 3, "gain": 0.5} and not loaded.training
    assert torch.equal(loaded(x), model(x))
    # an engine checkpoint keeps the model under "extra"; an old file without the builder name needs it named
    old = ckpt.model_checkpoint(model, affine_builder)
    del old["model_builder"], old["model_config"]["gain"]
    torch.save({"extra": old, "step": 1}, tmp_path / "old.pt")
    with pytest.raises(ckpt.CheckpointError, match="does not record its model builder"):
        ckpt.load_model(tmp_path / "old.pt")
    loaded, config = ckpt.load_model(tmp_path / "old.pt", builder="affine_test")
    assert config["gain"] == 2.0 and loaded.gain == 2.0  # the default for keys older files lack


def test_checkpoint_errors_name_the_file_and_the_builder(tmp_path, affine_builder):
    torch.save({"weights": {}}, tmp_path / "x.pt")
    with pytest.raises(ckpt.CheckpointError, match="x.pt is not a Affine checkpoint"):
        ckpt.load_model(tmp_path / "x.pt", builder="affine_test")
    other = ckpt.ModelBuilder("other_test", build=_Affine)
    ckpt.save_model(tmp_path / "m.pt", _Affine(), affine_builder)
    with pytest.raises(ckpt.CheckpointError, match="holds a 'affine_test' model"):
        ckpt.load_model(tmp_path / "m.pt", builder=other)
    torch.save({"model_config": {"channels": 4}, "model": _Affine(3).state_dict()}, tmp_path / "bad.pt")
    with pytest.raises(ckpt.CheckpointError, match="cannot rebuild the model of checkpoint"):
        ckpt.load_model(tmp_path / "bad.pt", builder=affine_builder)
    with pytest.raises(ValueError, match="unknown model builder 'nobody'"):
        ckpt.load_model(tmp_path / "m.pt", builder="nobody")


def test_safetensors_round_trip(tmp_path, affine_builder):
    torch.manual_seed(1)
    model = _Affine(3, 1.5)
    path = ckpt.save_safetensors(tmp_path / "m.safetensors", model, "affine_test", {"card": "c.json"})
    meta = ckpt.read_safetensors_metadata(path, "affine_test")
    assert meta["format"] == "affine_test" and meta["card"] == "c.json"
    loaded, config = ckpt.load_model(path)
    x = torch.rand(1, 3, 4, 4)
    assert config == {"channels": 3, "gain": 1.5} and torch.equal(loaded(x), model(x))


# -------------------------------------------------------------------------------------------------- tiling
@pytest.mark.parametrize("scale, tile, overlap", [(1, 16, 4), (2, 24, 8), (3, 17, 6)])
def test_tiled_equals_untiled_for_a_pointwise_model(scale, tile, overlap):
    x = torch.rand(2, 3, 45, 38, generator=torch.Generator().manual_seed(scale), dtype=torch.float64)

    def fn(t):  # pointwise (each output pixel depends on one input pixel), nearest up-scaling
        y = torch.sigmoid(3.0 * t - 1.0) * t.square()
        return y.repeat_interleave(scale, -2).repeat_interleave(scale, -1)

    whole = fn(x)
    tiled = enhance_tiled(fn, x, tile=tile, overlap=overlap)  # the scale is read from the first tile
    assert tiled.shape == whole.shape and tiled.dtype == x.dtype
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-6)
    torch.testing.assert_close(enhance_tiled(fn, x[0], tile=tile, overlap=overlap, scale=scale), whole[0],
                               rtol=0, atol=1e-6)


def test_tiled_refuses_a_bad_overlap_and_a_non_integer_scale():
    x = torch.rand(1, 3, 40, 40)
    with pytest.raises(ValueError, match="tile overlap"):
        enhance_tiled(lambda t: t, x, tile=16, overlap=16)
    with pytest.raises(ValueError, match="not an integer up-scaling"):
        enhance_tiled(lambda t: t[..., :-1, :], x, tile=16, overlap=4)


# ------------------------------------------------------------------------------------------- degradations
@dataclass(frozen=True)
class _Noise:
    sigma_range: tuple[float, float] = (0.01, 0.1)
    name: str = field(default="noise_test", init=False)

    def sample(self, generator):
        lo, hi = self.sigma_range
        return {"sigma": lo + (hi - lo) * float(torch.rand((), generator=generator))}

    def apply(self, image, *, drawn, generator, blur=0.0):
        return gaussian_blur(image, blur) + drawn["sigma"] * torch.randn(image.shape, generator=generator)


def test_degradation_registry_builds_seeded_models_and_names_bad_options():
    register_degradation("noise_test", _Noise)
    try:
        model = build_degradation("noise_test", sigma_range=[0.05, 0.05])
        assert model.sigma_range == (0.05, 0.05)  # YAML lists become tuples
        img = torch.full((3, 8, 8), 0.5)
        a, da = degrade_with(model, img, torch.Generator().manual_seed(3), blur=1.0)
        b, db = degrade_with(model, img, torch.Generator().manual_seed(3), blur=1.0)
        assert torch.equal(a, b) and da == db == {"sigma": pytest.approx(0.05)}
        assert (a - 0.5).std().item() == pytest.approx(0.05, rel=0.25)  # blur of a flat image is flat
        with pytest.raises(ValueError, match=r"unknown option\(s\) \['sigma'\] for degradation 'noise_test'"):
            build_degradation("noise_test", sigma=0.1)
        with pytest.raises(ValueError, match="unknown degradation 'fog'"):
            build_degradation("fog")
    finally:
        DEGRADATIONS.unregister("noise_test")


# --------------------------------------------------------------------------------------------- data sources
def test_source_registry_shared_by_training_and_evaluation():
    calls = []

    def build(split, root, scale=1, **options):
        calls.append((split, root, scale, options))
        return [split] * scale

    reg = SourceRegistry("data spec")
    reg.add(DataSource("mem", build))
    reg.add(DataSource("disk", build, needs_root=True, synthetic=False))
    assert parse_spec("disk:/a:b") == ("disk", "/a:b") and parse_spec("mem") == ("mem", None)
    assert reg.build("mem", "train", scale=2, crop=8) == ["train", "train"]
    assert reg.build("disk:/photos", "test") == ["test"]
    assert calls == [("train", None, 2, {"crop": 8}), ("test", "/photos", 1, {})]
    assert reg.is_synthetic("mem") and not reg.is_synthetic("disk:/x")
    with pytest.raises(ValueError, match=r"use --data disk:/path"):
        reg.build("disk", "test")
    with pytest.raises(ValueError, match="takes no path"):
        reg.build("mem:/x", "test")
    with pytest.raises(ValueError, match="unknown data spec 'web': use mem, disk:PATH"):
        reg.build("web", "test")


def test_trico_registers_its_parts_with_the_toolkit():
    import examples.trico.checkpoint  # noqa: F401  (registers the TriCo builder)
    from examples.trico.data.sources import SOURCES

    assert SOURCES.names() == ["embedded", "folder", "rellisur"] and not SOURCES.get("rellisur").synthetic
    assert {"seen", "unseen"} <= set(DEGRADATIONS.names()) and "trico" in ckpt.MODEL_BUILDERS
    assert math.isfinite(METRICS.get("psnr").setup(None)(_batch()).item())


def _batch():
    from examples.restoration.metrics import MetricBatch, MetricConventions

    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    return MetricBatch(x, x.flip(-1), MetricConventions())


def test_the_toolkit_imports_no_task_and_trico_no_other_example():
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "examples"

    def imported(path):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                yield from (a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                yield node.module

    for path in (root / "restoration").rglob("*.py"):
        bad = [m for m in imported(path) if m.startswith("examples") and not m.startswith("examples.restoration")]
        assert not bad, f"{path} imports {bad}"
    for path in (root / "trico").rglob("*.py"):
        bad = [m for m in imported(path) if m.startswith("examples")
               and not m.startswith(("examples.restoration", "examples.trico"))]
        assert not bad, f"{path} imports {bad}"


def test_restore_files_writes_results_and_never_destroys_data(tmp_path, capsys):
    from examples.restoration.batch import image_inputs, restore_files
    from examples.restoration.imageio import read_image, write_image

    src = tmp_path / "in"
    img = torch.rand(3, 6, 5, generator=torch.Generator().manual_seed(0))
    write_image(src / "a.png", img)
    write_image(src / "a.jpg", img)  # same stem: its output would replace a.png's
    (src / "notes.txt").write_text("x")
    files, skipped = image_inputs(src)
    assert [p.name for p in files] == ["a.jpg", "a.png"] and [p.name for p in skipped] == ["notes.txt"]
    failed = restore_files(lambda x: 1.0 - x, files, tmp_path / "out", skipped=skipped)
    assert failed == 1 and "already written" in capsys.readouterr().err
    out = read_image(tmp_path / "out" / "a.png")  # from a.jpg (first in name order), inverted
    torch.testing.assert_close(out, 1.0 - read_image(src / "a.jpg"), rtol=0, atol=0.5 / 255 + 1e-6)
    before = read_image(src / "a.png")
    assert restore_files(lambda x: 1.0 - x, [src / "a.png"], src) == 1  # an input is never an output
    assert read_image(src / "a.png").equal(before)
    assert restore_files(lambda x: x, [src / "a.png"], tmp_path / "out") == 1  # exists, no overwrite
    assert restore_files(lambda x: x, [src / "a.png"], tmp_path / "out", overwrite=True) == 0
    torch.testing.assert_close(read_image(tmp_path / "out" / "a.png"), read_image(src / "a.png"))
