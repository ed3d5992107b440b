"""Bad inputs across every entry point: one clear line naming the file/argument and the cause, exit 2,
no partial output. The README's table of cases is this list."""

from __future__ import annotations

import json
import shutil

import numpy as np
import xarray as xr
from conftest import TINY_DATES, TINY_GRID, smooth_fields

from sitsr_core import checkpoint, dataset, downscale, fileio
from sitsr_core.cli import main
from sitsr_core.config import apply_overrides, profile
from sitsr_core.train import train


def moorings(folder, dates=TINY_DATES[:14], edit=None, name="Moorings_2020m11.nc"):
    """Write one moorings file, optionally edited (``edit(ds) -> ds``)."""
    folder.mkdir(parents=True, exist_ok=True)
    ds = fileio.moorings_dataset(TINY_GRID, dates, smooth_fields(TINY_GRID, dates, seed=5))
    ds = edit(ds) if edit else ds
    enc = {v: {"_FillValue": np.float32(np.nan)} for v in fileio.VARIABLES if v in ds}
    ds.to_netcdf(folder / name, encoding=enc)
    return folder


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    err = capsys.readouterr().err.strip()
    return code, err


def expect_error(capsys, pattern, *args, absent=None):
    code, err = run_cli(capsys, *args)
    assert code == 2, f"exit {code}: {err}"
    errors = [line for line in err.splitlines() if "error:" in line]  # other lines are progress bars
    assert len(errors) == 1 and err.splitlines()[-1] == errors[0], f"not one error line: {err}"
    assert "Traceback" not in err
    assert pattern in errors[0], err
    if absent is not None:
        assert not absent.exists(), f"partial output left: {absent}"
        assert not list(absent.parent.glob(f".{absent.stem}.tmp*")), "temporary file left behind"


def dataset_args(src, out, *extra):
    return ("dataset", "--moorings", f"{src}/Moorings_*.nc", "--out", out, "--val", "2020-11-25:2020-11-26",
            "--test", "2020-11-30:2020-12-02", "--gap-days", "1", *extra)


# --- synth --------------------------------------------------------------------------------------
def test_synth_unknown_region(capsys, tmp_path):
    expect_error(capsys, "unknown region 'antarctic'", "synth", "--region", "antarctic", "--out", tmp_path)


def test_synth_start_after_end(capsys, tmp_path):
    expect_error(capsys, "--start 2021-01-10 is after --end 2021-01-01", "synth", "--region", "small", "--start",
                 "2021-01-10", "--end", "2021-01-01", "--out", tmp_path)


def test_synth_refuses_to_overwrite(capsys, tmp_path):
    (tmp_path / "Moorings_2021m01.nc").write_text("precious")
    expect_error(capsys, "exists; pass --overwrite", "synth", "--region", "small", "--start", "2021-01-01", "--end",
                 "2021-01-02", "--out", tmp_path)
    assert (tmp_path / "Moorings_2021m01.nc").read_text() == "precious"


# --- dataset ------------------------------------------------------------------------------------
def test_dataset_missing_files(capsys, tmp_path):
    expect_error(capsys, "no moorings file matches", *dataset_args(tmp_path / "none", tmp_path / "d.zarr"),
                 absent=tmp_path / "d.zarr")


def test_dataset_not_netcdf(capsys, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "Moorings_2020m11.nc").write_bytes(b"\x89HDF\r\n truncated")
    expect_error(capsys, "Moorings_2020m11.nc: cannot be read as netCDF", *dataset_args(tmp_path / "src",
                                                                                        tmp_path / "d.zarr"),
                 absent=tmp_path / "d.zarr")


def test_dataset_truncated_netcdf(capsys, tmp_path):
    src = moorings(tmp_path / "src")
    f = src / "Moorings_2020m11.nc"
    f.write_bytes(f.read_bytes()[:5000])
    expect_error(capsys, "Moorings_2020m11.nc: cannot be read as netCDF", *dataset_args(src, tmp_path / "d.zarr"),
                 absent=tmp_path / "d.zarr")


