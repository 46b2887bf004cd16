"""Typed configuration of ``python -m examples.trico train`` (YAML, validated on load).

A config file is YAML read with ``yaml.safe_load`` (never ``eval``); its mapping is converted into the
dataclasses below by the restoration toolkit's typed converter (:mod:`examples.restoration.config`). Unknown
keys, wrong types and bad values raise :class:`ConfigError` naming the full dotted key
(``train.s1.max_steps: expected int, got str 'ten'``). ``--set key=value`` overrides are applied to the raw
mapping before validation; their values are parsed as YAML scalars (``--set train.lr.gamma_u=1e-3``).

See ``docs/trico.md`` for the meaning of every key; ``configs/demo.yaml`` is the shortest complete example.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import hyperlevel
from examples.restoration.config import ConfigError, apply_overrides, from_dict, load_yaml, to_dict

__all__ = ["ConfigError", "TrainConfig", "ModelConfig", "DataConfig", "LossConfig", "SolverConfig", "PhaseConfig",
           "LearningRates", "SchedulerConfig", "AlgorithmConfig", "LogConfig", "EvalConfig", "load_config",
           "config_from_dict", "config_to_dict", "apply_overrides", "CONFIG_DIR", "solver_params"]

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass
class ModelConfig:
    """``build_model`` arguments. ``widths`` overrides ``examples.trico.model.DEFAULT_WIDTHS`` entries."""

    scale: int = 2
    semantic: Literal["none", "sam_vit_b", "sam_vit_l", "sam_vit_h"] = "none"
    checkpoint: str | None = None
    widths: dict[str, Any] = field(default_factory=dict)
    ihem: bool = True

    def validate(self, key: str) -> None:
        if self.scale not in (1, 2, 4):
            raise ConfigError(f"{key}.scale: must be 1, 2 or 4, got {self.scale}")
        from .model import DEFAULT_WIDTHS

        unknown = sorted(set(self.widths) - set(DEFAULT_WIDTHS))
        if unknown:
            raise ConfigError(f"{key}.widths: unknown key(s) {unknown}; known: {sorted(DEFAULT_WIDTHS)}")
        if "ihem" in self.widths:
            raise ConfigError(f"{key}.widths.ihem: set {key}.ihem instead")
        if self.widths.get("exposure_prior") is not None:
            raise ConfigError(f"{key}.widths.exposure_prior: the exposure prior is fitted after training on the run's "
                              "training photos (python -m examples.trico exposure-prior); training leaves it unset")


@dataclass
class DataConfig:
    """Training data. ``source``: ``embedded`` (skimage photos, degraded on the fly), ``folder`` (normal-light
    photos under ``root``, degraded on the fly) or ``rellisur`` (the RELLISUR data set under ``root``)."""

    source: Literal["embedded", "folder", "rellisur"] = "embedded"
    root: str | None = None
    crop: int = 48
    batch_size: int = 4
    split_ratio: list[float] = field(default_factory=lambda: [1.0, 5.0])
    split_seed: int = 0
    samples_per_epoch: int = 240
    ev_range: list[float] = field(default_factory=lambda: [2.0, 5.0])
    degradation: dict[str, Any] = field(default_factory=dict)
    exposures: list[float] | None = None
    seed: int = 0
    #: seed of the batch order only (the loaders' shuffles); ``null``: ``seed``. The study varies it with the
    #: run's seed while ``seed`` (which also fixes the synthetic samples) stays put: same data, new order.
    loader_seed: int | None = None
    #: embedded training photos kept out of training: the validation split (``select`` picks checkpoints on it)
    holdout: list[str] = field(default_factory=list)
    #: more embedded photos to train on (``MORE_TRAIN_IMAGES``: grayscale scenes and textures, ``retina``);
    #: ``holdout`` may name them too
    more_photos: list[str] = field(default_factory=list)
    #: degrade the whole photo, then crop, and give each crop its photo's auto-exposure gain (as inference does)
    scene_exposure: bool = False

    def validate(self, key: str) -> None:
        if self.source in ("folder", "rellisur") and not self.root:
            raise ConfigError(f"{key}.root: required when {key}.source is {self.source!r}")
        if self.source == "embedded" and self.root:
            raise ConfigError(f"{key}.root: {self.root!r} would be ignored: {key}.source is 'embedded' (the bundled "
                              f"photos); remove {key}.root, or set {key}.source to 'folder' or 'rellisur'")
        for name in ("crop", "batch_size", "samples_per_epoch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{key}.{name}: must be >= 1, got {getattr(self, name)}")
        if len(self.split_ratio) != 2 or min(self.split_ratio) <= 0:
            raise ConfigError(f"{key}.split_ratio: two positive numbers (upper, lower), got {self.split_ratio}")
        if len(self.ev_range) != 2 or not 0 <= self.ev_range[0] <= self.ev_range[1]:
            raise ConfigError(f"{key}.ev_range: [lo, hi] with 0 <= lo <= hi, got {self.ev_range}")
        if self.scene_exposure and self.source == "rellisur":
            raise ConfigError(f"{key}.scene_exposure: only for synthetic sources (embedded, folder); RELLISUR's "
                              "pairs are real photos")
        if self.more_photos:
            from examples.restoration.data import MORE_TRAIN_IMAGES

            if self.source != "embedded":
                raise ConfigError(f"{key}.more_photos: only for source 'embedded' (a folder is its own photo list)")
            unknown = sorted(set(self.more_photos) - set(MORE_TRAIN_IMAGES))
            if unknown:
                raise ConfigError(f"{key}.more_photos: {unknown} unknown; choose from {list(MORE_TRAIN_IMAGES)}")
        if self.holdout:
            from examples.restoration.data import embedded_photo_names

            if self.source != "embedded":
                raise ConfigError(f"{key}.holdout: only for source 'embedded' (a folder keeps its own validation "
                                  "photos in another folder)")
            try:  # the data set's own check: known training photos, at least one left to train on
                embedded_photo_names("train", self.holdout, self.more_photos)
            except ValueError as exc:
                raise ConfigError(f"{key}.holdout: {exc}") from None
        self.build_degradation(key)

    def build_degradation(self, key: str = "data"):
        """The training degradation (``seen`` model) with ``degradation`` overriding its defaults; the
        evaluation-only ``unseen`` model cannot be selected here."""
        from .data.degradations import build_degradation

        options = dict(self.degradation)
        name = options.pop("name", "seen")
        if name != "seen":
            raise ConfigError(f"{key}.degradation.name: training uses the 'seen' model only (the 'unseen' one is "
                              f"reserved for evaluation), got {name!r}")
        try:
            return build_degradation("seen", **options)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{key}.degradation: {exc}") from None


@dataclass
class LossConfig:
    """Candidate losses. ``vgg_weights``: torchvision's vgg19-dcbb9e9d.pth (none: env TRICO_VGG19_WEIGHTS or
    torch's hub cache). ``allow_random_init``: accept a randomly initialised VGG19 (smoke tests, the demo)."""

    vgg_weights: str | None = None
    allow_random_init: bool = False
    ssim_kernel_size: int = 11
    ssim_sigma: float = 1.5
    weights_init: float = 1.0
    #: the candidate loss set T (Sec. 3.4): one learned weight per entry. Leave out ``perceptual`` where no
    #: pretrained VGG19 exists (the shipped model): random VGG features are not a perceptual measure.
    candidates: list[str] = field(default_factory=lambda: ["luminance", "l1", "perceptual", "ssim", "tv"])

    def validate(self, key: str) -> None:
        from .losses import LOSS_NAMES

        if not self.candidates or len(set(self.candidates)) != len(self.candidates) or \
                any(n not in LOSS_NAMES for n in self.candidates):
            raise ConfigError(f"{key}.candidates: a non-empty subset of {list(LOSS_NAMES)} without repeats, "
                              f"got {self.candidates}")
        if self.ssim_kernel_size < 3 or self.ssim_kernel_size % 2 == 0:
            raise ConfigError(f"{key}.ssim_kernel_size: odd and >= 3, got {self.ssim_kernel_size}")
        if not self.weights_init > 0:
            raise ConfigError(f"{key}.weights_init: must be positive, got {self.weights_init}")


