"""Training loop: random patches, AdamW, EMA, validation, checkpoints, resume and DDP.

``train(cfg, data_path, run_dir)`` trains the UNet of :mod:`sitsr_core.networks`
with the objective of :mod:`sitsr_core.diffusion` on random ``data.patch`` x
``data.patch`` patches of the dataset store's ``train`` days (held in memory as
normalised float32 numpy arrays, land = 0). Patches with more land than
``data.max_land_fraction`` are never drawn (uniform over the admissible patch
positions, i.e. rejection sampling), and each patch gets one of the 8 flips /
transposes.

Reproducibility: the weights are initialised from ``torch.manual_seed(train.seed)``;
patches come from ``numpy.random.default_rng(train.seed)`` and diffusion times
and noise from ``torch.Generator().manual_seed(train.seed)`` (CPU, then moved to
the device). Their states are saved in ``checkpoint.pt`` so that ``resume=True``
continues an interrupted run exactly (bit-identical on CPU with bf16 off).
Validation uses its own generators and never disturbs the training streams.

Distributed (``torchrun --nproc_per_node N -m sitsr_core.train --data D --run-dir R``): every
rank draws the same global batch (indices, times, noise) and keeps its slice of
``train.batch / N`` patches; the loss is normalised by the ocean-cell count of
the *global* batch so that DDP's gradient average equals the single-process
gradient. Rank 0 validates and writes the run folder.

The EMA of the weights uses the decay ``min(train.ema, (1 + step) / (10 + step))``
(a warm-up, so that short runs are not dominated by the initial weights); the
learning rate is constant.

Interruptions: every file of the run folder is written atomically
(:func:`sitsr_core.fileio.atomic_output`), so a crash leaves the last checkpoint and no partial file;
``resume=True`` removes the temporaries of killed processes, drops the ``metrics.csv`` rows after
the checkpoint and continues bit-identically (a run killed before its first checkpoint restarts
from step 0). The first SIGINT (Ctrl-C) stops the loop after the current step, saves a checkpoint
there and raises :class:`~sitsr_core.errors.SitsrInterrupted` ("interrupted at step N; resume
with --resume"; the CLI exits with status 130); a second SIGINT interrupts at once. Under DDP the
ranks agree on the stop through an all-reduce of the request after each step.

Testing hook: the environment variable ``SITSR_TEST_KILL_AT_STEP=N`` (or ``N:INT``) makes the
process send itself SIGKILL (or SIGINT) at the end of step ``N``, after that step's writes; with
``SITSR_TEST_KILL_BEFORE_RENAME`` (:data:`sitsr_core.fileio.KILL_BEFORE_RENAME_ENV`) it dies in the
middle of writing a file. The interruption tests use them to stop a run at exact points.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

from . import checkpoint, diffusion, fileio, sampling
from .config import Config, apply_overrides, profile
from .dataset import norm_stats, open_dataset
from .downscale import base_field, postprocess
from .errors import SitsrConfigError, SitsrDataError, SitsrInputError, SitsrInterrupted, exit_status
from .loader import ArrayPatches, DrawBatches, StorePatches, collate, patch_loader
from .networks import build_network
from .provenance import dataset_record, differences, provenance

#: Diffusion times of the validation loss.
VAL_T = (np.arange(8) + 0.5) / 8
#: Fixed patches scored by the validation loss.
VAL_PATCHES = 16
#: Testing hook (see the module docstring).
KILL_AT_STEP_ENV = "SITSR_TEST_KILL_AT_STEP"


# ------------------------------------------------------------------------------------------ data

def read_days(ds, split: str, cfg: Config, days: list[int] | None = None, physical: bool = False,
              base_model=None, progress: bool = False) -> dict:
    """One split's days in metres, with the base field of the target (:func:`sitsr_core.downscale.base_field`).

    Returns
    -------
    dict with ``fields`` (name -> (T, H, W) float32: the features, ``sit``, ``sit_lr``, ``sic_lr`` and,
    with ``physical``, ``sit_interp``), ``base`` (T, H, W), ``mask`` (H, W) bool and ``dates``.
    """
    labels = np.asarray(ds["split"].values).astype(str)
    idx = np.flatnonzero(labels == split)
    if days is not None:
        idx = idx[days]
    if idx.size == 0:
        raise SitsrDataError(f"the dataset has no {split!r} day")
    mask = np.asarray(ds["mask"].values).astype(bool)
    names = set(cfg.data.features) | {"sit", "sit_lr", "sic_lr"} | ({"sit_interp"} if physical else set())
    if base_model is not None:
        names |= set(base_model.features)
    sub = ds[sorted(names)].isel(time=idx)
    fields = {k: np.asarray(sub[k].values, dtype=np.float32) for k in sorted(names)}
    return {"fields": fields, "base": base_field(cfg, fields, mask, base_model, progress=progress),
            "mask": mask, "dates": np.asarray(ds["time"].values)[idx]}


def residual_stats(raw: dict) -> dict:
    """``{"mean", "std"}`` (m) of ``sit - base`` over the ocean cells of :func:`read_days` output."""
    a = (raw["fields"]["sit"] - raw["base"])[:, raw["mask"]].astype(np.float64)
    a = a[np.isfinite(a)]
    if a.size == 0:
        raise SitsrDataError("no finite residual on the training days")
    return {"mean": float(a.mean()), "std": float(a.std()) or 1.0}


def normalise_days(raw: dict, cfg: Config, stats: dict, physical: bool = False) -> dict:
    """:func:`read_days` output -> normalised float32 arrays.

    Returns
    -------
    dict with ``ctx`` (T, C + 1, H, W) (features + mask), ``y`` (T, H, W), ``mask`` (H, W) bool,
    ``dates``; with ``physical=True`` also ``sit``, ``sit_lr``, ``sic_lr``, ``sit_interp`` and ``base``
    (T, H, W) in metres.
    """
    fields, mask = raw["fields"], raw["mask"]
    out = {
        "ctx": diffusion.normalise_context({**fields, "base": raw["base"]}, mask, cfg, stats).astype(np.float32),
        "y": diffusion.normalise_target(fields["sit"], raw["base"], mask, cfg, stats).astype(np.float32),
        "mask": mask,
        "dates": raw["dates"],
    }
    if physical:
        out.update({k: fields[k] for k in ("sit", "sit_lr", "sic_lr", "sit_interp")}, base=raw["base"])
    return out


def load_days(ds, split: str, cfg: Config, stats: dict, days: list[int] | None = None, physical: bool = False,
              base_model=None) -> dict:
    """One split's days as normalised arrays (:func:`read_days`, then :func:`normalise_days`)."""
    raw = read_days(ds, split, cfg, days=days, physical=physical, base_model=base_model)
    return normalise_days(raw, cfg, stats, physical=physical)


