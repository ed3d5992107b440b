"""Evaluation of generated ensembles against the 4 km truth, in physical units (metres).

One code path for notebooks and sweeps: :func:`evaluate_run` makes sure the ensemble
files of a split exist (``sit_hrai_YYYYMMDD.nc``, generated with
:func:`sitsr_core.downscale.downscale_dates` when missing), then scores them with
:mod:`sitsr_core.metrics` and :mod:`sitsr_core.heatflux` and writes one JSON file.
Scores pool all ocean cells of all evaluated days.

It never mixes results: existing ensemble files made by another configuration, ensemble size or
dataset (:func:`check_outputs`), and a regression baseline trained on another dataset than the
diffusion run (:func:`check_same_dataset`), are refused with one error saying what differs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from . import baselines, heatflux, metrics, spectra
from .checkpoint import NORM_STATS, PROVENANCE, read_config, read_norm_stats, read_provenance
from .dataset import FINAL_TABLE, open_dataset, split_days
from .downscale import downscale_dates, output_name
from .errors import SitsrConfigError, SitsrDataError, SitsrInputError
from .fileio import atomic_output, check_netcdf_file
from .provenance import dataset_record, differences, provenance


def pick_days(days: pd.DatetimeIndex, max_days: int | None) -> pd.DatetimeIndex:
    """At most ``max_days`` days spread evenly over ``days`` (all of them when None)."""
    if not max_days or len(days) <= max_days:
        return days
    return days[np.unique(np.linspace(0, len(days) - 1, max_days).round().astype(int))]


def fine_scale_lag_correlation(ds: xr.Dataset, lags=(1, 2, 4, 7, 10), split: str = "train") -> dict[int, float]:
    """Day-to-day correlation of the fine-scale field ``sit - sit_lr`` over the ocean, per lag (days).

    What the gap days between training and evaluation windows must outlast
    (:data:`sitsr_core.dataset.GAP_DAYS`); pairs are taken within ``split`` only
    (:func:`sitsr_core.metrics.lag_correlation`).
    """
    days = split_days(ds, split)
    sel = ds[["sit", "sit_lr"]].sel(time=days)
    fine = sel["sit"].values.astype(np.float64) - sel["sit_lr"].values
    return metrics.lag_correlation(fine, ds["mask"].values.astype(bool), lags, days=days.values)


def check_outputs(files: list[Path], cfg, members: int, dataset: dict, hint: str, sampling: dict | None = None) -> None:
    """Refuse ensemble files made by another configuration, ensemble size, sampling or dataset.

    Parameters
    ----------
    files : list of Path
        Existing ``sit_hrai_YYYYMMDD.nc`` files.
    cfg : Config
        The run's configuration (its :meth:`Config.hash` must match the files').
    members : int
        Expected ensemble size.
    dataset : dict
        :func:`sitsr_core.provenance.dataset_record` of the dataset scored against.
    hint : str
        What the user can do, appended to the message.
    sampling : dict, optional
        The sampling settings asked for (``sampler``, ``steps``, ``eta``): files sampled otherwise are refused.

    Raises
    ------
    SitsrConfigError
        Another configuration hash or ensemble size.
    SitsrDataError
        Another dataset (naming the fields that differ, file vs dataset), or none recorded.
    """
    for f in files:
        with xr.open_dataset(check_netcdf_file(f)) as o:
            attrs, size = dict(o.attrs), o.sizes["member"]
        if attrs.get("config_hash") != cfg.hash():
            raise SitsrConfigError(f"{f}: made by another run (config hash {attrs.get('config_hash')}, "
                                   f"this run {cfg.hash()}); {hint}")
        if size != members:
            raise SitsrConfigError(f"{f}: holds {size} members, not {members}; {hint}")
        other = {k: (attrs.get(k), v) for k, v in (sampling or {}).items() if k in attrs and attrs[k] != v}
        if other:
            said = ", ".join(f"{k} {made} (asked {asked})" for k, (made, asked) in other.items())
            raise SitsrConfigError(f"{f}: sampled with other settings: {said}; {hint}")
        if "dataset_fingerprint" not in attrs:
            raise SitsrDataError(f"{f}: records no dataset (made from {attrs.get('source', 'an unknown source')}); "
                                 f"{hint}")
        if attrs["dataset_fingerprint"] != dataset["fingerprint"]:
            made = json.loads(attrs["dataset_identity"])
            raise SitsrDataError(f"{f}: made from another dataset than {dataset['path']} (file vs dataset: "
                                 f"{differences(made, dataset['identity'])}); {hint}")


def check_same_dataset(run_dir, regression_run) -> None:
    """Refuse a regression baseline trained on another dataset than the diffusion run.

    Runs record their dataset in ``provenance.json``; a run trained before that file existed is
    compared through its ``norm_stats.json`` (statistics of the training days, so they differ
    between datasets).

    Raises
    ------
    SitsrConfigError
        Naming both runs, their datasets and the fields that differ.
    """
    if (Path(run_dir) / PROVENANCE).exists() and (Path(regression_run) / PROVENANCE).exists():
        a, b = read_provenance(run_dir)["dataset"], read_provenance(regression_run)["dataset"]
        if a["fingerprint"] != b["fingerprint"]:
            raise SitsrConfigError(f"--regression-run {regression_run} was trained on another dataset ({b['path']}) "
                                   f"than --run {run_dir} ({a['path']}): "
                                   f"{differences(b['identity'], a['identity'])}")
    elif read_norm_stats(run_dir) != read_norm_stats(regression_run):
        raise SitsrConfigError(f"--regression-run {regression_run} was trained on another dataset than --run {run_dir} "
                               f"(their {NORM_STATS} differ)")


def _existing(folder: Path, dates: list[str]) -> list[Path]:
    return [folder / output_name(d) for d in dates if (folder / output_name(d)).exists()]


def load_outputs(files: list[Path], ds: xr.Dataset) -> dict[str, np.ndarray]:
    """Stack ensemble files with the truth of the same days.

    Parameters
    ----------
    files : list of Path, length D
        ``sit_hrai_YYYYMMDD.nc`` files.
    ds : xr.Dataset
        The dataset store (truth ``sit``, ``sit_lr``, ``sit_interp``, ``sic_lr``, ``mask``).

    Returns
    -------
    dict with ``members`` (M, D, ny, nx), ``truth``, ``lr``, ``interp``, ``sic`` (the LR concentration
    ``sic_lr``), ``sic_hr`` (the 4 km concentration ``sic``; None if the store lacks it) (D, ny, nx),
    ``mask`` (ny, nx) bool and ``dates`` (D,).

    Raises
    ------
    SitsrInputError
        If a file's grid differs from the dataset's or its date is not in the dataset.
    """
    members, dates = [], []
    for f in files:
        with xr.open_dataset(check_netcdf_file(f)) as out:
            if out.sizes["y"] != ds.sizes["y"] or out.sizes["x"] != ds.sizes["x"] or (
                    "x" in out and not np.allclose(out["x"].values, ds["x"].values)):
                raise SitsrInputError(f"{f}: grid {dict(out.sizes)} differs from the dataset's")
            members.append(out["sit_ai"].values.astype(np.float32))
        dates.append(pd.Timestamp(f.stem.split("_")[-1]))
    missing = [d for d in dates if d not in pd.DatetimeIndex(ds["time"].values)]
    if missing:
        raise SitsrInputError(f"dates {[str(d.date()) for d in missing]} of the outputs are not in the dataset")
    sel = ds.sel(time=dates)
    mask = ds["mask"].values.astype(bool)
    return {"members": np.stack(members, axis=1), "truth": sel["sit"].values, "lr": sel["sit_lr"].values,
            "interp": sel["sit_interp"].values, "sic": sel["sic_lr"].values,
            "sic_hr": sel["sic"].values if "sic" in sel else None, "mask": mask,
            "dates": [str(d.date()) for d in dates]}


def _mean_over_days(tables: list[dict]) -> dict:
    """Average the numeric leaves of per-day band tables (NaN where a band holds no wavenumber)."""
    out = {}
    for band, row in tables[0].items():
        out[band] = {}
        for key, value in row.items():
            vals = np.asarray([t[band][key] for t in tables], dtype=float) if not isinstance(
                value, (list, tuple, str)) else None
            out[band][key] = value if vals is None else (float(np.nanmean(vals)) if np.isfinite(vals).any()
                                                         else float("nan"))
    return out


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        return None if not np.isfinite(x) else float(x)
    if isinstance(x, (np.integer, np.bool_)):
        return x.item()
    return x


def score(data: dict[str, np.ndarray], regression: np.ndarray | None = None, kernel_km: float = 120.0,
          t_surface: float = -25.0, deconvolution: np.ndarray | None = None, n_boot: int = 2000) -> dict:
    """All evaluation metrics of stacked outputs (see :func:`load_outputs`).

    The skill table scores the ensemble against every baseline on the same cells: ``lr`` (naive:
    the LR context itself), ``interp``, and when given ``regression`` and ``deconvolution``; with
    per-day scores, block-bootstrap 95 % intervals over days and the paired differences ensemble -
    baseline (:func:`sitsr_core.metrics.skill_table`); the ensemble's fair CRPS is compared with each
    deterministic baseline's MAE.

    Parameters
    ----------
    data : dict
        From :func:`load_outputs` (days in time order).
    regression : ndarray, shape (D, ny, nx), optional
        Deterministic-baseline prediction of the same days.
    deconvolution : ndarray, shape (D, ny, nx), optional
        Linear deconvolution of the LR context (:mod:`sitsr_core.baselines`) of the same days.
    n_boot : int
        Bootstrap replicates of the intervals.
    kernel_km : float
        Filter kernel of the dataset (bands and large-scale bias).
    t_surface : float
        Ice surface temperature (deg C) of the heat-flux diagnostic.

    Returns
    -------
    dict (JSON-ready, metres): ``skill``, ``spread_skill``, ``reliability``, ``rank_histogram``
    (counts and chi-square flatness), ``bands``, ``band_checks``, ``band_spread_skill`` (spread-skill
    per scale band), ``spectra``, ``large_scale_rmse``, ``heat_flux`` (the truth with the 4 km
    concentration when the store has it, see ``heat_flux_truth_sic``).
    """
    ens, truth, mask = data["members"], data["truth"], data["mask"]
    M = ens.shape[0]
    mean = ens.mean(axis=0)
    valid = np.broadcast_to(mask, truth.shape)
    references = {"lr": data["lr"], "interp": data["interp"]}
    if regression is not None:
        references["regression"] = regression
    if deconvolution is not None:
        references["deconvolution"] = deconvolution
    result = {"members": M, "days": data["dates"]}
    result["skill"] = metrics.skill_table(ens, truth, valid, references, day_axis=0, n_boot=n_boot)
    result["spread_skill"] = metrics.spread_skill_ratio(ens, truth, valid) if M > 1 else None
    if M > 1:
        result["reliability"] = metrics.spread_error_bins(ens, truth, valid)
        counts = metrics.rank_histogram(ens, truth, valid)
        result["rank_histogram"] = {"counts": counts, "flatness": metrics.rank_flatness(counts)}
        result["band_spread_skill"] = metrics.band_spread_skill(ens, truth, mask, kernel_km=kernel_km)
    tables, curves = [], {}
    for d in range(truth.shape[0]):
        tables.append(metrics.band_table(truth[d], data["lr"][d], mean[d], ens[:, d], mask, kernel_km=kernel_km))
        fields = {"truth": truth[d], "lr": data["lr"][d], "interp": data["interp"][d], "mean": mean[d]}
        if regression is not None:
            fields["regression"] = regression[d]
        if deconvolution is not None:
            fields["deconvolution"] = deconvolution[d]
        for name, f in fields.items():
            k, psd = spectra.isotropic_spectrum(f, mask)
            curves.setdefault(name, []).append(psd)
        k, psd = spectra.isotropic_spectrum(ens[:, d], mask)
        curves.setdefault("members", []).append(psd.mean(axis=0))
    result["bands"] = _mean_over_days(tables)
    result["band_checks"] = metrics.band_checks(result["bands"])
    result["spectra"] = {"k_per_km": k, **{n: np.mean(c, axis=0) for n, c in curves.items()}}
    large = {"mean": metrics.large_scale_rmse(mean, data["lr"], mask, kernel_km=kernel_km),
             "members": metrics.large_scale_rmse(ens, data["lr"][None], mask, kernel_km=kernel_km),
             "interp": metrics.large_scale_rmse(data["interp"], data["lr"], mask, kernel_km=kernel_km)}
    result["large_scale_rmse"] = {k: float(np.mean(v)) for k, v in large.items()}
    sic_hr = data.get("sic_hr")
    result["heat_flux"] = heatflux.flux_comparison(truth, data["lr"], data["interp"], ens, data["sic"], valid,
                                                   t_surface=t_surface, sic_truth=sic_hr)
    result["heat_flux_truth_sic"] = "sic_lr (the store has no 4 km sic)" if sic_hr is None else "sic (4 km)"
    return _jsonable(result)


#: Display names of the rows of a skill table.
ROW_NAMES = {"ensemble": "ensemble mean", "member": "single member", "lr": "LR context (naive)",
             "interp": "interpolation", "regression": "regression (deterministic)",
             "deconvolution": "linear deconvolution"}


def skill_frame(skill: dict, names: dict[str, str] | None = None) -> pd.DataFrame:
    """A skill table (``score(...)["skill"]``) as one row per forecast with its 95 % intervals over days.

    Columns ``RMSE``, ``MAE``, ``bias``, ``CRPS`` (m; a deterministic forecast's CRPS is its MAE) and
    ``... 95% CI`` as ``"low - high"`` text (empty for a table without intervals).
    """
    names = ROW_NAMES if names is None else names
    rows = {}
    for fc, sc in skill["scores"].items():
        ci = skill.get("ci95", {}).get(fc, {})
        row = {"RMSE (m)": sc["rmse"], "RMSE 95% CI": _interval(ci.get("rmse")), "MAE (m)": sc["mae"],
               "MAE 95% CI": _interval(ci.get("mae")), "bias (m)": sc["bias"], "CRPS (m)": sc["crps"],
               "CRPS 95% CI": _interval(ci.get("crps"))}
        rows[names.get(fc, fc)] = row
    return pd.DataFrame(rows).T


def paired_verdict(ci) -> str:
    """``better`` / ``worse`` when a 95 % interval of (ensemble - baseline) lies below / above 0, else ``within CI``."""
    if ci is None or ci[0] is None or ci[1] is None or not np.all(np.isfinite(ci)):
        return "no interval"
    return "better" if ci[1] < 0 else ("worse" if ci[0] > 0 else "within CI")


def paired_frame(skill: dict, names: dict[str, str] | None = None) -> pd.DataFrame:
    """Paired differences ensemble - baseline (m) with their 95 % intervals and verdicts, one row per baseline.

    ``crps`` compares the ensemble's fair CRPS with the baseline's MAE; ``rmse_inf`` the RMSE of
    the mean of infinitely many members with the baseline's RMSE.
    """
    names = ROW_NAMES if names is None else names
    rows = {}
    for base, scores in skill.get("paired", {}).items():
        row = {}
        for s, label in (("rmse", "RMSE"), ("rmse_inf", "RMSE (inf. members)"), ("mae", "MAE"), ("crps", "CRPS - MAE")):
            if s in scores:
                row[f"{label} diff (m)"] = scores[s]["diff"]
                row[f"{label} 95% CI"] = _interval(scores[s]["ci95"])
                row[f"{label}"] = paired_verdict(scores[s]["ci95"])
        rows[names.get(base, base)] = row
    return pd.DataFrame(rows).T


def _interval(ci) -> str:
    if ci is None or ci[0] is None or ci[1] is None:
        return ""
    return f"{ci[0]:.3f} - {ci[1]:.3f}"


def evaluate_run(run_dir, data_path, split: str = "test", members: int = 30, steps: int | None = None,
             outputs=None, out=None, max_days: int | None = None, regression_run=None, overwrite: bool = False,
             progress: bool = True, deconvolution: bool = True, **downscale_kw) -> dict:
    """Generate (if needed) and score the ensembles of a split.

    The only reader of the test split (``split="test"``: the final table); every choice is made
    on ``val`` days, including the deconvolution baseline's regularisation
    (:func:`sitsr_core.baselines.stored_regularisation`).

    Parameters
    ----------
    run_dir : path
        Diffusion run folder.
    data_path : path
        Dataset store.
    split : str
        ``val`` or ``test``.
    members, steps : int
        Ensemble size and DDIM steps of the generated files.
    outputs : path, optional
        Folder of the ensemble files (default ``<run_dir>/outputs_<split>``); existing files are reused
        only if they were made by this run's configuration, with ``members`` members, from this dataset.
    out : path, optional
        JSON file to write (atomically).
    max_days : int, optional
        Evaluate at most this many days, spread over the split.
    regression_run : path, optional
        Run folder of the deterministic baseline (``train.objective = regression``), trained on the
        same dataset as ``run_dir``; its files go to ``<regression_run>/outputs_<split>``.
    overwrite : bool
        Replace an existing JSON file and regenerate outputs (of both runs).
    deconvolution : bool
        Score the linear deconvolution baseline (:func:`sitsr_core.baselines.deconvolve_days`)
        with the regularisation chosen on validation days.
    **downscale_kw
        Passed to :func:`sitsr_core.downscale.downscale` (eta, seed, tile, conserve, device...).

    Returns
    -------
    dict of metrics (also written to ``out``), with provenance: run, dataset (path, fingerprint,
    identity), split, steps, and :func:`sitsr_core.provenance.provenance` (versions, git commit,
    config hash).

    Raises
    ------
    SitsrInputError
        Before any generation: existing files of another run, ensemble size or dataset
        (:func:`check_outputs`), or a regression run trained on another dataset (:func:`check_same_dataset`).
    """
    ds = open_dataset(data_path)
    # the one reader of the test split: the final table (tests/test_protocol.py)
    days = pick_days(split_days(ds, split, purpose=FINAL_TABLE if split == "test" else None), max_days)
    if len(days) == 0:
        raise SitsrInputError(f"{data_path}: split {split!r} has no day")
    dates = [str(d.date()) for d in days]
    cfg = read_config(run_dir)
    dataset = dataset_record(ds, data_path)
    outputs = Path(outputs) if outputs else Path(run_dir) / f"outputs_{split}"
    reg_outputs = None if regression_run is None else Path(regression_run) / f"outputs_{split}"
    if regression_run is not None:
        check_same_dataset(run_dir, regression_run)
    sampling = {"sampler": downscale_kw.get("sampler") or cfg.sample.sampler,
                "steps": cfg.sample.steps if steps is None else int(steps),
                "eta": float(cfg.sample.eta if downscale_kw.get("eta") is None else downscale_kw["eta"])}
    if not overwrite:
        check_outputs(_existing(outputs, dates), cfg, members, dataset, "use another --outputs folder or --overwrite",
                      sampling)
        if regression_run is not None:
            check_outputs(_existing(reg_outputs, dates), read_config(regression_run), 1, dataset,
                          "pass --overwrite to regenerate them")
    files = downscale_dates(run_dir, data_path, dates, outputs, overwrite=overwrite,
                            members=members, steps=steps, progress=progress, **downscale_kw)
    data = load_outputs(files, ds)
    regression = None
    if regression_run is not None:
        reg_files = downscale_dates(regression_run, data_path, data["dates"], reg_outputs, overwrite=overwrite,
                                    members=1, progress=progress, **{k: v for k, v in downscale_kw.items()
                                                                      if k in ("device", "tile")})
        regression = load_outputs(reg_files, ds)["members"][0]
    deconv, reg = None, None
    if deconvolution:
        reg = baselines.stored_regularisation(data_path)  # chosen on validation days
        deconv = baselines.deconvolve_days(ds, data["dates"], reg)
    result = score(data, regression, kernel_km=float(ds.attrs["kernel_km"]), deconvolution=deconv)
    result["provenance"] = {"run": str(run_dir), "dataset": str(data_path), "dataset_source": ds.attrs.get("source"),
                            "dataset_fingerprint": dataset["fingerprint"], "dataset_identity": dataset["identity"],
                            "split": split, "steps": steps or cfg.sample.steps,
                            "regression_run": str(regression_run) if regression_run else None,
                            "deconvolution_reg": reg,
                            **provenance(cfg)}
    if out is not None:
        out = Path(out)
        with atomic_output(out, overwrite=True) as tmp:
            tmp.write_text(json.dumps(result, indent=1))
    return result
