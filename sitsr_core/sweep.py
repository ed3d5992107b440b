"""Sensitivity sweep: which implementation choice moves the skill most? (notebook 05)

Each :class:`Variant` changes one choice against the base (a trained diffusion run with its default
sampling). Every variant generates an ensemble for the same days on the same window, is scored by
:func:`sitsr_core.evaluate.score` (the code path of ``sitsr evaluate``, metres) and becomes one row
of a CSV file, rewritten atomically after each variant, so a rerun continues where it stopped.
:func:`rank` turns the rows into the answer: how far each axis moves CRPS, RMSE, spread-skill and
spectral error from the base.

Two presets:

``quick`` (``make book``, CPU)
    Choices that need no training, on the base run: the sampler (DDIM, DPM-Solver++(2M)) at 5/10/20
    steps, stochastic DDIM (eta), ensemble
    size (subsets of the base ensemble), each input feature replaced by its training mean
    (reliance on that feature), and the LR filter width at inference (LR inputs re-filtered from the
    4 km moorings: what an observation product of another effective resolution does); plus runs the
    pipeline trains at the base budget: anomaly and full-field targets (against a residual base) and
    the sit + sic model (an anomaly model, so it is ranked against the anomaly run: ``reference``).
``full`` (a GPU)
    The quick variants plus a model trained per choice at the base budget: anomaly and full-field
    targets, each feature dropped, two gamma ranges, the LR filter kernel (a dataset per kernel) and
    two widths. For a ``residual`` base, a variant that changes the data or the network trains its
    own regression run first (same changes, same budget), so that an ablated feature or another
    kernel reaches the model through neither of the two networks.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from . import evaluate, fileio, observe
from .baselines import window_grid
from .checkpoint import BASE, load_run, read_config
from .config import apply_overrides
from .dataset import SplitSpec, constitute, constitute_day, open_dataset, split_days
from .downscale import ensemble_metres
from .errors import SitsrInputError
from .fileio import atomic_output
from .train import train

#: Metrics of a row (metres, W/m2 or ratios) and whether lower is better.
METRICS = {
    "crps": "fair CRPS of the ensemble (m)",
    "rmse_mean": "RMSE of the ensemble mean (m)",
    "rmse_member": "RMSE of single members (m)",
    "spread_skill": "spread-skill ratio (1 = reliable)",
    "spectral_error": "mean |log10 P_members / P_truth| over 8-240 km (decades)",
    "large_scale_rmse": "RMSE of the 120 km-filtered ensemble mean against the LR input (m)",
    "heat_flux_error_pct": "error of the domain-mean conductive heat flux (%)",
}
#: Wavelength range (km) of the spectral error: the scales the model must generate.
SPECTRAL_RANGE_KM = (8.0, 240.0)
FEATURES = ("sic_lr", "divergence_lr", "shear_lr")


@dataclass(frozen=True)
class Variant:
    """One choice changed against the base.

    Attributes
    ----------
    axis, value : str
        The choice and its setting (``axis="base"`` for the reference).
    run : str
        Key of the run in the runs mapping (``diffusion`` = the base run); ``trained`` makes
        :func:`run_sweep` train one with ``train`` overrides (and a dataset with ``kernel_km``).
    steps, eta, sampler : optional
        Sampling overrides (``sampler``: a key of :data:`sitsr_core.sampling.SAMPLERS`).
    members : int, optional
        Score the first ``members`` members of the ensemble only (ensemble-size axis).
    impute : tuple of str
        LR features replaced by their training mean (normalised 0) at inference.
    lr_kernel_km : float, optional
        Re-filter the LR inputs from the 4 km fields with this box width at inference.
    train : tuple of str
        ``group.key=value`` overrides of the trained run.
    kernel_km : float, optional
        LR filter of the trained run's dataset.
    reference : str
        Variant the :func:`rank` effect is measured against (default the base; the base when that
        variant was not scored).
    """

    axis: str
    value: str
    run: str = "diffusion"
    steps: int | None = None
    eta: float | None = None
    sampler: str | None = None
    members: int | None = None
    impute: tuple[str, ...] = ()
    lr_kernel_km: float | None = None
    train: tuple[str, ...] = ()
    kernel_km: float | None = None
    reference: str = "base"

    @property
    def name(self) -> str:
        return "base" if self.axis == "base" else f"{self.axis}={self.value}"


def preset(name: str) -> list[Variant]:
    """The variants of a preset (``quick`` or ``full``, see the module docstring)."""
    quick = [Variant("base", "default")]
    # the samplers at 5/10/20 network evaluations (the base is the default sampler at the default steps)
    quick += [Variant("DDIM steps", str(n), steps=n, sampler="ddim") for n in (5, 10, 20)]
    quick += [Variant("DPM-Solver++(2M) steps", str(n), steps=n, sampler="dpmpp2m") for n in (5, 10, 20)]
    quick += [Variant("stochastic sampling (DDIM eta)", str(e), eta=e, sampler="ddim") for e in (0.5, 1.0)]
    quick += [Variant("ensemble size", str(m), members=m) for m in (2, 5)]
    quick += [Variant("input feature imputed", f.removesuffix("_lr"), impute=(f,)) for f in FEATURES]
    quick += [Variant("LR filter at inference (km)", str(k), lr_kernel_km=float(k)) for k in (80, 160)]
    quick += [Variant("target", "anomaly", run="anomaly"), Variant("target", "full field", run="full_target"),
              Variant("input features (retrained)", "sit+sic", run="sitsic", reference="target=anomaly")]
    if name == "quick":
        return quick
    if name != "full":
        raise SitsrInputError(f"sweep preset must be 'quick' or 'full', got {name!r}")
    trained = [Variant("target (retrained)", t, run="trained", train=(f"data.target={t}",))
               for t in ("anomaly", "full")]
    for f in FEATURES:
        keep = ",".join(["sit_lr"] + [g for g in FEATURES if g != f])
        trained.append(Variant("input feature dropped (retrained)", f.removesuffix("_lr"), run="trained",
                               train=(f"data.features={keep}",)))
    for hi, lo in ((0.99, 0.01), (0.9, 0.1)):
        trained.append(Variant("gamma range (signal rates)", f"{hi}-{lo}", run="trained",
                               train=(f"diffusion.max_signal_rate={hi}", f"diffusion.min_signal_rate={lo}")))
    trained += [Variant("filter kernel (km, retrained)", str(k), run="trained", kernel_km=float(k)) for k in (60, 240)]
    trained += [Variant("model width", w, run="trained", train=(f"model.widths={w}",))
                for w in ("16,32,48,64", "48,96,144,192")]
    return [v for v in quick if v.run == "diffusion"] + trained


def pick_window(mask: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the ``size`` x ``size`` window with the most ocean cells (coarse search).

    Parameters
    ----------
    mask : ndarray of bool, shape (H, W)
        True on ocean.
    size : int
        Window side in cells (the whole domain when larger).
    """
    H, W = mask.shape
    if size >= min(H, W):
        return 0, 0
    step = max(1, size // 4)
    best = max(((int(mask[r:r + size, c:c + size].sum()), -abs(r - (H - size) // 2) - abs(c - (W - size) // 2),
                 r, c) for r in range(0, H - size + 1, step) for c in range(0, W - size + 1, step)))
    return best[2], best[3]


def spectral_error(spec: dict, lo_km: float = SPECTRAL_RANGE_KM[0], hi_km: float = SPECTRAL_RANGE_KM[1]) -> float:
    """Mean ``|log10(P_members / P_truth)|`` over wavelengths ``lo_km .. hi_km`` (decades).

    Parameters
    ----------
    spec : dict
        ``spectra`` of :func:`sitsr_core.evaluate.score` (``k_per_km``, ``truth``, ``members``).
    """
    k = np.asarray(spec["k_per_km"], dtype=float)
    truth, members = np.asarray(spec["truth"], dtype=float), np.asarray(spec["members"], dtype=float)
    sel = (k >= 1.0 / hi_km) & (k <= 1.0 / lo_km) & (truth > 0) & (members > 0)
    return float(np.mean(np.abs(np.log10(members[sel] / truth[sel]))))


def row_from_score(result: dict) -> dict:
    """The :data:`METRICS` of one :func:`sitsr_core.evaluate.score` result."""
    s = result["skill"]["scores"]
    return {"crps": s["ensemble"]["crps"], "rmse_mean": s["ensemble"]["rmse"], "rmse_member": s["member"]["rmse"],
            "spread_skill": result["spread_skill"], "spectral_error": spectral_error(result["spectra"]),
            "large_scale_rmse": result["large_scale_rmse"]["mean"],
            "heat_flux_error_pct": result["heat_flux"]["ensemble"]["flux_error_pct"]}


class _Inputs:
    """LR inputs and truth of the sweep days on the window, per LR filter width (cached)."""

    def __init__(self, data_path, days: pd.DatetimeIndex, window: tuple[int, int, int], moorings=None):
        self.ds = open_dataset(data_path)
        self.days, self.moorings = days, moorings
        r, c, n = window
        self.win = (slice(r, r + n), slice(c, c + n))
        self.kernel_km = float(self.ds.attrs["kernel_km"])
        self.mask = np.asarray(self.ds["mask"].values).astype(bool)[self.win]
        self._cache: dict = {}

    def get(self, lr_kernel_km: float | None = None) -> list[dict]:
        key = lr_kernel_km or self.kernel_km
        if key not in self._cache:
            self._cache[key] = [self._day(d, lr_kernel_km) for d in self.days]
        return self._cache[key]

    def _day(self, day: pd.Timestamp, lr_kernel_km: float | None) -> dict:
        names = ("sit", "sit_lr", "sic_lr", "divergence_lr", "shear_lr", "sit_interp")
        names += ("sic",) if "sic" in self.ds else ()  # the truth's own 4 km concentration (heat flux)
        fields = {v: np.asarray(self.ds[v].sel(time=day).values, dtype=np.float32) for v in names}
        if lr_kernel_km is not None and lr_kernel_km != self.kernel_km:
            fields.update(self._refiltered(day, lr_kernel_km))
        return {k: v[self.win] for k, v in fields.items()}

    def _refiltered(self, day: pd.Timestamp, kernel_km: float) -> dict:
        if self.moorings is None:
            raise SitsrInputError("sweep: the LR-filter axis re-filters the 4 km fields: pass the moorings files")
        src, _ = fileio.open_moorings(self.moorings, allow_gaps=True)
        try:
            raw = {v: np.asarray(src[v].sel(time=day).values, dtype=np.float32)
                   for v in ("sit", "sic", "divergence", "shear")}
        except KeyError:
            raise SitsrInputError(f"sweep: the moorings {self.moorings} hold no day {day.date()}") from None
        mask = np.asarray(src["mask"].values).astype(bool)
        if mask.shape != self.ds["mask"].shape:
            raise SitsrInputError(f"sweep: the moorings {self.moorings} are on a {mask.shape} grid, "
                                  f"the dataset on {self.ds['mask'].shape}")
        # the dataset's own observation operator, with the other training box filter
        operator = dataclasses.replace(observe.operator_of(self.ds), kernel_km=kernel_km)
        out = constitute_day(fileio.check_day(raw, mask, f"{self.moorings} {day.date()}"), mask, operator=operator,
                             grid=window_grid(self.ds), date=day)
        return {k: out[k] for k in ("sit_lr", "divergence_lr", "shear_lr", "sit_interp")}


def _impute(fields: dict, names: tuple[str, ...], stats: dict) -> dict:
    """Replace each LR feature of ``names`` by its training mean (normalised value 0)."""
    out = dict(fields)
    for n in names:
        out[n] = np.full_like(fields[n], stats[n]["mean"])
    return out


def score_variant(v: Variant, model, inputs: _Inputs, members: int, steps: int, seed: int = 0,
                  cache: dict | None = None) -> dict:
    """Generate and score the ensembles of variant ``v`` with ``model`` (a :class:`~sitsr_core.checkpoint.LoadedRun`).

    ``cache`` (a dict kept across calls) reuses generated ensembles: the ensemble-size variants score
    the first members of the base ensemble (the same seeds) without generating again.

    Returns
    -------
    dict : the :func:`sitsr_core.evaluate.score` result (``members`` or ``v.members`` members).
    """
    sc = model.cfg.sample
    days = inputs.get(v.lr_kernel_km)
    eta = sc.eta if v.eta is None else v.eta
    sampler = v.sampler or sc.sampler
    key = (id(model), id(inputs), v.steps or steps, eta, sampler, v.impute, v.lr_kernel_km)
    cache = {} if cache is None else cache
    if key not in cache:
        cache[key] = []
        for f in days:
            fields = _impute({k: f[k] for k in ("sit_lr", "sic_lr", "divergence_lr", "shear_lr")}, v.impute,
                             model.stats)
            cache[key].append(ensemble_metres(
                model, fields, inputs.mask, members=members, steps=v.steps or steps, eta=eta, seed=seed,
                chunk=min(sc.chunk, members), tile=max(sc.tile, *inputs.mask.shape), overlap=sc.overlap,
                tile_batch=sc.tile_batch, sampler=sampler))
    ens = [sit[:v.members or members] for sit in cache[key]]
    data = {"members": np.stack(ens, axis=1), "truth": np.stack([f["sit"] for f in days]),
            "lr": np.stack([f["sit_lr"] for f in days]), "interp": np.stack([f["sit_interp"] for f in days]),
            "sic": np.stack([f["sic_lr"] for f in days]), "mask": inputs.mask,
            **({"sic_hr": np.stack([f["sic"] for f in days])} if "sic" in days[0] else {}),
            "dates": [str(d.date()) for d in inputs.days]}
    return evaluate.score(data, kernel_km=v.lr_kernel_km or inputs.kernel_km)


def _slug(v: Variant) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in v.name.lower()).strip("-")


def train_variant(v: Variant, base_run, data_path, runs_dir, moorings=None, progress: bool = True) -> tuple[Path, Path]:
    """Train (or reuse) the run of a ``trained`` variant at the budget of ``base_run``.

    A ``residual`` variant reuses the base run's regression when only ``diffusion`` or ``train``
    settings change; otherwise it trains a regression run with the same changes first.

    Returns
    -------
    (run folder, dataset path)
    """
    runs_dir = Path(runs_dir)
    data = Path(data_path)
    if v.kernel_km is not None:
        if moorings is None:
            raise SitsrInputError(f"sweep: variant {v.name} constitutes a dataset: pass the moorings files")
        base = open_dataset(data_path)
        data = runs_dir / f"data-k{v.kernel_km:g}.zarr"
        if not data.exists():  # the base dataset's days and splits: the test days stay unseen
            spec = json.loads(base.attrs["splits"])
            splits = SplitSpec(val=tuple(map(tuple, spec["val"])), test=tuple(map(tuple, spec["test"])),
                               gap_days=int(spec["gap_days"]))
            days = base["time"].values
            operator = dataclasses.replace(observe.operator_of(base), kernel_km=v.kernel_km)
            constitute(moorings, data, kernel_km=v.kernel_km, sic_kernel_km=float(base.attrs["sic_kernel_km"]),
                       operator=operator, splits=splits, start=str(days[0])[:10], end=str(days[-1])[:10],
                       allow_gaps=True, progress=progress)

    def fit(run: Path, cfg, base=None) -> Path:
        if not (run / "checkpoint.pt").exists() or json.loads((run / "config.json").read_text()) != cfg.to_dict():
            train(cfg, data, run, resume=(run / "checkpoint.pt").exists(), progress=progress, base_run=base)
        return run

    cfg = apply_overrides(read_config(base_run), list(v.train))
    regression = None
    if cfg.data.target == "residual":
        regression = Path(base_run) / BASE
        if v.kernel_km is not None or any(not o.startswith(("diffusion.", "train.")) for o in v.train):
            regression = fit(runs_dir / f"{_slug(v)}-regression", apply_overrides(
                read_config(regression), [o for o in v.train if not o.startswith("diffusion.")]))
    return fit(runs_dir / _slug(v), cfg, regression), data


def run_sweep(runs: dict, data_path, out_csv, *, preset_name: str = "quick", members: int = 10, days: int = 1,
              window: int = 192, steps: int | None = None, seed: int = 0, moorings=None, runs_dir=None,
              overwrite: bool = False, device: str = "cpu", progress: bool = True) -> pd.DataFrame:
    """Score every variant of a preset and write the rows to ``out_csv``.

    Parameters
    ----------
    runs : dict of str -> path
        ``diffusion`` (the base run; required) and the optional ``anomaly``, ``full_target`` and
        ``sitsic`` runs; a variant whose run is not given is skipped with a note.
    data_path : path
        Dataset store of the base run.
    out_csv : path
        Results (one row per variant); rows already there for the same settings are kept and
        not recomputed unless ``overwrite``. Per-variant spectra go to ``<out_csv stem>_spectra.json``.
    preset_name : str
        ``quick`` or ``full``.
    members, days, window : int
        Ensemble size, number of validation days (spread over the split) and window side (cells).
    steps : int, optional
        Base DDIM steps (default: the base run's).
    moorings : str or list, optional
        4 km moorings files (LR-filter and kernel axes).
    runs_dir : path, optional
        Where ``full``-preset variants are trained (default ``<base run>-sweep``).
    device : str
        Torch device.

    Returns
    -------
    DataFrame of all rows.
    """
    variants = preset(preset_name)
    if members < 2 or days < 1 or window < 32:
        raise SitsrInputError(f"sweep: need members >= 2, days >= 1, window >= 32 (got {members}, {days}, {window})")
    if "diffusion" not in runs:
        raise SitsrInputError("sweep: the base run (runs['diffusion']) is required")
    base_model = load_run(runs["diffusion"], device=device)
    base_cfg = base_model.cfg
    steps = steps or base_cfg.sample.steps
    ds = open_dataset(data_path)
    sweep_days = evaluate.pick_days(split_days(ds, "val"), days)  # rankings are choices: validation days only
    mask = np.asarray(ds["mask"].values).astype(bool)
    r0, c0 = pick_window(mask, window)
    n = min(window, *mask.shape)
    settings = {"members": members, "steps": steps, "days": " ".join(str(d.date()) for d in sweep_days),
                "window": f"{r0},{c0},{n}", "base_config_hash": base_cfg.hash()}
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    spectra_path = out_csv.with_name(out_csv.stem + "_spectra.json")
    old = pd.read_csv(out_csv) if out_csv.exists() and not overwrite else pd.DataFrame()
    spectra = json.loads(spectra_path.read_text()) if spectra_path.exists() and not overwrite else {}
    same = [all(str(r.get(k)) == str(val) for k, val in settings.items()) for _, r in old.iterrows()]
    rows = old[same].to_dict("records") if len(old) else []
    done = {r["variant"] for r in rows}
    inputs = _Inputs(data_path, sweep_days, (r0, c0, n), moorings)
    models, generated = {"diffusion": base_model}, {}
    todo = [v for v in variants if v.name not in done]
    for v in tqdm(todo, desc="sweep", unit="variant", disable=not progress):
        t0 = time.perf_counter()
        if v.run == "trained":
            run, vdata = train_variant(v, runs["diffusion"], data_path, runs_dir or f"{runs['diffusion']}-sweep",
                                       moorings, progress=progress)
            model = load_run(run, device=device)
            vinputs = inputs if vdata == Path(data_path) else _Inputs(vdata, sweep_days, (r0, c0, n), moorings)
        elif v.run in runs or v.run in models:
            if v.run not in models:
                models[v.run] = load_run(runs[v.run], device=device)
            model, vinputs, run = models[v.run], inputs, runs.get(v.run)
        else:
            print(f"sweep: skipped {v.name} (no {v.run!r} run given)")
            continue
        result = score_variant(v, model, vinputs, members, steps, seed, cache=generated)
        spectra[v.name] = {k: result["spectra"][k] for k in ("k_per_km", "truth", "lr", "mean", "members")}
        rows.append({"axis": v.axis, "value": v.value, "variant": v.name, "reference": v.reference,
                     "run": str(run), **settings,
                     "scored_members": v.members or members, "variant_steps": v.steps or steps,
                     "variant_sampler": v.sampler or model.cfg.sample.sampler,
                     **row_from_score(result), "seconds": round(time.perf_counter() - t0, 1)})
        frame = pd.DataFrame(rows)
        with atomic_output(out_csv, overwrite=True) as tmp:
            frame.to_csv(tmp, index=False)
        with atomic_output(spectra_path, overwrite=True) as tmp:
            tmp.write_text(json.dumps(spectra))
    return pd.DataFrame(rows)


def rank(frame: pd.DataFrame) -> pd.DataFrame:
    """How far each axis moves each metric from the base: the sensitivity ranking.

    For an axis and a metric, the effect is the largest ``|m_variant - m_ref| / |m_ref|`` (in %)
    over the axis' values, where the reference is the base or the row named in the ``reference``
    column (for the spread-skill ratio, the change of ``|1 - ssr|`` in % of the reference ratio).
    Axes are sorted by their CRPS effect, largest first.

    Parameters
    ----------
    frame : DataFrame
        Rows of :func:`run_sweep` (one ``base`` row).

    Returns
    -------
    DataFrame indexed by axis: ``<metric>_pct`` effects, ``worst_value`` (the setting with the
    largest CRPS change), ``crps_worst`` (its CRPS, m) and ``reference`` (what the axis is compared with).
    """
    base = frame[frame["variant"] == "base"]
    if len(base) != 1:
        raise SitsrInputError(f"sweep: need exactly one base row, found {len(base)}")
    by_name = frame.set_index("variant")
    refs = frame["reference"] if "reference" in frame else pd.Series("base", index=frame.index)
    refs = refs.fillna("base").where(refs.isin(by_name.index), "base")
    out = []
    for axis, group in frame[frame["variant"] != "base"].groupby("axis", sort=False):
        ref = by_name.loc[refs[group.index]].reset_index(drop=True)
        group = group.reset_index(drop=True)
        rec = {"axis": axis}
        for m in METRICS:
            if m == "spread_skill":
                change = (abs(1 - group[m]) - abs(1 - ref[m])) / abs(ref[m])
            else:
                change = (group[m] - ref[m]) / abs(ref[m])
            rec[f"{m}_pct"] = float(100 * change.iloc[int(np.argmax(np.abs(change.to_numpy())))])
        worst = group.iloc[int(np.argmax(np.abs(group["crps"].to_numpy() - ref["crps"].to_numpy())))]
        rec["worst_value"], rec["crps_worst"] = worst["value"], float(worst["crps"])
        rec["reference"] = ", ".join(dict.fromkeys(refs[frame["axis"] == axis]))
        out.append(rec)
    table = pd.DataFrame(out).set_index("axis")
    return table.reindex(table["crps_pct"].abs().sort_values(ascending=False).index)


def add_arguments(ap) -> None:
    """Arguments of ``sitsr sweep``."""
    ap.add_argument("--run", required=True, help="base diffusion run folder")
    ap.add_argument("--data", required=True, help="dataset store of the base run")
    ap.add_argument("--out", required=True, help="CSV of results (rows appended; spectra beside it)")
    ap.add_argument("--preset", default="quick", choices=["quick", "full"])
    ap.add_argument("--anomaly-run", help="run trained with data.target=anomaly at the base budget")
    ap.add_argument("--full-target-run", help="run trained with data.target=full at the base budget")
    ap.add_argument("--sitsic-run", help="run trained on sit_lr, sic_lr at the base budget")
    ap.add_argument("--moorings", help="4 km moorings files (glob) for the LR-filter and kernel axes")
    ap.add_argument("--runs-dir", help="where the full preset trains its variants (default RUN-sweep)")
    ap.add_argument("--members", type=int, default=10)
    ap.add_argument("--days", type=int, default=1, help="validation days, spread over the split")
    ap.add_argument("--window", type=int, default=192, help="side of the scored window (cells)")
    ap.add_argument("--steps", type=int, help="base DDIM steps (default: the run's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--overwrite", action="store_true", help="recompute every variant")


def run_cli(a) -> pd.DataFrame:
    """``sitsr sweep``: run the sweep and print the ranking."""
    runs = {"diffusion": a.run}
    for key, path in (("anomaly", a.anomaly_run), ("full_target", a.full_target_run), ("sitsic", a.sitsic_run)):
        if path:
            runs[key] = path
    frame = run_sweep(runs, a.data, a.out, preset_name=a.preset, members=a.members, days=a.days, window=a.window,
                      steps=a.steps, seed=a.seed, moorings=a.moorings, runs_dir=a.runs_dir, overwrite=a.overwrite,
                      device=a.device)
    with pd.option_context("display.width", 200, "display.max_columns", None, "display.precision", 3):
        print(rank(frame))
    return frame