class PatchSampler:
    """Uniform random patches whose land fraction is at most ``max_land``, with dihedral augmentation.

    Parameters
    ----------
    n_days : int
    mask : ndarray bool (H, W)
        True on ocean.
    patch : int
    max_land : float
    """

    def __init__(self, n_days: int, mask: np.ndarray, patch: int, max_land: float):
        H, W = mask.shape
        if patch > H or patch > W:
            raise SitsrConfigError(f"data.patch={patch} is larger than the {H}x{W} domain")
        sat = np.pad(np.cumsum(np.cumsum((~mask).astype(np.int64), 0), 1), ((1, 0), (1, 0)))
        land = (sat[patch:, patch:] - sat[:-patch, patch:] - sat[patch:, :-patch] + sat[:-patch, :-patch])
        self.land_fraction = land / patch ** 2
        self.rows, self.cols = np.nonzero(self.land_fraction <= max_land)
        if self.rows.size == 0:
            raise SitsrDataError(f"no {patch}x{patch} patch has at most {max_land:.0%} land; "
                                 "lower data.patch or raise data.max_land_fraction")
        self.n_days = n_days
        self.patch = patch

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``(n, 4)`` int array of (day, row, col, dihedral code 0-7)."""
        day = rng.integers(0, self.n_days, n)
        pos = rng.integers(0, self.rows.size, n)
        code = rng.integers(0, 8, n)
        return np.stack([day, self.rows[pos], self.cols[pos], code], axis=1)

    def ocean_cells(self, draws: np.ndarray) -> float:
        """Total ocean cells of the drawn patches."""
        return float(((1.0 - self.land_fraction[draws[:, 1], draws[:, 2]]) * self.patch ** 2).sum())


def make_batch(data: dict, draws: np.ndarray, patch: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ctx (n, C + 1, P, P), y (n, 1, P, P))`` float32 for the given draws of in-memory days."""
    patches = ArrayPatches(data, patch)
    return collate([patches[d] for d in draws])[1:]


