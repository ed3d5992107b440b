"""Linear deconvolution baseline: exact on noise-free band-limited truth, the LR field under heavy damping,
regularisation chosen on val days, and (the key guard) little to recover from the default product operator."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import ndimage

from sitsr_core import baselines, filters, observe
from sitsr_core.errors import SitsrDataError, SitsrInputError
from sitsr_core.grid import Grid

#: An all-ocean 96 x 96 window of the central Arctic (the issue's deconvolution window).
OPEN = Grid("custom", 320 + 115, 280 + 113, 96, 96)
MOVING = observe.ObservationOperator("moving-mean")


def rmse(a, b, m):
    return float(np.sqrt(np.mean((a - b)[m] ** 2)))


def band_limited(shape, dx_km=4.0):
    """Waves of 200 and 80 km (box-120 gains 0.76 and -0.21, away from its zeros) around 2 m."""
    y, x = np.meshgrid(np.arange(shape[0]) * dx_km, np.arange(shape[1]) * dx_km, indexing="ij")
    return (2 + 0.5 * np.cos(2 * np.pi * x / 200 + 0.3) * np.sin(2 * np.pi * y / 200)
            + 0.3 * np.cos(2 * np.pi * (x + y) / 80 / np.sqrt(2)))


def rough_truth(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (2 + ndimage.gaussian_filter(rng.standard_normal(shape), 8) * 8
            + ndimage.gaussian_filter(rng.standard_normal(shape), 2) * 1.5)


@pytest.fixture(scope="module")
def open_mask():
    return ~OPEN.land_mask()


def test_noise_free_band_limited_truth_is_recovered():
    mask = np.ones((64, 64), bool)
    mask[:10, :6] = False  # a corner of land: the mask-aware operator is still known exactly
    truth = band_limited(mask.shape)
    lr = filters.box_filter(np.where(mask, truth, np.nan), mask, 120.0)  # independent forward operator
    est = baselines.deconvolve(lr, mask, MOVING, 1e-4, iters=1000)
    assert rmse(lr, truth, mask) > 0.25
    # lsqr converges slowly on the box's weak gains (80 km: -0.21) and near the edges: 90 % of the error goes
    assert rmse(est, truth, mask) < 0.12 * rmse(lr, truth, mask)
    assert np.isnan(est[~mask]).all()


def test_heavy_damping_or_heavy_noise_gives_back_the_lr_field():
    mask = np.ones((48, 48), bool)
    truth = band_limited(mask.shape)
    rng = np.random.default_rng(1)
    lr = filters.box_filter(truth, mask, 120.0) + rng.normal(0, 0.5, mask.shape)
    est = baselines.deconvolve(lr, mask, MOVING, 1e4)
    np.testing.assert_allclose(est, lr, atol=1e-3)
    # with half a metre of white noise, a lightly damped inversion amplifies it: worse than the LR field
    assert rmse(baselines.deconvolve(lr, mask, MOVING, 1e-3), truth, mask) > rmse(lr, truth, mask)


def test_product_operator_leaves_little_to_deconvolve(open_mask):
    """Key guard: the best linear deconvolution removes most of the moving mean's error, little of the product's."""
    truth = rough_truth(OPEN.shape)
    day = {"sit": truth, "sic": np.full(OPEN.shape, 0.95), "divergence": np.zeros(OPEN.shape),
           "shear": np.zeros(OPEN.shape)}
    gain = {}
    for name in observe.OPERATORS:
        op = observe.ObservationOperator(name)
        lr = observe.observe_day(day, open_mask, op, OPEN, "2021-03-01")["sit_lr"]
        best = min(rmse(baselines.deconvolve(lr, open_mask, op, reg, grid=OPEN), truth, open_mask)
                   for reg in baselines.REGS)
        gain[name] = 1 - best / rmse(lr, truth, open_mask)
    assert gain["moving-mean"] > 0.6
    assert gain["product"] < 0.25
    assert gain["product"] < 0.3 * gain["moving-mean"]


def test_linear_operator_is_the_product_chain_without_noise_and_its_adjoint(open_mask):
    op = observe.ObservationOperator()
    clean = dataclasses.replace(op, sit=dataclasses.replace(op.sit, noise_std=0.0))
    truth = rough_truth(OPEN.shape, seed=2)
    day = {"sit": truth, "sic": np.full(OPEN.shape, 0.95), "divergence": np.zeros(OPEN.shape),
           "shear": np.zeros(OPEN.shape)}
    lin = baselines.LinearObservation(op, open_mask, OPEN)
    ref = observe.observe_day(day, open_mask, clean, OPEN, "2021-03-01")["sit_lr"]
    np.testing.assert_allclose(lin.forward(truth)[open_mask], ref[open_mask], atol=1e-5)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((2,) + OPEN.shape)
    assert np.sum(lin.forward(x) * y) == pytest.approx(np.sum(x * lin.adjoint(y)), rel=1e-10)


def fake_store(noise, test_noise=None, seed=0):
    """A 48 x 48 all-ocean moving-mean store: 4 val days (LR noise ``noise``), 2 test days (``test_noise``)."""
    mask = np.ones((48, 48), bool)
    rng = np.random.default_rng(seed)
    sit = np.stack([band_limited(mask.shape) + 0.1 * i for i in range(6)])
    sd = np.array([noise] * 4 + [noise if test_noise is None else test_noise] * 2)[:, None, None]
    lr = np.stack([filters.box_filter(s, mask, 120.0) for s in sit]) + sd * rng.standard_normal(sit.shape)
    return xr.Dataset(
        {"sit": (("time", "y", "x"), sit.astype(np.float32)), "sit_lr": (("time", "y", "x"), lr.astype(np.float32)),
         "mask": (("y", "x"), mask.astype(np.uint8)), "split": ("time", np.array(["val"] * 4 + ["test"] * 2))},
        coords={"time": pd.date_range("2021-01-01", periods=6)},
        attrs={"observation_operator": MOVING.to_json(), "grid_window": json.dumps([0, 0, 48, 48])})


def test_regularisation_is_chosen_on_val_days_only():
    assert baselines.choose_regularisation(fake_store(0.0)) <= 1e-2
    assert baselines.choose_regularisation(fake_store(0.5)) >= 0.3
    # noisy test days do not move the choice: only val days are read
    assert baselines.choose_regularisation(fake_store(0.0, test_noise=0.5)) <= 1e-2
    with pytest.raises(SitsrInputError, match="val"):
        baselines.choose_regularisation(fake_store(0.0), split="test")
    ds = fake_store(0.0)
    ds["sit"][:4] = np.nan
    with pytest.raises(SitsrDataError, match="no finite val score"):
        baselines.choose_regularisation(ds)


def test_stored_regularisation_is_written_beside_the_dataset(tmp_path):
    path = tmp_path / "toy.zarr"
    ds = fake_store(0.5)
    ds.attrs.update(norm_stats="{}", kernel_km=120.0, sic_kernel_km=24.0)
    ds["sit_interp"] = ds["sit_lr"]
    for v in ("sic_lr", "divergence_lr", "shear_lr"):
        ds[v] = ds["sit_lr"]
    ds.to_zarr(path, zarr_format=2, consolidated=True)
    reg = baselines.stored_regularisation(path)
    saved = json.loads(baselines.regularisation_path(path).read_text())
    assert saved["reg"] == reg >= 0.3 and saved["split"] == "val"
    assert baselines.regularisation_path(path).name == "toy.deconvolution.json"
    # kept while the dataset and the search are the same; recomputed for another search or a rebuilt store
    baselines.regularisation_path(path).write_text(json.dumps({**saved, "reg": 123.0}))
    assert baselines.stored_regularisation(path) == 123.0
    assert baselines.stored_regularisation(path, max_days=1) != 123.0
    baselines.regularisation_path(path).write_text(json.dumps({**saved, "reg": 123.0, "dataset_fingerprint": "x"}))
    assert baselines.stored_regularisation(path) != 123.0
