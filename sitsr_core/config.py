"""One frozen, nested configuration, saved as JSON beside every checkpoint.

A run is reproducible from its folder alone: ``config.json`` holds a
:class:`Config`, and :func:`Config.from_dict` rebuilds it. Profiles
(``smoke``, ``quick``, ``full``) are functions returning configs; command-line
overrides such as ``--set train.lr=3e-4`` are parsed by :func:`apply_overrides`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field

from .errors import SitsrConfigError

FEATURES = ("sit_lr", "sic_lr", "divergence_lr", "shear_lr")
#: What a model generates (:class:`DataConfig`).
TARGETS = ("anomaly", "full", "residual")
#: Samplers of :mod:`sitsr_core.sampling` (``sample.sampler``).
SAMPLERS = ("ddim", "dpmpp2m")
#: Samplers that take per-step noise (``sample.eta > 0``).
STOCHASTIC_SAMPLERS = ("ddim",)
#: Fewest sampler steps of a diffusion model: one step would stop at ``t = 1`` (the posterior mean).
MIN_SAMPLER_STEPS = 2


@dataclass(frozen=True)
class DataConfig:
    """What the model sees and predicts.

    Attributes
    ----------
    features : tuple of str
        LR context channels, a subset of :data:`FEATURES` (order kept).
    target : {"anomaly", "full", "residual"}
        ``anomaly``: y = sit - sit_lr (the slides' choice); ``full``: y = sit; ``residual``:
        y = sit - the prediction of a deterministic (regression) run, as in CorrDiff (Mardani et
        al. 2025): the regression gives the conditional mean, the diffusion generates what it
        smooths away. The regression run is copied into the run folder (``base/``) at training.
    base_conditioning : bool
        For ``residual``: also give the network the base (regression) prediction as a context
        channel, normalised with the statistics of ``sit`` (CorrDiff's ``hr_mean_conditioning``):
        the denoiser then knows the thickness its residual is added to.
    patch : int
        Training patch size in cells (square).
    max_land_fraction : float
        Training patches with more land than this are redrawn.
    """

    features: tuple[str, ...] = FEATURES
    target: str = "anomaly"
    base_conditioning: bool = False
    patch: int = 64
    max_land_fraction: float = 0.5


def context_channels(data: DataConfig) -> tuple[str, ...]:
    """Names of the network's context channels: the features, ``base`` when conditioned on it, ``mask``."""
    return tuple(data.features) + (("base",) if data.base_conditioning else ()) + ("mask",)


@dataclass(frozen=True)
class ModelConfig:
    """Residual UNet architecture.

    Attributes
    ----------
    widths : tuple of int
        Channels per level (one down-sampling between levels).
    blocks_per_level : int
        Residual blocks per level, in the encoder and in the decoder.
    embedding_dim : int
        Size of the sinusoidal embedding of the noise level.
    embedding_max_frequency : float
        Largest frequency of the sinusoidal embedding.
    """

    widths: tuple[int, ...] = (32, 64, 96, 128)
    blocks_per_level: int = 2
    embedding_dim: int = 32
    embedding_max_frequency: float = 1000.0


@dataclass(frozen=True)
class DiffusionConfig:
    """Continuous-time offset-cosine diffusion.

    Attributes
    ----------
    max_signal_rate, min_signal_rate : float
        Signal rates cos(gamma) at t = 0 and t = 1. Sampling ends with a network evaluation at
        t = 0, at noise std ``sqrt(1 - max_signal_rate**2)`` (0.045 for 0.999): low enough that
        the returned field keeps the fine scales (0.95, the original spec, left a noise std of 0.31:
        a posterior mean that keeps only ~0.3-0.4 of the 8-16 km power).
    prediction : {"eps", "v"}
        What the network predicts. ``v`` stays well behaved at both ends of the schedule; ``eps``
        divides by the signal rate (x50 at min_signal_rate 0.02) to return the clean target.
    """

    max_signal_rate: float = 0.999
    min_signal_rate: float = 0.02
    prediction: str = "v"


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation.

    Attributes
    ----------
    objective : {"diffusion", "regression"}
        ``regression`` trains the same network with MSE as a deterministic baseline.
    steps, batch : int
        Optimiser steps and patches per step (global batch).
    lr, weight_decay : float
        AdamW parameters.
    ema : float
        Decay of the exponential moving average of weights used for sampling.
    seed : int
        Seed of patches, noise and initial weights.
    bf16, channels_last, compile : bool
        Speed options (bf16 autocast, channels_last memory format, torch.compile).
    log_every, val_every, ckpt_every : int
        Intervals in steps for metrics.csv, validation and checkpoints.
    val_members, val_steps : int
        Size of the small DDIM ensemble run at validation.
    val_days : int
        Validation days (spread over the ``val`` split) on which that ensemble is scored.
    """

    objective: str = "diffusion"
    steps: int = 4000
    batch: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    ema: float = 0.999
    seed: int = 0
    bf16: bool = True
    channels_last: bool = True
    compile: bool = False
    log_every: int = 50
    val_every: int = 500
    ckpt_every: int = 500
    val_members: int = 4
    val_steps: int = 10
    val_days: int = 1


@dataclass(frozen=True)
class SampleConfig:
    """Generation defaults.

    Attributes
    ----------
    sampler : {"dpmpp2m", "ddim"}
        The sampler of :mod:`sitsr_core.sampling` (:data:`SAMPLERS`): ``dpmpp2m`` (DPM-Solver++(2M),
        second order, deterministic) or ``ddim`` (first order; stochastic with ``eta > 0``). With the
        exact denoiser of a Gaussian, dpmpp2m's samples have 0.95-1.06 of the variance at 10-20 steps,
        deterministic DDIM's 0.66-0.84 (tests/test_sampling.py).
    steps : int
        Sampler steps (network evaluations per member).
    eta : float
        0 for deterministic DDIM, > 0 for stochastic sampling.
    members : int
        Ensemble size.
    chunk : int
        Members generated together.
    tile, overlap : int
        Tile size and overlap (cells) for domains larger than ``tile``.
    tile_batch : int
        Crops (member x tile) per forward pass. Every pass is padded to exactly this
        many crops, so a member's values do not depend on ``chunk`` or ``members``
        (batch-size dependent kernels would otherwise change the last bits).
    seed : int
        Base seed; member m uses seed + m.
    compile : bool
        ``torch.compile`` the network for generation (worth it on a GPU for long jobs: every pass has
        the same shape, so it compiles once, in about a minute).
    """

    sampler: str = "dpmpp2m"
    steps: int = 20
    eta: float = 0.0
    members: int = 30
    chunk: int = 10
    tile: int = 256
    overlap: int = 32
    tile_batch: int = 10
    seed: int = 0
    compile: bool = False


@dataclass(frozen=True)
class Config:
    """The whole configuration of a run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)

    def to_dict(self) -> dict:
        """Plain nested dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        """Rebuild from :meth:`to_dict` output; unknown keys are an error."""
        return _build(cls, d, "config")

    def to_json(self) -> str:
        """Canonical JSON text."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def hash(self) -> str:
        """Short SHA-256 of the canonical JSON (identifies a configuration)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]

    def validate(self) -> "Config":
        """Check cross-field consistency; return self."""
        bad = [f for f in self.data.features if f not in FEATURES]
        if bad or not self.data.features:
            raise SitsrConfigError(f"data.features {list(self.data.features)} must be a non-empty subset of "
                                   f"{list(FEATURES)}")
        if self.data.target not in TARGETS:
            raise SitsrConfigError(f"data.target must be one of {list(TARGETS)}, got {self.data.target!r}")
        if self.diffusion.prediction not in ("eps", "v"):
            raise SitsrConfigError(f"diffusion.prediction must be 'eps' or 'v', got {self.diffusion.prediction!r}")
        if not 0 < self.diffusion.min_signal_rate < self.diffusion.max_signal_rate < 1:
            raise SitsrConfigError("need 0 < diffusion.min_signal_rate < diffusion.max_signal_rate < 1")
        if self.train.objective not in ("diffusion", "regression"):
            raise SitsrConfigError(f"train.objective must be 'diffusion' or 'regression', got {self.train.objective!r}")
        if self.data.base_conditioning and self.data.target != "residual":
            raise SitsrConfigError("data.base_conditioning is for data.target=residual (the base is the regression)")
        if self.train.objective == "regression" and self.data.target == "residual":
            raise SitsrConfigError("data.target=residual is for diffusion runs (the residual of a regression run)")
        levels = 2 ** (len(self.model.widths) - 1)
        if self.data.patch % levels:
            raise SitsrConfigError(f"data.patch={self.data.patch} must be a multiple of {levels} for "
                                   f"{len(self.model.widths)} levels")
        for name, value in (("sample.steps", self.sample.steps), ("sample.members", self.sample.members),
                            ("sample.chunk", self.sample.chunk), ("sample.tile_batch", self.sample.tile_batch),
                            ("train.steps", self.train.steps), ("train.val_days", self.train.val_days),
                            ("train.batch", self.train.batch)):
            if value < 1:
                raise SitsrConfigError(f"{name} must be >= 1, got {value}")
        if self.sample.sampler not in SAMPLERS:
            raise SitsrConfigError(f"sample.sampler must be one of {list(SAMPLERS)}, got {self.sample.sampler!r}")
        if self.sample.eta < 0:
            raise SitsrConfigError(f"sample.eta must be >= 0, got {self.sample.eta}")
        if self.train.objective != "regression" and min(self.sample.steps, self.train.val_steps) < MIN_SAMPLER_STEPS:
            raise SitsrConfigError(f"sample.steps and train.val_steps must be >= {MIN_SAMPLER_STEPS} for a diffusion "
                                   f"model (one step returns the prediction at full noise, a posterior mean), got "
                                   f"{self.sample.steps} and {self.train.val_steps}")
        if self.sample.eta > 0 and self.sample.sampler not in STOCHASTIC_SAMPLERS:
            raise SitsrConfigError(f"sample.eta > 0 needs a stochastic sampler ({list(STOCHASTIC_SAMPLERS)}); "
                                   f"sample.sampler={self.sample.sampler} is deterministic")
        if not 0 <= self.sample.overlap < self.sample.tile // 2:
            raise SitsrConfigError("sample.overlap must be >= 0 and less than half of sample.tile")
        return self


def _build(cls, d, where):
    if not isinstance(d, dict):
        raise SitsrConfigError(f"{where} must be a mapping, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise SitsrConfigError(f"unknown keys in {where}: {sorted(unknown)} (known: {sorted(names)})")
    kwargs = {}
    for key, value in d.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value, f"{where}.{key}")
        elif typing.get_origin(hint) is tuple:
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    return cls(**kwargs)


def _coerce(text: str, current):
    if isinstance(current, bool):
        if text.lower() in ("1", "true", "yes"):
            return True
        if text.lower() in ("0", "false", "no"):
            return False
        raise ValueError(text)
    if isinstance(current, tuple):
        items = [t for t in text.replace("(", "").replace(")", "").split(",") if t.strip()]
        kind = type(current[0]) if current else str
        return tuple(kind(t.strip()) for t in items)
    return type(current)(text)


def apply_overrides(cfg: Config, overrides: list[str] | tuple[str, ...]) -> Config:
    """Apply ``group.key=value`` overrides (e.g. ``train.lr=3e-4``, ``data.features=sit_lr,sic_lr``).

    Raises
    ------
    SitsrConfigError
        On an unknown key or a value of the wrong type.
    """
    d = cfg.to_dict()
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise SitsrConfigError(f"override {item!r} must look like group.key=value")
        path, text = item.split("=", 1)
        group, key = path.split(".", 1)
        if group not in d or key not in d[group]:
            raise SitsrConfigError(f"unknown config key {path!r}")
        current = getattr(getattr(cfg, group), key)
        try:
            value = _coerce(text, current)
        except ValueError:
            raise SitsrConfigError(f"bad value {text!r} for {path} (expected {type(current).__name__})") from None
        d[group][key] = list(value) if isinstance(value, tuple) else value
    return Config.from_dict(d).validate()


def profile(name: str) -> Config:
    """Named profiles.

    ``smoke``: a tiny model trained for a few steps (tests, seconds).
    ``quick``: the CPU default of ``make book`` (a useful model in ~20 minutes on 2 cores).
    ``full``: seed-sized training for a GPU.
    """
    if name == "smoke":
        return Config(
            data=DataConfig(patch=32),
            model=ModelConfig(widths=(8, 16), blocks_per_level=1, embedding_dim=16),
            train=TrainConfig(steps=6, batch=4, log_every=2, val_every=3, ckpt_every=3, val_members=2,
                              val_steps=3, bf16=False, channels_last=False),
            sample=SampleConfig(steps=4, members=3, chunk=2, tile=32, overlap=8, tile_batch=4),
        ).validate()
    if name == "quick":
        # Measured on the 2-core CPU (bf16 + channels_last, glibc malloc): ~0.6 s per step of 16 patches of
        # 64x64 (~26 samples/s), ~15 s per validation ensemble on the 384x384 "central" window, so 500 steps
        # take ~5.5 minutes; make book trains five such runs (regression baseline, diffusion on its residual,
        # anomaly and full-field targets, sit + sic) within its 45 minutes. v-prediction: at such short budgets
        # eps-prediction gave noisy samples (smoke model, 600 steps: ensemble-mean RMSE 0.60 m against 0.31 m for v
        # and 0.38 m for interpolation). Validation ensemble-mean RMSE of the quick model: 0.40 m after 500 steps,
        # 0.35 m after 1000 (interpolation 0.61 m). One 384x384 tile samples fastest.
        return Config(
            data=DataConfig(patch=64),
            diffusion=DiffusionConfig(prediction="v"),
            train=TrainConfig(steps=500, batch=16, log_every=25, val_every=500, ckpt_every=250),
            # two crops per forward pass: 0.32 s per 384x384 crop against 0.43 s with ten (bf16, 2 cores)
            sample=SampleConfig(steps=20, members=30, chunk=10, tile=384, overlap=32, tile_batch=2),
        ).validate()
    if name == "full":
        # v-prediction and the low noise floor of the defaults (eps-prediction divides by the signal rate at t = 1)
        return Config(
            data=DataConfig(patch=256),
            train=TrainConfig(steps=100_000, batch=64, lr=5e-4, compile=True, val_every=2000, ckpt_every=2000,
                              val_members=10, val_steps=20),
            # one tile covers the whole 1086 x 1308 grid, 10 members per pass (13 GB on an H100, compiled:
            # 6.8 s for 30 members x 20 steps against 10.7 s with 512-cell tiles; benchmarks/results)
            sample=SampleConfig(steps=20, members=30, chunk=30, tile=1312, overlap=64, tile_batch=10, compile=True),
        ).validate()
    raise SitsrConfigError(f"unknown profile {name!r}; choose smoke, quick or full")