def train_patches(ds, data_path, cfg: Config, stats: dict, base_model=None, progress: bool = False):
    """The training split's patches (a map-style dataset of draws, :mod:`sitsr_core.loader`) and the statistics.

    Streamed from a zarr store (memory flat in the number of days) when the target's base field comes
    from the LR fields; for ``data.target = residual`` (a regression prediction over whole days) or a
    netCDF store, the days are read into memory and the residual's statistics added to ``stats``.
    """
    if base_model is None and Path(data_path).is_dir():
        return StorePatches(data_path, "train", cfg, stats, cfg.data.patch), stats
    raw = read_days(ds, "train", cfg, base_model=base_model, progress=progress)
    if base_model is not None and "residual" not in stats:
        stats = {**stats, "residual": residual_stats(raw)}
    return ArrayPatches(normalise_days(raw, cfg, stats), cfg.data.patch), stats


# ----------------------------------------------------------------------------------- distributed

def _dist():
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist, dist.get_rank(), dist.get_world_size()
    return None, 0, 1


def _device(device) -> torch.device:
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


# ------------------------------------------------------------------------------------ validation

class Validator:
    """Fixed validation: a loss on fixed patches and times, and a small DDIM ensemble's RMSE."""

    def __init__(self, ds, cfg: Config, stats: dict, device: torch.device, base_model=None):
        self.cfg = cfg
        self.device = device
        labels = np.asarray(ds["split"].values).astype(str)
        n_val = int((labels == "val").sum())
        self.enabled = n_val > 0
        if not self.enabled:
            return
        self.data = normalise_days(read_days(ds, "val", cfg, physical=True, base_model=base_model), cfg, stats,
                                   physical=True)
        P = cfg.data.patch
        H, W = self.data["mask"].shape
        rng = np.random.default_rng(cfg.train.seed + 1)
        self.batches = []
        if P <= H and P <= W:
            sampler = PatchSampler(n_val, self.data["mask"], P, cfg.data.max_land_fraction)
            draws = sampler.draw(rng, VAL_PATCHES)
            draws[:, 3] = 0
            ctx, y = make_batch(self.data, draws, P)
            g = torch.Generator().manual_seed(cfg.train.seed + 2)
            noise = torch.randn((len(VAL_T),) + y.shape, generator=g)
            self.batches = (torch.from_numpy(ctx), torch.from_numpy(y), noise)
        k = max(1, min(cfg.train.val_days, n_val))
        days = sorted({int(i) for i in np.linspace(0, n_val - 1, k).round()})
        self.phys = {k: v if k == "mask" else v[days] for k, v in self.data.items()}

    @torch.no_grad()
    def loss(self, net) -> float | None:
        if not self.enabled or not self.batches:
            return None
        ctx, y, noise = self.batches
        ctx, y = ctx.to(self.device), y.to(self.device)
        mask = ctx[:, -1:]
        model = diffusion.Denoiser(net, self.cfg, {}, bf16=self.cfg.train.bf16,
                                   channels_last=self.cfg.train.channels_last, compile=False)
        sums = counts = 0.0
        ts = VAL_T[:1] if self.cfg.train.objective == "regression" else VAL_T
        for i, t in enumerate(ts):
            tt = torch.full((y.shape[0],), float(t), device=self.device)
            s, c = diffusion.loss_terms(model._net, y, ctx, mask, self.cfg, t=tt, noise=noise[i].to(self.device))
            sums, counts = sums + float(s.sum()), counts + float(c.sum())
        return sums / max(counts, 1.0)

    @torch.no_grad()
    def ensemble_rmse(self, net, stats: dict) -> tuple[float | None, float | None]:
        """RMSE (m, ocean cells) of the EMA ensemble mean and of ``sit_interp`` against ``sit``."""
        if not self.enabled:
            return None, None
        cfg = self.cfg
        model = diffusion.Denoiser(net, cfg, stats, compile=False)  # a few small ensembles: not worth compiling
        p = self.phys
        mask = p["mask"]
        err = err_i = n = 0.0
        for d in range(p["ctx"].shape[0]):
            ctx = torch.from_numpy(p["ctx"][d])
            y = sampling.generate(model, ctx, torch.from_numpy(mask.astype(np.float32)),
                                  members=cfg.train.val_members, steps=cfg.train.val_steps, eta=0.0,
                                  seed=cfg.sample.seed, chunk=cfg.train.val_members, tile=cfg.sample.tile,
                                  overlap=cfg.sample.overlap, tile_batch=cfg.sample.tile_batch)
            sit = postprocess(model.to_metres(y.numpy(), p["base"][d][None]), mask, p["sic_lr"][d])
            truth = np.nan_to_num(p["sit"][d])
            err += float((((sit.mean(0) - truth) ** 2)[mask]).sum())
            err_i += float((((np.nan_to_num(p["sit_interp"][d]) - truth) ** 2)[mask]).sum())
            n += float(mask.sum())
        return math.sqrt(err / max(n, 1)), math.sqrt(err_i / max(n, 1))


