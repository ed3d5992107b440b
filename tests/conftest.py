"""Shared fixtures: tiny moorings files and a tiny dataset store built through the real code path."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from sitsr_core import dataset, fileio
from sitsr_core.grid import Grid

#: The real sample files, tracked in the repository (origin, licence, sha256: data/samples/README.md).
SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
SAMPLE_SHA256 = {
    "topaz4_nh25km_20100101_init.nc": "4bb7dd6bf480e0af084ece8025090a00ff1da0a1f8d549cb331e02226862ed2e",
    "topaz4_nh128x128_20100101_init.nc": "dc46f3ce77fd3a0d712b86f9f5f024af1b83a96ee9ce9e1d03c252d130f5e17b",
    "osisaf_sh_drift_lr_20160913-20160915.nc": "dedfc98e1e8b9ef965a8fccdce6c37d4f338cece3a4121f55a6a8f4ecc897b4a",
}
#: 64 x 64 coastal window (north of Ellesmere Island, ~10 % land).
TINY_GRID = Grid("custom", 370, 440, 64, 64)
TINY_DATES = pd.date_range("2020-11-20", periods=24, freq="D")
TINY_SPLITS = dataset.SplitSpec(val=(("2020-12-01", "2020-12-02"),), test=(("2020-12-11", "2020-12-13"),), gap_days=1)


def smooth_fields(grid: Grid, dates, seed: int = 0) -> dict[str, np.ndarray]:
    """Cheap correlated random fields in the moorings variables, shape (T, ny, nx), NaN on land."""
    rng = np.random.default_rng(seed)
    shape = (len(dates),) + grid.shape
    base = ndimage.gaussian_filter(rng.standard_normal((1,) + grid.shape), (0, 6, 6)) * 8
    small = ndimage.gaussian_filter(rng.standard_normal(shape), (1.5, 1, 1)) * 2
    sit = np.clip(1.5 + base + 0.6 * small, 0, None)
    sic = np.clip(0.9 + 0.1 * small, 0, 1)
    div = ndimage.gaussian_filter(rng.standard_normal(shape), (0, 1, 1)) * 0.05
    shear = np.abs(ndimage.gaussian_filter(rng.standard_normal(shape), (0, 1, 1))) * 0.1
    land = grid.land_mask()
    out = {"sit": sit, "sic": sic, "divergence": div, "shear": shear}
    for a in out.values():
        a[:, land] = np.nan
    return {k: v.astype(np.float32) for k, v in out.items()}


@pytest.fixture(scope="session")
def tiny_moorings(tmp_path_factory) -> Path:
    """Two monthly moorings files (Nov and Dec 2020) on :data:`TINY_GRID`."""
    folder = tmp_path_factory.mktemp("moorings")
    fields = smooth_fields(TINY_GRID, TINY_DATES)
    for month in ("2020-11", "2020-12"):
        sel = TINY_DATES.strftime("%Y-%m") == month
        if sel.any():
            ds = fileio.moorings_dataset(TINY_GRID, TINY_DATES[sel], {k: v[sel] for k, v in fields.items()})
            fileio.write_moorings(folder / f"Moorings_{month.replace('-', 'm')}.nc", ds)
    return folder


@pytest.fixture(scope="session")
def tiny_dataset(tiny_moorings, tmp_path_factory) -> Path:
    """A 24-day, 64 x 64 dataset store (train/val/test/gap splits, norm_stats)."""
    out = tmp_path_factory.mktemp("data") / "tiny.zarr"
    return dataset.constitute(str(tiny_moorings / "Moorings_*.nc"), out, splits=TINY_SPLITS, progress=False)


@pytest.fixture(scope="session")
def other_dataset(tiny_moorings, tmp_path_factory) -> Path:
    """The same moorings constituted with a 96 km kernel: another dataset on the same grid and dates."""
    out = tmp_path_factory.mktemp("data") / "tiny96.zarr"
    return dataset.constitute(str(tiny_moorings / "Moorings_*.nc"), out, kernel_km=96.0, splits=TINY_SPLITS,
                              progress=False)


@pytest.fixture(scope="session")
def cfcheck(tmp_path_factory):
    """Return ``check(path) -> (errors, warnings, output)`` running ``cfchecks`` offline with local tables."""
    import gzip
    import re
    import shutil
    import subprocess

    tables = Path(__file__).parent / "cf_tables"
    folder = tmp_path_factory.mktemp("cf_tables")
    std = folder / "cf-standard-name-table.xml"
    std.write_bytes(gzip.decompress((tables / "cf-standard-name-table.xml.gz").read_bytes()))
    exe = shutil.which("cfchecks") or str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "cfchecks")

    def check(path):
        res = subprocess.run([exe, "-s", str(std), "-a", str(tables / "area-type-table.xml"),
                              "-r", str(tables / "standardized-region-list.xml"), str(path)],
                             capture_output=True, text=True)
        out = res.stdout + res.stderr
        errors = sum(int(n) for n in re.findall(r"ERRORS detected:\s*(\d+)", out))
        warns = sum(int(n) for n in re.findall(r"WARNINGS given:\s*(\d+)", out))
        assert "ERRORS detected" in out, f"cfchecks did not run: {out[-1000:]}"
        return errors, warns, out

    return check


@pytest.fixture(scope="session")
def smoke_run(tiny_dataset, tmp_path_factory) -> Path:
    """A smoke-profile diffusion run trained on :func:`tiny_dataset` (seconds)."""
    from sitsr_core.config import profile
    from sitsr_core.train import train

    return train(profile("smoke"), tiny_dataset, tmp_path_factory.mktemp("runs") / "smoke", progress=False)


@pytest.fixture(scope="session")
def regression_run(tiny_dataset, tmp_path_factory) -> Path:
    """A smoke-profile regression run (the deterministic baseline) on :func:`tiny_dataset`."""
    from sitsr_core.config import apply_overrides, profile
    from sitsr_core.train import train

    cfg = apply_overrides(profile("smoke"), ["train.objective=regression"])
    return train(cfg, tiny_dataset, tmp_path_factory.mktemp("runs") / "regression", progress=False)


@pytest.fixture(scope="session")
def residual_run(tiny_dataset, regression_run, tmp_path_factory) -> Path:
    """A smoke-profile diffusion run on the residual of :func:`regression_run`."""
    from sitsr_core.config import apply_overrides, profile
    from sitsr_core.train import train

    cfg = apply_overrides(profile("smoke"), ["data.target=residual"])
    return train(cfg, tiny_dataset, tmp_path_factory.mktemp("runs") / "residual", progress=False,
                 base_run=regression_run)


def sample_problems(folder: Path = SAMPLES) -> list[str]:
    """One line per sample file of :data:`SAMPLE_SHA256` that is missing or whose sha256 differs."""
    problems = []
    for name, expected in SAMPLE_SHA256.items():
        path = folder / name
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        if digest is None:
            problems.append(f"{path} is missing")
        elif digest != expected:
            problems.append(f"{path} has sha256 {digest}, expected {expected}")
    return problems


@pytest.fixture(scope="session")
def samples() -> Path:
    """The folder of the real sample files, checked: a missing or changed file errors the tests that use it."""
    problems = sample_problems()
    if problems:
        pytest.fail("real sample files (data/samples/README.md): " + "; ".join(problems), pytrace=False)
    return SAMPLES


#: Fixtures that train runs (seconds to minutes each on 2 cores; ``smoke_inputs``: the whole smoke pipeline of the
#: notebooks): a test using one is ``slow``.
SLOW_FIXTURES = {"smoke_run", "regression_run", "residual_run", "sitsic_run", "smoke_inputs", "runs"}
#: Modules whose every test is ``slow``: training, interruptions, the benchmark harness (each test times or trains).
SLOW_MODULES = {"test_train", "test_interrupt", "test_benchmarks"}
#: Single tests over ~20 s on the loaded 2-core machine: training in their body, a subprocess per module or per
#: command (each imports torch), a bit-reproducibility check over several full samplings.
SLOW_TESTS = {"test_cli_train_downscale_evaluate", "test_loss_decreases_on_toy_problem",
              "test_each_module_imports_alone", "test_cli_dataset_error_is_one_line", "test_cli_dataset_operator_flag",
              "test_ddim_eta0_bit_reproducible_and_eta_changes_samples",
              "test_training_does_not_depend_on_the_loader_workers"}


def pytest_collection_modifyitems(config, items):
    """Mark ``slow`` in one place: tests using a trained-run fixture, whole modules that train or time, single tests
    that train, and the book; ``make test-fast`` deselects them (``-m "not slow and not book"``)."""
    for item in items:
        module = item.module.__name__.rpartition(".")[2]
        if (SLOW_FIXTURES & set(item.fixturenames) or module in SLOW_MODULES or item.originalname in SLOW_TESTS
                or item.get_closest_marker("book")):
            item.add_marker(pytest.mark.slow)
