"""Run folders: atomic writes of checkpoints, JSON and CSV, and loading a trained model.

A run folder holds ``checkpoint.pt`` (model, EMA, optimiser, step, RNG states),
``config.json`` (:meth:`Config.to_json`), ``norm_stats.json``, ``metrics.csv`` and
``provenance.json`` (the training dataset and, per training session, package versions, git
commit and config hash; :mod:`sitsr_core.provenance`). A ``residual`` run also holds its base
regression run in ``base/`` (config, statistics, provenance and EMA weights), so that the folder
alone regenerates its ensembles. :func:`load_run` returns a :class:`LoadedRun`: the
:class:`~sitsr_core.diffusion.Denoiser`, its config and statistics, and the loaded base run.
Every file is written through :func:`sitsr_core.fileio.atomic_output`.
"""

from __future__ import annotations

import csv
import io
import json
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import Config
from .diffusion import Denoiser
from .errors import SitsrConfigError, SitsrInputError
from .fileio import atomic_output
from .networks import build_network

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
NORM_STATS = "norm_stats.json"
METRICS = "metrics.csv"
PROVENANCE = "provenance.json"
BASE = "base"
METRIC_COLUMNS = ("step", "loss", "val_loss", "lr", "samples_per_s", "val_rmse", "val_rmse_interp")


def write_text(path, text: str) -> None:
    """Write text atomically (temporary sibling, fsync, rename), replacing ``path``."""
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(text)


def save_checkpoint(path, state: dict) -> None:
    """``torch.save`` a state dict atomically, replacing ``path``."""
    with atomic_output(path, overwrite=True) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path, map_location="cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only``: no code runs)."""
    path = Path(path)
    if not path.exists():
        raise SitsrInputError(f"{path}: checkpoint not found")
    try:
        # weights_only: tensors, numbers, strings and containers only, so that a run folder from
        # someone else cannot run code when it is loaded (RNG states are saved as such values)
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found is None:  # not a pickle at all, or a damaged one
            raise SitsrConfigError(f"{path}: cannot be read as a checkpoint (not a torch checkpoint, or damaged)") \
                from None
        raise SitsrConfigError(f"{path}: refused: the checkpoint holds objects other than weights and plain "
                               f"values ({found.group(1)}), which could run code when loaded") from None
    except Exception as exc:  # noqa: BLE001 - a corrupt file is a user-facing error
        raise SitsrConfigError(f"{path}: cannot be read as a checkpoint ({exc.__class__.__name__}: {exc})") from None


def write_metrics(path, rows: list[dict]) -> None:
    """Write ``metrics.csv`` atomically (columns :data:`METRIC_COLUMNS`; missing values empty)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in METRIC_COLUMNS})
    write_text(path, buf.getvalue())


def read_metrics(path) -> list[dict]:
    """Rows of ``metrics.csv`` as dicts of floats (None where empty); ``step`` as int."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            row = {k: (float(v) if v not in ("", None) else None) for k, v in r.items()}
            row["step"] = int(row["step"])
            rows.append(row)
    return rows