# -------------------------------------------------------------------------------------- training

def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}"


def _config_diff(a: Config, b: Config) -> list[str]:
    da, db = a.to_dict(), b.to_dict()
    return [f"{g}.{k}: {da[g][k]!r} -> {db[g][k]!r}" for g in da for k in da[g] if da[g][k] != db[g][k]]


def _rng_state(rng: np.random.Generator, gen: torch.Generator) -> dict:
    return {"numpy": rng.bit_generator.state, "torch": gen.get_state(), "torch_global": torch.get_rng_state(),
            "python": random.getstate()}


def _set_rng_state(state: dict, rng: np.random.Generator, gen: torch.Generator) -> None:
    rng.bit_generator.state = state["numpy"]
    gen.set_state(state["torch"])
    torch.set_rng_state(state["torch_global"])
    if "python" in state:  # checkpoints written before the python state was saved
        random.setstate(state["python"])


class StopRequest:
    """SIGINT handler of the training loop (a context manager, main thread only).

    The first SIGINT sets :attr:`requested` (the loop stops after the current step, with a
    checkpoint); the handler then restores the previous one, so a second SIGINT interrupts at once.
    """

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle) or signal.SIG_DFL  # None: set from C
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True
        self._restore()
        print("\nSIGINT: stopping after this step with a checkpoint (press Ctrl-C again to abort now)",
              file=sys.stderr)

    def _restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def __exit__(self, *exc) -> None:
        self._restore()