def solver_params(name: str) -> tuple[str, ...]:
    """The parameters solver ``name`` accepts (besides ``name``), from hyperlevel's registry. An ``inner_lr`` the
    config leaves out defaults to the phase's inner learning rate (gamma_l in S1, o_l in S2)."""
    return tuple(hyperlevel.solvers.options(name))


@dataclass
class SolverConfig:
    """Hypergradient solver of the bilevel phases: a registered ``name`` (``hyperlevel.solvers.available()``)
    and that solver's parameters."""

    name: str = "finite_difference"
    params: dict[str, Any] = field(default_factory=dict)

    def validate(self, key: str) -> None:
        names = hyperlevel.solvers.available()
        if self.name not in names:
            raise ConfigError(f"{key}.name: unknown solver {self.name!r}; available: {names}")
        allowed = solver_params(self.name)
        unknown = sorted(set(self.params) - set(allowed))
        if unknown:
            raise ConfigError(f"{key}.params: unknown key(s) {unknown} for solver {self.name!r}; "
                              f"allowed: {list(allowed)}")


@dataclass
class PhaseConfig:
    """One phase: at most ``max_steps`` outer steps, ``inner_steps`` inner steps each. S1 also stops once the
    loss weights converge: relative change ``<= converge_tol`` over ``converge_window`` steps."""

    max_steps: int = 1000
    inner_steps: int = 1
    converge_tol: float | None = None
    converge_window: int = 100

    def validate(self, key: str) -> None:
        if self.max_steps < 1 or self.inner_steps < 1 or self.converge_window < 1:
            raise ConfigError(f"{key}: max_steps, inner_steps and converge_window must be >= 1")
        if self.converge_tol is not None and not self.converge_tol > 0:
            raise ConfigError(f"{key}.converge_tol: must be positive or null, got {self.converge_tol}")