def test_dataset_missing_variable(capsys, tmp_path):
    src = moorings(tmp_path / "src", edit=lambda ds: ds.drop_vars("divergence"))
    expect_error(capsys, "missing variable 'divergence'", *dataset_args(src, tmp_path / "d.zarr"),
                 absent=tmp_path / "d.zarr")


def test_dataset_wrong_dimension_order(capsys, tmp_path):
    src = moorings(tmp_path / "src", edit=lambda ds: ds.transpose("time", "x", "y"))
    expect_error(capsys, "has dims ('time', 'x', 'y'), expected ('time', 'y', 'x')", *dataset_args(src,
                                                                                                   tmp_path / "d.zarr"))


def test_dataset_wrong_product(capsys, tmp_path):
    from conftest import SAMPLES

    (tmp_path / "src").mkdir()
    shutil.copy(SAMPLES / "osisaf_sh_drift_lr_20160913-20160915.nc", tmp_path / "src" / "Moorings_2020m11.nc")
    expect_error(capsys, "missing variable 'sit'", *dataset_args(tmp_path / "src", tmp_path / "d.zarr"))


def test_dataset_grid_mismatch_between_files(capsys, tmp_path):
    src = moorings(tmp_path / "src", TINY_DATES[:7])
    moorings(src, TINY_DATES[7:14], edit=lambda ds: ds.isel(x=slice(0, 40)), name="Moorings_2020m12.nc")
    expect_error(capsys, "differs from", *dataset_args(src, tmp_path / "d.zarr"))


def test_dataset_time_gap(capsys, tmp_path):
    src = moorings(tmp_path / "src", TINY_DATES[:5])
    moorings(src, TINY_DATES[8:14], name="Moorings_2020m12.nc")
    expect_error(capsys, "time gap between 2020-11-24 and 2020-11-28", *dataset_args(src, tmp_path / "d.zarr"))


def test_dataset_thickness_in_cm(capsys, tmp_path):
    def cm(ds):
        ds["sit"] = ds["sit"] * 100
        ds["sit"].attrs["units"] = "cm"
        return ds

    expect_error(capsys, "is in cm", *dataset_args(moorings(tmp_path / "src", edit=cm), tmp_path / "d.zarr"))


def test_dataset_all_nan_day(capsys, tmp_path):
    def blank(ds):
        ds["sit"][3] = np.nan
        return ds

    expect_error(capsys, "2020-11-23: no valid sit value", *dataset_args(moorings(tmp_path / "src", edit=blank),
                                                                         tmp_path / "d.zarr"),
                 absent=tmp_path / "d.zarr")


def test_dataset_split_outside_data(capsys, tmp_path):
    src = moorings(tmp_path / "src")
    expect_error(capsys, "test window 2021-03-01..2021-03-05 lies outside the data", "dataset", "--moorings",
                 f"{src}/Moorings_*.nc", "--out", tmp_path / "d.zarr", "--test", "2021-03-01:2021-03-05")


def test_dataset_overlapping_splits(capsys, tmp_path):
    src = moorings(tmp_path / "src")
    expect_error(capsys, "overlaps another split window", "dataset", "--moorings", f"{src}/Moorings_*.nc", "--out",
                 tmp_path / "d.zarr", "--val", "2020-11-25:2020-11-27", "--test", "2020-11-28:2020-11-30",
                 "--gap-days", "2")


def test_dataset_bad_kernel(capsys, tmp_path):
    expect_error(capsys, "kernel 102.0 km is not a positive multiple", *dataset_args(moorings(tmp_path / "src"),
                                                                                     tmp_path / "d.zarr",
                                                                                      "--kernel-km", "102"),
                 absent=tmp_path / "d.zarr")


def test_dataset_output_exists(capsys, tmp_path, tiny_dataset):
    before = sorted(p.name for p in tiny_dataset.iterdir())
    expect_error(capsys, "output exists; pass --overwrite", *dataset_args(moorings(tmp_path / "src"), tiny_dataset))
    assert sorted(p.name for p in tiny_dataset.iterdir()) == before