def _test_hook(step: int) -> None:
    """Send the signal named by ``$SITSR_TEST_KILL_AT_STEP`` (``N``: SIGKILL, ``N:INT``: SIGINT) at step N."""
    value = os.environ.get(KILL_AT_STEP_ENV)
    if value:
        at, _, name = value.partition(":")
        if int(at) == step:
            os.kill(os.getpid(), getattr(signal, "SIG" + (name or "KILL")))


def _agreed(flag: bool, dist, device: torch.device) -> bool:
    """True on every rank when ``flag`` is set on any rank."""
    if dist is None:
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t)
    return bool(t.item() > 0)


def _provenance(run_dir: Path, start: int, dataset: dict, cfg: Config) -> dict:
    """The run folder's ``provenance.json``: its dataset and one entry per training session."""
    sessions = []
    if start and (run_dir / checkpoint.PROVENANCE).exists():
        sessions = [s for s in checkpoint.read_provenance(run_dir)["sessions"] if s["from_step"] < start]
    return {"dataset": dataset, "sessions": sessions + [{"from_step": start, **provenance(cfg)}]}


def _check_same_dataset(run_dir: Path, dataset: dict) -> None:
    """Refuse to resume a run on another dataset than the one it started on."""
    if not (run_dir / checkpoint.PROVENANCE).exists():
        return
    trained = checkpoint.read_provenance(run_dir)["dataset"]
    if trained["fingerprint"] != dataset["fingerprint"]:
        raise SitsrConfigError(f"{run_dir}: cannot resume on {dataset['path']}: the run was trained on "
                               f"{trained['path']} ({differences(dataset['identity'], trained['identity'])})")


@torch.no_grad()
def _ema_update(ema: list[torch.Tensor], params: list[torch.Tensor], decay: float) -> None:
    torch._foreach_lerp_(ema, params, 1.0 - decay)


def _base_model(cfg: Config, run_dir: Path, base_run, dataset: dict, resume: bool, device):
    """The regression run of a ``residual`` run (None otherwise), copied into ``run_dir/base`` first.

    Refuses a base that is not a regression run, was trained on another dataset, or differs from
    the base a resumed run started with.
    """
    if cfg.data.target != "residual":
        if base_run is not None:
            raise SitsrConfigError(f"--base-run is for data.target=residual (this run's target is {cfg.data.target})")
        return None
    copy = run_dir / checkpoint.BASE
    have = (copy / checkpoint.CHECKPOINT).exists()
    if base_run is None and not (resume and have):
        raise SitsrConfigError("data.target=residual needs --base-run: a regression run "
                               "(train.objective=regression) trained on the same dataset")
    if base_run is not None:
        base_run = Path(base_run)
        base_cfg = checkpoint.read_config(base_run)
        if base_cfg.train.objective != "regression":
            raise SitsrConfigError(f"--base-run {base_run}: not a regression run "
                                   f"(train.objective={base_cfg.train.objective})")
        trained = checkpoint.read_provenance(base_run)["dataset"]
        if trained["fingerprint"] != dataset["fingerprint"]:
            raise SitsrConfigError(f"--base-run {base_run} was trained on {trained['path']}, not on {dataset['path']} "
                                   f"({differences(dataset['identity'], trained['identity'])})")
        new = checkpoint.load_checkpoint(base_run / checkpoint.CHECKPOINT)["ema"]
        if have:
            old = checkpoint.load_checkpoint(copy / checkpoint.CHECKPOINT)["ema"]
            if resume and not all(torch.equal(old[k], new[k]) for k in new):
                raise SitsrConfigError(f"{run_dir}: cannot resume with another base run than {copy} "
                                       f"(the weights of --base-run {base_run} differ)")
        if not (resume and have):
            checkpoint.copy_base_run(base_run, run_dir)
    return checkpoint.load_run(copy, device=device)