@dataclass
class LearningRates:
    """Alg. 1's learning rates: S1 ``gamma_u`` (weights), ``gamma_l`` (w_i and w_s); S2 ``o_u`` (w_i),
    ``o_l`` (w_s)."""

    gamma_u: float = 1e-4
    gamma_l: float = 2e-4
    o_u: float = 1e-4
    o_l: float = 1e-4

    def validate(self, key: str) -> None:
        for k, v in dataclasses.asdict(self).items():
            if not v > 0:
                raise ConfigError(f"{key}.{k}: must be positive, got {v}")


@dataclass
class SchedulerConfig:
    """Cosine annealing with warm restarts (per level, stepped every phase step); ``enabled: false`` = constant."""

    enabled: bool = True
    period: int = 10000
    period_mult: int = 1
    eta_min: float = 1e-7

    def validate(self, key: str) -> None:
        if self.period < 1 or self.period_mult < 1 or self.eta_min < 0:
            raise ConfigError(f"{key}: period >= 1, period_mult >= 1 and eta_min >= 0 required")


@dataclass
class AlgorithmConfig:
    """``variant``: ``trico`` (S1 then S2), ``naive`` (fixed equal weights, w_i and w_s trained jointly as one
    level on all training data), ``no_s1`` (weights stay at init; S2 only), ``no_s2`` (S1, then joint training
    of w_i and w_s with the frozen weights). Ablations keep the total number of steps (docs/trico.md)."""

    variant: Literal["trico", "naive", "no_s1", "no_s2"] = "trico"
    solver: SolverConfig = field(default_factory=SolverConfig)
    s1: PhaseConfig = field(default_factory=lambda: PhaseConfig(max_steps=100000, converge_tol=1e-3,
                                                                converge_window=1000))
    s2: PhaseConfig = field(default_factory=lambda: PhaseConfig(max_steps=50000))
    lr: LearningRates = field(default_factory=LearningRates)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    on_nonfinite: Literal["raise", "skip"] = "raise"
    #: S1/S2 inner update reuses the solver's gradient from before the outer update (one pass fewer per step,
    #: benchmarks/pgr_step.py); off by default: Alg. 1 takes the inner step after the outer update
    reuse_inner_gradient: bool = False

    def validate(self, key: str) -> None:
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"{key}.betas: two numbers in [0, 1), got {self.betas}")


@dataclass
class LogConfig:
    """``keep_checkpoints``: the last that many checkpoints are kept (``step_*.pt``; ``last.pt`` is the newest),
    so that an unreadable ``last.pt`` falls back on an earlier one; 0 keeps ``last.pt`` only."""

    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 1
    progress: bool = True
    tensorboard: bool = True

    def validate(self, key: str) -> None:
        if self.checkpoint_every < 0 or self.keep_checkpoints < 0 or self.log_every < 1:
            raise ConfigError(f"{key}: checkpoint_every >= 0, keep_checkpoints >= 0, log_every >= 1 required")


@dataclass
class EvalConfig:
    """Evaluation after training (``evaluate``'s data spec: ``embedded``, ``rellisur:/path``, ``folder:/path``)."""

    data: str = "embedded"
    split: str = "test"
    centre_crop: int | None = None
    metrics: list[str] = field(default_factory=lambda: ["psnr", "ssim", "lpips", "rmse", "fsim"])

    def validate(self, key: str) -> None:
        from examples.restoration.metrics import METRICS  # the toolkit's metric registry

        bad = [m for m in self.metrics if m not in METRICS]
        if bad:
            raise ConfigError(f"{key}.metrics: unknown metric(s) {bad}; choose from {METRICS.names()}")


@dataclass
class TrainConfig:
    """The whole training configuration (top level of the YAML file)."""

    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    losses: LossConfig = field(default_factory=LossConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    log: LogConfig = field(default_factory=LogConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    threads: int | None = None


# ------------------------------------------------------------------------------------------------ conversion
def config_from_dict(data: Any) -> TrainConfig:
    """Validate a plain mapping (as ``yaml.safe_load`` returns it) into a :class:`TrainConfig`."""
    return from_dict(TrainConfig, data)


def config_to_dict(config: Any) -> dict[str, Any]:
    """The plain-dict form (YAML/checkpoint friendly) of a config dataclass."""
    return to_dict(config)


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read, override and validate a YAML config file (a bare name: ``configs/NAME.yaml``)."""
    return load_yaml(TrainConfig, path, overrides, config_dir=CONFIG_DIR)


def load_config_for_cli(path: str | Path, overrides: list[str] | None) -> TrainConfig | None:
    """``load_config`` for the command line: set up logging, print a bad config's error, return ``None``."""
    import logging
    import sys

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return load_config(path, overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return None