def read_json(path) -> dict:
    """A JSON object of a run folder; a file that is not one is a one-line user error."""
    try:
        value = json.loads(Path(path).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SitsrConfigError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise SitsrConfigError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def read_config(run_dir) -> Config:
    """The :class:`Config` saved in a run folder."""
    if not Path(run_dir).is_dir():
        raise SitsrInputError(f"{run_dir}: run folder not found")
    path = Path(run_dir) / CONFIG
    if not path.exists():
        raise SitsrInputError(f"{path}: not found ({run_dir} is not a training run folder)")
    return Config.from_dict(read_json(path)).validate()


def read_provenance(run_dir) -> dict:
    """The ``provenance.json`` of a run folder: ``dataset`` (path, fingerprint, identity) and ``sessions``."""
    path = Path(run_dir) / PROVENANCE
    if not path.exists():
        raise SitsrConfigError(f"{path}: not found (a run trained before sitsr recorded provenance)")
    return read_json(path)


def read_norm_stats(run_dir) -> dict:
    """The normalisation statistics saved in a run folder."""
    path = Path(run_dir) / NORM_STATS
    if not path.exists():
        raise SitsrInputError(f"{path}: not found ({run_dir} is not a training run folder)")
    return read_json(path)


def features_of(cfg: Config, base_features: tuple[str, ...] = ()) -> tuple[str, ...]:
    """LR features read by a run of config ``cfg`` whose base run reads ``base_features`` (order kept)."""
    return tuple(dict.fromkeys(tuple(cfg.data.features) + tuple(base_features)))


@dataclass
class LoadedRun:
    """A trained run in memory: its :class:`~sitsr_core.diffusion.Denoiser` and what goes with it.

    Attributes
    ----------
    model : Denoiser
        In eval mode, on the device it was loaded on.
    cfg : Config
    stats : dict
        The run's ``norm_stats.json``.
    base : LoadedRun or None
        The regression run a ``residual`` target is relative to.
    path : Path
        The run folder.
    """

    model: Denoiser
    cfg: Config
    stats: dict
    base: "LoadedRun | None" = None
    path: Path | None = None

    @property
    def features(self) -> tuple[str, ...]:
        """LR features read by this run and its base run (order kept; see :func:`features_of`)."""
        return features_of(self.cfg, self.base.features if self.base is not None else ())


def load_run(run_dir, device="cpu", weights: str = "ema", bf16: bool | None = None,
             channels_last: bool | None = None) -> LoadedRun:
    """Load a run folder: its trained :class:`~sitsr_core.diffusion.Denoiser`, config, statistics and base run.

    Parameters
    ----------
    run_dir : path
    device : str or torch.device
    weights : {"ema", "model"}
        Which weights to load (EMA for sampling).
    bf16, channels_last : bool, optional
        Inference options (default: the run's ``train`` config; bf16 is turned
        off on devices without bf16 support).

    Returns
    -------
    LoadedRun
        The model in eval mode on ``device``; a ``residual`` run's ``base`` is its base run
        (EMA weights of ``run_dir/base``).
    """
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    stats = read_norm_stats(run_dir)
    ckpt = load_checkpoint(run_dir / CHECKPOINT)
    if weights not in ("ema", "model"):
        raise SitsrInputError(f"weights must be 'ema' or 'model', got {weights!r}")
    net = build_network(cfg)
    try:
        net.load_state_dict(ckpt[weights])
    except (KeyError, RuntimeError) as exc:
        raise SitsrConfigError(f"{run_dir / CHECKPOINT}: weights do not match config.json ({exc})") from None
    net = net.to(device).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    base = None
    if cfg.data.target == "residual":
        if not (run_dir / BASE / CHECKPOINT).exists():
            raise SitsrInputError(f"{run_dir}: a residual run without its base run ({run_dir / BASE} is missing)")
        base = load_run(run_dir / BASE, device=device, bf16=bf16, channels_last=channels_last)
    model = Denoiser(net, cfg, stats, bf16=bf16, channels_last=channels_last)
    dev = torch.device(device)
    if model.bf16 and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        model.bf16 = False
    if model.channels_last:
        net.to(memory_format=torch.channels_last)
    return LoadedRun(model, cfg, model.stats, base, run_dir)


def run_features(run_dir) -> tuple[str, ...]:
    """LR features a run folder's model reads: its own and, for a ``residual`` run, its base run's (order kept)."""
    cfg = read_config(run_dir)
    if cfg.data.target != "residual":
        return features_of(cfg)
    return features_of(cfg, run_features(Path(run_dir) / BASE))


def copy_base_run(base_run, run_dir) -> Path:
    """Copy a regression run into ``run_dir/base``: config, statistics, provenance and EMA weights.

    The checkpoint is written last, so an interrupted copy is detected (and redone) by its absence.

    Returns
    -------
    Path of the copy.
    """
    src, dst = Path(base_run), Path(run_dir) / BASE
    dst.mkdir(parents=True, exist_ok=True)
    for name in (CONFIG, NORM_STATS, PROVENANCE):
        if (src / name).exists():
            write_text(dst / name, (src / name).read_text())
    state = load_checkpoint(src / CHECKPOINT)
    save_checkpoint(dst / CHECKPOINT, {"step": state["step"], "ema": state["ema"], "config": state.get("config")})
    return dst