def train(cfg: Config, data_path, run_dir, resume: bool = False, progress: bool = True,
          device: str | None = None, base_run=None, loader_workers: int = 0) -> Path:
    """Train a model and write its run folder.

    Parameters
    ----------
    cfg : Config
    data_path : path
        Dataset store (``sitsr dataset`` output).
    run_dir : path
        Run folder (created; must not hold a checkpoint unless ``resume``).
    resume : bool
        Continue from ``run_dir/checkpoint.pt`` (from step 0 when the run was stopped before its
        first checkpoint). ``cfg`` must equal the saved config except for ``train.steps`` (which
        may be raised to extend a run), and the dataset must be the one the run started on.
    progress : bool
        tqdm progress bar (rank 0).
    device : str, optional
        Default: ``cuda:LOCAL_RANK`` when CUDA is available, else ``cpu``.
    base_run : path, optional
        For ``data.target = residual``: the regression run (same dataset) whose prediction the
        target is relative to; copied into ``run_dir/base`` (a resumed run uses its copy). The
        residual's statistics over the training days are added to ``norm_stats.json``.
    loader_workers : int
        ``DataLoader`` worker processes reading the training patches (0: in this process). The
        batches, hence the run, do not depend on it.

    Returns
    -------
    Path of the run folder.

    Raises
    ------
    SitsrInputError
        Missing dataset, an existing run without ``resume``, or an incompatible resume.
    SitsrInterrupted
        On SIGINT, after saving a checkpoint at the current step.
    """
    from tqdm.auto import tqdm

    cfg = cfg.validate()
    if loader_workers < 0:
        raise SitsrInputError(f"train: --loader-workers must be >= 0, got {loader_workers}")
    tc = cfg.train
    dist, rank, world = _dist()
    if tc.batch % world:
        raise SitsrConfigError(f"train.batch={tc.batch} must be a multiple of the {world} processes")
    dev = _device(device)
    run_dir = Path(run_dir)
    ckpt_path = run_dir / checkpoint.CHECKPOINT

    ds = open_dataset(data_path)
    stats = norm_stats(ds)
    dataset = dataset_record(ds, data_path)
    start = 0
    state = None
    if resume:
        if not (run_dir / checkpoint.CONFIG).exists():
            raise SitsrInputError(f"{run_dir}: nothing to resume (no {checkpoint.CONFIG}: no run was started there)")
        saved = checkpoint.read_config(run_dir)
        diff = [d for d in _config_diff(saved, cfg) if not d.startswith("train.steps:")]
        if diff:
            raise SitsrConfigError(f"{run_dir}: cannot resume with a different configuration ({'; '.join(diff)})")
        _check_same_dataset(run_dir, dataset)
        if ckpt_path.exists():  # otherwise the run was stopped before its first checkpoint: restart at step 0
            state = checkpoint.load_checkpoint(ckpt_path)
            stats = checkpoint.read_norm_stats(run_dir)
            start = int(state["step"])
    elif ckpt_path.exists():
        raise SitsrInputError(f"{run_dir}: already holds a run; pass resume=True (--resume) or choose another folder")

    base_model = None
    if rank == 0:
        base_model = _base_model(cfg, run_dir, base_run, dataset, resume, dev)
    if dist is not None:
        dist.barrier()  # rank 0 has copied the base run
        if rank > 0:
            base_model = _base_model(cfg, run_dir, None, dataset, True, dev)
    patches, stats = train_patches(ds, data_path, cfg, stats, base_model, progress=progress and rank == 0)
    sampler = PatchSampler(patches.n_days, patches.mask, cfg.data.patch, cfg.data.max_land_fraction)
    validator = Validator(ds, cfg, stats, dev, base_model) if rank == 0 else None

    torch.manual_seed(tc.seed)
    random.seed(tc.seed)
    net = build_network(cfg).to(dev)
    rng = np.random.default_rng(tc.seed)
    gen = torch.Generator().manual_seed(tc.seed)
    if tc.channels_last:
        net = net.to(memory_format=torch.channels_last)
    ema_net = copy.deepcopy(net).eval()
    for p in ema_net.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    rows: list[dict] = []
    if state is not None:
        net.load_state_dict(state["model"])
        ema_net.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        _set_rng_state(state["rng"], rng, gen)
        rows = [r for r in checkpoint.read_metrics(run_dir / checkpoint.METRICS) if r["step"] <= start]
        acc0 = state.get("log_accumulator", (0.0, 0))

    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        fileio.remove_stale_temporaries(run_dir)
        checkpoint.write_text(run_dir / checkpoint.CONFIG, cfg.to_json() + "\n")
        checkpoint.write_text(run_dir / checkpoint.NORM_STATS, json.dumps(stats, indent=2, sort_keys=True) + "\n")
        checkpoint.write_text(run_dir / checkpoint.PROVENANCE,
                              json.dumps(_provenance(run_dir, start, dataset, cfg), indent=2) + "\n")
        checkpoint.write_metrics(run_dir / checkpoint.METRICS, rows)  # drops the rows logged after the checkpoint

    model = net
    if dist is not None:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(net, device_ids=[dev.index] if dev.type == "cuda" else None)
    if tc.compile:
        model = torch.compile(model)
    params = [p for p in net.parameters()]
    ema_params = [p for p in ema_net.parameters()]

    local = tc.batch // world
    sl = slice(rank * local, (rank + 1) * local)
    mf = torch.channels_last if tc.channels_last else torch.contiguous_format
    with torch.random.fork_rng(devices=[]):  # the DataLoader draws its base seed from the global generator,
        # which the checkpoint saves: keep it out of the training state so a resumed run stays bit-identical
        batches = iter(patch_loader(patches, DrawBatches(sampler, rng, tc.batch, max(tc.steps - start, 0), rank,
                                                         world), workers=loader_workers))
    bar = tqdm(total=tc.steps, initial=start, desc="train", unit="step", disable=not (progress and rank == 0))
    acc_loss, acc_n, t_log, n_log = 0.0, 0, 0.0, 0
    if state is not None:
        acc_loss, acc_n = float(acc0[0]), int(acc0[1])

    def save_state(step):
        if rank == 0:
            checkpoint.save_checkpoint(ckpt_path, {
                "step": step, "model": net.state_dict(), "ema": ema_net.state_dict(),
                "optimizer": opt.state_dict(), "rng": _rng_state(rng, gen), "config": cfg.to_dict(),
                "log_accumulator": (acc_loss, acc_n),
            })
            checkpoint.write_metrics(run_dir / checkpoint.METRICS, rows)

    with StopRequest() as stop:
        for step in range(start + 1, tc.steps + 1):
            t0 = time.perf_counter()
            net.train()
            draws = sampler.draw(rng, tc.batch)
            t = diffusion.sample_t(tc.batch, gen)
            noise = torch.randn((tc.batch, 1, cfg.data.patch, cfg.data.patch), generator=gen)
            ocean = sampler.ocean_cells(draws)
            got, ctx, y = next(batches)  # this rank's share of the same draws, read by the loader
            if not np.array_equal(got, draws[sl]):
                raise RuntimeError(f"the patch loader is out of step with the training draws at step {step}")
            ctx = torch.from_numpy(ctx).to(dev).contiguous(memory_format=mf)
            y = torch.from_numpy(y).to(dev).contiguous(memory_format=mf)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=tc.bf16):
                sums, _ = diffusion.loss_terms(model, y, ctx, ctx[:, -1:], cfg, t=t[sl].to(dev),
                                               noise=noise[sl].to(dev).contiguous(memory_format=mf))
            loss = sums.sum() / max(ocean, 1.0)
            opt.zero_grad(set_to_none=True)
            (loss * world).backward()
            opt.step()
            _ema_update(ema_params, params, min(tc.ema, (1 + step) / (10 + step)))
            value = loss.detach()
            if dist is not None:
                dist.all_reduce(value)
            value = float(value)
            if not math.isfinite(value):
                raise FloatingPointError(f"training loss is {value} at step {step}")
            acc_loss, acc_n = acc_loss + value, acc_n + 1
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t_log, n_log = t_log + time.perf_counter() - t0, n_log + tc.batch
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4f}", refresh=False)

            last = step == tc.steps
            row = None
            if step % tc.log_every == 0 or last:
                row = {"step": step, "loss": acc_loss / acc_n, "lr": opt.param_groups[0]["lr"],
                       "samples_per_s": n_log / max(t_log, 1e-9)}
                acc_loss, acc_n, t_log, n_log = 0.0, 0, 0.0, 0
            if (step % tc.val_every == 0 or last) and rank == 0 and validator is not None and validator.enabled:
                row = row or {"step": step}
                row["val_loss"] = validator.loss(ema_net)
                row["val_rmse"], row["val_rmse_interp"] = validator.ensemble_rmse(ema_net, stats)
            if row is not None and rank == 0:
                rows.append(row)
                if "val_loss" in row:
                    bar.write(f"step {step}: val_loss {_fmt(row['val_loss'])} val_rmse {_fmt(row['val_rmse'])} m "
                              f"(interp {_fmt(row['val_rmse_interp'])} m)")
                checkpoint.write_metrics(run_dir / checkpoint.METRICS, rows)
            if step % tc.ckpt_every == 0 or last:
                save_state(step)
            if dist is not None and (last or step % tc.ckpt_every == 0 or step % tc.val_every == 0):
                dist.barrier()
            _test_hook(step)
            if not last and _agreed(stop.requested, dist, dev):
                if step % tc.ckpt_every:
                    save_state(step)
                if dist is not None:
                    dist.barrier()
                bar.close()
                raise SitsrInterrupted(f"{run_dir}: interrupted at step {step}; resume with --resume")
    bar.close()
    if start >= tc.steps and rank == 0:
        save_state(start)
    return run_dir