def test_dataset_output_folder_missing(capsys, tmp_path):
    expect_error(capsys, "does not exist", *dataset_args(moorings(tmp_path / "src"), tmp_path / "no" / "d.zarr"))


# --- train --------------------------------------------------------------------------------------
def test_train_unknown_profile(capsys, tmp_path, tiny_dataset):
    expect_error(capsys, "unknown profile 'fast'", "train", "--data", tiny_dataset, "--run", tmp_path / "r",
                 "--profile", "fast")


def test_train_bad_override(capsys, tmp_path, tiny_dataset):
    expect_error(capsys, "unknown config key 'train.learning_rate'", "train", "--data", tiny_dataset, "--run",
                 tmp_path / "r",
                 "--profile", "smoke", "--set", "train.learning_rate=1")
    expect_error(capsys, "bad value 'many' for train.steps", "train", "--data", tiny_dataset, "--run", tmp_path / "r",
                 "--profile", "smoke", "--set", "train.steps=many")


def test_train_unknown_feature(capsys, tmp_path, tiny_dataset):
    expect_error(capsys, "data.features ['sit_lr', 'snow_lr'] must be a non-empty subset", "train", "--data",
                 tiny_dataset,
                 "--run", tmp_path / "r", "--profile", "smoke", "--set", "data.features=sit_lr,snow_lr")


def test_train_missing_dataset(capsys, tmp_path):
    expect_error(capsys, "dataset not found", "train", "--data", tmp_path / "nope.zarr", "--run", tmp_path / "r",
                 "--profile", "smoke")


# --- downscale / evaluate -----------------------------------------------------------------------
def evaluate_args(run, data, tmp_path):
    """``sitsr evaluate`` of the first test day, 2 members, 1 step, ensembles in ``tmp_path/outs``."""
    return ("evaluate", "--run", run, "--data", data, "--members", "2", "--steps", "2", "--max-days", "1",
            "--outputs", tmp_path / "outs", "--out", tmp_path / "m.json", "--no-progress")


def test_downscale_missing_run(capsys, tmp_path, tiny_dataset):
    expect_error(capsys, "run folder not found", "downscale", "--run", tmp_path / "none", "--data", tiny_dataset,
                 "--date",
                 "2020-12-01", "--out", tmp_path / "o.nc", absent=tmp_path / "o.nc")


def test_downscale_corrupted_checkpoint(capsys, tmp_path, tiny_dataset, smoke_run):
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    (run / "checkpoint.pt").write_bytes(b"garbage")
    expect_error(capsys, "cannot be read as a checkpoint", "downscale", "--run", run, "--data", tiny_dataset, "--date",
                 "2020-12-01", "--out", tmp_path / "o.nc", absent=tmp_path / "o.nc")


def test_downscale_date_outside_data(capsys, tmp_path, tiny_dataset, smoke_run):
    expect_error(capsys, "no date 2021-06-01", "downscale", "--run", smoke_run, "--data", tiny_dataset, "--date",
                 "2021-06-01", "--out", tmp_path / "o.nc", absent=tmp_path / "o.nc")


def test_downscale_zero_members(capsys, tmp_path, tiny_dataset, smoke_run):
    expect_error(capsys, "need members >= 1", "downscale", "--run", smoke_run, "--data", tiny_dataset, "--date",
                 "2020-12-01",
                 "--members", "0", "--out", tmp_path / "o.nc", absent=tmp_path / "o.nc")


def test_downscale_negative_steps(capsys, tmp_path, tiny_dataset, smoke_run):
    expect_error(capsys, "steps >= 2", "downscale", "--run", smoke_run, "--data", tiny_dataset, "--date", "2020-12-01",
                 "--steps", "-3", "--out", tmp_path / "o.nc", absent=tmp_path / "o.nc")


def test_downscale_one_step_of_a_diffusion_model(capsys, tmp_path, tiny_dataset, smoke_run):
    """One step would return the prediction at full noise (a posterior mean): refused, like the config."""
    expect_error(capsys, "steps >= 2", "downscale", "--run", smoke_run, "--data", tiny_dataset, "--date",
                 "2020-12-01", "--steps", "1", "--out", tmp_path / "o.nc", absent=tmp_path / "o.nc")
    expect_error(capsys, "sample.steps and train.val_steps must be >= 2", "train", "--data", tiny_dataset, "--run",
                 tmp_path / "r", "--profile", "smoke", "--set", "sample.steps=1", absent=tmp_path / "r")


