"""Observation operators: coarse values are kernel means of the truth, the noise is there and seeded, options differ."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from conftest import TINY_DATES, TINY_GRID, smooth_fields

from sitsr_core import dataset, filters, observe
from sitsr_core.errors import SitsrInputError

DAYS = range(4, 14)


@pytest.fixture(scope="module")
def truth():
    f = smooth_fields(TINY_GRID, TINY_DATES)
    return {k: v.astype(np.float64) for k, v in f.items()}, ~TINY_GRID.land_mask()


def day_of(fields, i):
    return {k: v[i] for k, v in fields.items()}


def noise_free(op):
    return dataclasses.replace(op, **{v: dataclasses.replace(getattr(op, v), noise_std=0.0)
                                      for v in observe.VARIABLES})


def reference_coarse_means(field, mask, kernel_km, grid_km, dx_km=4.0):
    """Independent loop: mean over the ocean cells whose centres lie within kernel/2 of each coarse-cell centre."""
    g = int(grid_km / dx_km)
    half = kernel_km / dx_km / 2
    ny, nx = field.shape
    by, bx = -(-ny // g), -(-nx // g)
    out = np.full((by, bx), np.nan)
    for i in range(by):
        for j in range(bx):
            if not mask[i * g:(i + 1) * g, j * g:(j + 1) * g].any():
                continue
            cy, cx = i * g + (g - 1) / 2, j * g + (g - 1) / 2
            rows = [r for r in range(ny) if abs(r - cy) < half]
            cols = [c for c in range(nx) if abs(c - cx) < half]
            sub, m = field[np.ix_(rows, cols)], mask[np.ix_(rows, cols)]
            out[i, j] = sub[m].mean()
    return out


@pytest.mark.parametrize("variable", ["sit", "divergence"])
def test_coarse_values_are_kernel_means_of_the_truth(truth, variable):
    fields, mask = truth
    op = observe.ObservationOperator()
    obs = getattr(op, variable)
    got = observe.coarse_observe(fields[variable][5], mask, obs, variable, rng=None)
    ref = reference_coarse_means(fields[variable][5], mask, obs.kernel_km, obs.grid_km)
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)
    assert np.isnan(got).sum() == np.isnan(ref).sum()


def test_noise_has_the_stated_std_and_the_lr_keeps_part_of_it(truth):
    fields, mask = truth
    op = observe.ObservationOperator()
    diffs, lr_diffs = [], []
    for i in DAYS:
        noisy = observe.observe_day(day_of(fields, i), mask, op, TINY_GRID, TINY_DATES[i])
        clean = observe.observe_day(day_of(fields, i), mask, noise_free(op), TINY_GRID, TINY_DATES[i])
        ref = reference_coarse_means(fields["sit"][i], mask, op.sit.kernel_km, op.sit.grid_km)
        d = noisy["sit_obs"] - ref
        diffs.append(d[np.isfinite(d)])
        lr_diffs.append((noisy["sit_lr"] - clean["sit_lr"])[mask])
    std = np.concatenate(diffs).std()
    assert std == pytest.approx(op.sit.noise_std, rel=0.2)
    # after the 120 km box, part of the 48 km-correlated noise remains in the context
    lr_std = np.concatenate(lr_diffs).std()
    assert 0.02 < lr_std < op.sit.noise_std


def test_correlated_noise_std_and_correlation_length():
    rng = np.random.default_rng(0)
    n = observe.correlated_noise((400, 400), 0.2, 2.0, rng)
    assert n.std() == pytest.approx(0.2, rel=0.05)
    corr = np.mean(n[:, 2:] * n[:, :-2]) / n.var()
    assert corr == pytest.approx(np.exp(-1), abs=0.05)  # e-folding at the stated length (2 cells)
    white = observe.correlated_noise((400, 400), 0.03, 0.0, rng)
    assert white.std() == pytest.approx(0.03, rel=0.05) and abs(np.mean(white[:, 1:] * white[:, :-1])) < 1e-5


def test_noise_is_reproducible_from_seed_and_day(truth):
    fields, mask = truth
    op = observe.ObservationOperator()
    a = observe.observe_day(day_of(fields, 6), mask, op, TINY_GRID, TINY_DATES[6])
    b = observe.observe_day(day_of(fields, 6), mask, op, TINY_GRID, TINY_DATES[6])
    np.testing.assert_array_equal(a["sit_lr"], b["sit_lr"])
    other_seed = observe.observe_day(day_of(fields, 6), mask, dataclasses.replace(op, seed=1), TINY_GRID,
                                     TINY_DATES[6])
    other_day = observe.observe_day(day_of(fields, 6), mask, op, TINY_GRID, TINY_DATES[7])
    for c in (other_seed, other_day):
        assert np.nanstd(c["sit_obs"] - a["sit_obs"]) > 0.1


def test_moving_mean_is_the_box_filter_and_differs_from_product(truth):
    fields, mask = truth
    mm = observe.observe_day(day_of(fields, 5), mask, observe.ObservationOperator("moving-mean"))
    np.testing.assert_allclose(mm["sit_lr"], filters.box_filter(fields["sit"][5], mask, 120.0), rtol=1e-6)
    np.testing.assert_allclose(mm["sic_lr"], filters.box_filter(fields["sic"][5], mask, 24.0), rtol=1e-6)
    assert "sit_obs" not in mm
    pr = observe.observe_day(day_of(fields, 5), mask, observe.ObservationOperator(), TINY_GRID, TINY_DATES[5])
    clean = observe.observe_day(day_of(fields, 5), mask, noise_free(observe.ObservationOperator()), TINY_GRID,
                                TINY_DATES[5])
    assert np.nanstd(pr["sit_lr"] - mm["sit_lr"]) > 0.02
    # without noise the product chain is a slightly smoother 120 km field: close to the moving mean
    assert np.sqrt(np.nanmean((clean["sit_lr"] - mm["sit_lr"]) ** 2)) < 0.5 * np.nanstd(mm["sit_lr"])
    assert np.isfinite(pr["sit_lr"][mask]).all() and np.isnan(pr["sit_lr"][~mask]).all()
    assert 0 <= np.nanmin(pr["sic_lr"]) and np.nanmax(pr["sic_lr"]) <= 1


def test_operator_config_round_trip_and_validation():
    op = observe.ObservationOperator(seed=3)
    assert observe.ObservationOperator.from_dict(json.loads(op.to_json())) == op
    with pytest.raises(SitsrInputError, match="unknown observation operator"):
        observe.ObservationOperator("blur").validate()
    with pytest.raises(SitsrInputError, match="same parity"):
        observe.FeatureObservation(kernel_km=60.0, grid_km=24.0).cells()


def test_store_saves_the_operator_and_the_observed_values(tiny_dataset, tiny_moorings, tmp_path):
    from conftest import TINY_SPLITS

    ds = dataset.open_dataset(tiny_dataset)
    op = observe.operator_of(ds)
    assert op == observe.ObservationOperator() and ds.attrs["seed"] == 0
    assert ds["sit_obs"].dims == ("time", "y_obs", "x_obs") and ds["sit_obs"].shape[1:] == (11, 11)
    mm_path = dataset.constitute(str(tiny_moorings / "Moorings_*.nc"), tmp_path / "mm.zarr", splits=TINY_SPLITS,
                                 progress=False, operator="moving-mean")
    mm = dataset.open_dataset(mm_path)
    assert observe.operator_of(mm).name == "moving-mean" and "sit_obs" not in mm
    mask = mm["mask"].values.astype(bool)
    raw = smooth_fields(TINY_GRID, TINY_DATES)
    np.testing.assert_allclose(mm["sit_lr"].values[4], filters.box_filter(raw["sit"][4], mask, 120), rtol=1e-6)
    # the default store's context carries the product noise: it is not the moving mean
    assert np.nanstd(ds["sit_lr"].values - mm["sit_lr"].values) > 0.02


def test_cli_dataset_operator_flag(tmp_path, tiny_moorings):
    import subprocess
    import sys

    out = tmp_path / "seed5.zarr"
    r = subprocess.run([sys.executable, "-m", "sitsr_core.cli", "dataset", "--moorings",
                        str(tiny_moorings / "Moorings_*.nc"), "--out", str(out), "--val", "2020-12-01:2020-12-02",
                        "--test", "2020-12-11:2020-12-13", "--gap-days", "1", "--operator", "product", "--seed", "5"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    op = observe.operator_of(dataset.open_dataset(out))
    assert op.name == "product" and op.seed == 5
    r = subprocess.run([sys.executable, "-m", "sitsr_core.cli", "dataset", "--moorings", "x.nc", "--out", "y.zarr",
                        "--operator", "blur"], capture_output=True, text=True)
    assert r.returncode == 2 and "invalid choice" in r.stderr


def block_centre_moving_means(field, mask, block=30):
    """Independent reference: the 120 km moving mean (box_filter) averaged over each block's centre cells."""
    lr = filters.box_filter(field, mask, 120.0)
    out = []
    for i in range(-(-mask.shape[0] // block)):
        for j in range(-(-mask.shape[1] // block)):
            ry = np.arange(i * block, min((i + 1) * block, mask.shape[0]))
            rx = np.arange(j * block, min((j + 1) * block, mask.shape[1]))
            cy = set(ry[(len(ry) - 1) // 2:len(ry) // 2 + 1])  # the middle cell(s) of the block
            cx = set(rx[(len(rx) - 1) // 2:len(rx) // 2 + 1])
            vals = [lr[a, b] for a in cy for b in cx if mask[a, b]]
            if vals:
                out.append(np.mean(vals))
    return np.array(out)


@pytest.mark.parametrize("name", observe.OPERATORS)
def test_conservation_matches_the_truths_observed_values_without_noise(truth, name):
    fields, mask = truth
    sit = fields["sit"][5]
    rng = np.random.default_rng(0)
    members = np.clip(sit + 0.3 + 0.5 * rng.standard_normal((3,) + sit.shape), 0, None)
    op = noise_free(observe.ObservationOperator(name))
    if name == "product":
        observed = reference_coarse_means(sit, mask, op.sit.kernel_km, op.sit.grid_km)
        truth_values = observed[np.isfinite(observed)]

        def values(x):
            v = reference_coarse_means(x, mask, op.sit.kernel_km, op.sit.grid_km)
            return v[np.isfinite(v)]
    else:
        observed = filters.box_filter(sit, mask, 120.0)
        truth_values = block_centre_moving_means(sit, mask)

        def values(x):
            return block_centre_moving_means(x, mask)
    W, c, sigma = observe.observation_constraint(op, mask, observed)
    out = observe.conserve_observed(members, W, c, sigma, mask)
    assert np.abs(values(members[0]) - truth_values).max() > 0.2
    for m in out:
        np.testing.assert_allclose(values(np.where(mask, m, 0.0)), truth_values, atol=1e-4)
    assert (out[:, mask] >= 0).all() and np.isnan(out[:, ~mask]).all()


def test_conservation_agrees_within_the_observation_noise(truth):
    fields, mask = truth
    sit = fields["sit"][5]
    op = observe.ObservationOperator()
    observed = observe.coarse_observe(sit, mask, op.sit, "sit", observe.day_rng(0, TINY_DATES[5], "sit"))
    W, c, sigma = observe.observation_constraint(op, mask, observed)
    rms = lambda x: float(np.sqrt(np.mean((W @ np.nan_to_num(x).ravel() - c) ** 2)))  # noqa: E731
    # the truth is within about the noise of its observation: (nearly) unchanged
    kept = observe.conserve_observed(sit, W, c, sigma, mask)
    assert np.sqrt(np.mean((kept - sit)[mask] ** 2)) < 0.1
    # a member 0.6 m too thick is pulled to the noise level of the observations, not fitted to their noise
    wrong = np.where(mask, sit + 0.6, 0.0)
    fixed = observe.conserve_observed(wrong, W, c, sigma, mask)
    assert rms(wrong) > 2.5 * sigma
    assert 0.9 * sigma < rms(fixed) <= 1.01 * sigma
    assert np.sqrt(np.mean((fixed - sit)[mask] ** 2)) < 0.4