# ------------------------------------------------------------------------------------------- CLI

def add_arguments(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments shared by ``sitsr train`` and ``python -m sitsr_core.train`` (torchrun)."""
    ap.add_argument("--data", required=True, help="dataset store (data/NAME.zarr)")
    ap.add_argument("--run-dir", "--run", dest="run", required=True,
                    help="run folder (spell it --run-dir under torchrun, whose own --run-path makes --run ambiguous)")
    ap.add_argument("--profile", default="quick", help="smoke, quick or full (default quick)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="GROUP.KEY=VALUE",
                    help="config override, repeatable (e.g. --set train.steps=100)")
    ap.add_argument("--resume", action="store_true", help="continue the run in --run")
    ap.add_argument("--base-run", help="regression run a data.target=residual run is relative to (same dataset)")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--loader-workers", type=int, default=0,
                    help="worker processes reading the training patches from the store (default 0)")
    return ap


def main(argv: list[str] | None = None) -> int:
    """``python -m sitsr_core.train`` / ``torchrun ... -m sitsr_core.train``."""
    ap = add_arguments(argparse.ArgumentParser(prog="sitsr_core.train", description=__doc__.splitlines()[0]))
    args = ap.parse_args(argv)
    return exit_status("sitsr_core.train", lambda: _main(args))


def _main(args) -> None:
    """Train from parsed :func:`add_arguments` options, in a process group when ``WORLD_SIZE > 1``."""
    dist = None
    try:
        cfg = apply_overrides(profile(args.profile), args.overrides)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            import torch.distributed as dist

            use_cuda = torch.cuda.is_available() and args.device != "cpu"
            if use_cuda:
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
            dist.init_process_group("nccl" if use_cuda else "gloo")
        train(cfg, args.data, args.run, resume=args.resume, progress=not args.no_progress, device=args.device,
              base_run=args.base_run, loader_workers=args.loader_workers)
    finally:
        if dist is not None and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