def test_downscale_output_exists(capsys, tmp_path, tiny_dataset, smoke_run):
    (tmp_path / "o.nc").write_text("keep")
    expect_error(capsys, "output exists", "downscale", "--run", smoke_run, "--data", tiny_dataset, "--date",
                 "2020-12-01",
                 "--out", tmp_path / "o.nc")
    assert (tmp_path / "o.nc").read_text() == "keep"


def test_downscale_features_the_model_needs(capsys, tmp_path, tiny_dataset, smoke_run):
    ds = xr.open_zarr(tiny_dataset).isel(time=10)[["sit_lr", "sic_lr", "mask"]].load()
    ds.to_netcdf(tmp_path / "lr.nc")
    expect_error(capsys, "use a model trained with data.features=sit_lr,sic_lr", "downscale", "--run", smoke_run,
                 "--lr-file", tmp_path / "lr.nc", "--out", tmp_path / "o.nc", absent=tmp_path / "o.nc")


def test_train_resume_on_another_dataset(capsys, tmp_path, other_dataset, smoke_run):
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    expect_error(capsys, f"{run}: cannot resume on {other_dataset}: the run was trained on", "train", "--data",
                 other_dataset, "--run", run, "--profile", "smoke", "--resume")
    assert checkpoint.load_checkpoint(run / "checkpoint.pt")["step"] == 6  # untouched


def test_evaluate_outputs_of_another_dataset(capsys, tmp_path, tiny_dataset, other_dataset, smoke_run):
    downscale.downscale_dates(smoke_run, other_dataset, ["2020-12-11"], tmp_path / "outs", members=2, steps=2,
                              progress=False)
    expect_error(capsys, f"sit_hrai_20201211.nc: made from another dataset than {tiny_dataset.resolve()} "
                 "(file vs dataset: kernel_km 96 vs 120;", *evaluate_args(smoke_run, tiny_dataset, tmp_path),
                 absent=tmp_path / "m.json")


def test_evaluate_outputs_of_another_run(capsys, tmp_path, tiny_dataset, smoke_run):
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    (run / "config.json").write_text(apply_overrides(profile("smoke"), ["sample.seed=1"]).to_json())
    downscale.downscale_dates(smoke_run, tiny_dataset, ["2020-12-11"], tmp_path / "outs", members=2, steps=2,
                              progress=False)
    expect_error(capsys, "sit_hrai_20201211.nc: made by another run (config hash",
                 *evaluate_args(run, tiny_dataset, tmp_path), absent=tmp_path / "m.json")


def test_evaluate_outputs_of_another_ensemble_size(capsys, tmp_path, tiny_dataset, smoke_run):
    downscale.downscale_dates(smoke_run, tiny_dataset, ["2020-12-11"], tmp_path / "outs", members=3, steps=2,
                              progress=False)
    expect_error(capsys, "sit_hrai_20201211.nc: holds 3 members, not 2",
                 *evaluate_args(smoke_run, tiny_dataset, tmp_path), absent=tmp_path / "m.json")


def test_evaluate_regression_run_of_another_dataset(capsys, tmp_path, tiny_dataset, other_dataset, smoke_run):
    reg = train(apply_overrides(profile("smoke"), ["train.objective=regression", "train.steps=1"]), other_dataset,
                tmp_path / "reg", progress=False)
    args = (*evaluate_args(smoke_run, tiny_dataset, tmp_path), "--regression-run", reg)
    expect_error(capsys, f"--regression-run {reg} was trained on another dataset ({other_dataset.resolve()}) than "
                 f"--run {smoke_run} ({tiny_dataset.resolve()}): kernel_km 96 vs 120", *args,
                 absent=tmp_path / "m.json")
    assert not (tmp_path / "outs").exists()  # refused before generating anything


def test_evaluate_regression_run_of_another_dataset_without_provenance(capsys, tmp_path, tiny_dataset, other_dataset,
                                                                      smoke_run):
    reg = tmp_path / "reg"  # a run trained before provenance.json existed, on the 96 km dataset
    shutil.copytree(smoke_run, reg)
    (reg / "provenance.json").unlink()
    (reg / "norm_stats.json").write_text(json.dumps(dataset.norm_stats(dataset.open_dataset(other_dataset))))
    expect_error(capsys, f"--regression-run {reg} was trained on another dataset than --run {smoke_run} (their "
                 "norm_stats.json differ)", *evaluate_args(smoke_run, tiny_dataset, tmp_path), "--regression-run", reg,
                 absent=tmp_path / "m.json")


def test_notebooks_unknown_name(capsys, tmp_path):
    expect_error(capsys, "unknown notebook(s) ['99_nothing']", "notebooks", "--only", "99_nothing", "--out", tmp_path)


# --- file arguments that are not what they claim (one validation for every command) ------------------
def test_downscale_lr_file_not_netcdf(capsys, tmp_path, smoke_run):
    (tmp_path / "lr.nc").write_text("this is not netCDF\n")
    expect_error(capsys, "lr.nc: not a netCDF file", "downscale", "--run", smoke_run, "--lr-file", tmp_path / "lr.nc",
                 "--out", tmp_path / "o.nc", absent=tmp_path / "o.nc")


def test_features_product_not_netcdf(capsys, tmp_path):
    (tmp_path / "product.nc").write_bytes(b"\x00\x01garbage" * 10)
    expect_error(capsys, "product.nc: not a netCDF file", "features", "--product", tmp_path / "product.nc", "--out",
                 tmp_path / "f.nc", absent=tmp_path / "f.nc")


def test_downscale_run_config_not_json(capsys, tmp_path, tiny_dataset, smoke_run):
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    (run / "config.json").write_text("{not json")
    expect_error(capsys, "config.json: not valid JSON", "downscale", "--run", run, "--data", tiny_dataset, "--date",
                 "2020-12-01", "--out", tmp_path / "o.nc", absent=tmp_path / "o.nc")


def test_downscale_checkpoint_that_would_run_code(capsys, tmp_path, tiny_dataset, smoke_run):
    import torch
    from test_trust import _Payload

    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    state["payload"] = _Payload(tmp_path / "code-ran")
    torch.save(state, run / "checkpoint.pt")
    expect_error(capsys, "checkpoint.pt: refused", "downscale", "--run", run, "--data", tiny_dataset, "--date",
                 "2020-12-01", "--out", tmp_path / "o.nc", absent=tmp_path / "o.nc")
    assert not (tmp_path / "code-ran").exists()


def test_evaluate_output_file_not_netcdf(capsys, tmp_path, tiny_dataset, smoke_run):
    outs = tmp_path / "outs"
    outs.mkdir()
    (outs / "sit_hrai_20201211.nc").write_text("half a file")
    expect_error(capsys, "sit_hrai_20201211.nc: not a netCDF file", *evaluate_args(smoke_run, tiny_dataset, tmp_path),
                 absent=tmp_path / "m.json")


def test_evaluate_outputs_sampled_otherwise(capsys, tmp_path, tiny_dataset, smoke_run):
    """Existing ensembles made with other sampler settings are not scored as if they were asked for."""
    downscale.downscale_dates(smoke_run, tiny_dataset, ["2020-12-11"], tmp_path / "outs", members=2, steps=3,
                              progress=False)
    expect_error(capsys, "sit_hrai_20201211.nc: sampled with other settings: steps 3 (asked 2)",
                 *evaluate_args(smoke_run, tiny_dataset, tmp_path), absent=tmp_path / "m.json")


def test_train_negative_loader_workers(capsys, tmp_path, tiny_dataset):
    expect_error(capsys, "--loader-workers must be >= 0, got -1", "train", "--data", tiny_dataset, "--run",
                 tmp_path / "r", "--profile", "smoke", "--loader-workers", "-1", absent=tmp_path / "r")
