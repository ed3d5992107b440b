"""Filters against an independent direct convolution; mask handling; baseline."""

import numpy as np
import pytest
from scipy.signal import convolve2d

from sitsr_core import filters
from sitsr_core.errors import SitsrInputError


def direct_box(field, valid, kernel_cells):
    """Reference: explicit 2-D convolution with the trapezoidal box, normalised by valid weight."""
    w = np.ones(kernel_cells + 1)
    w[0] = w[-1] = 0.5
    K = np.outer(w, w)
    num = convolve2d(np.where(valid, field, 0.0), K, mode="same")
    den = convolve2d(valid.astype(float), K, mode="same")
    return np.where(valid, num / den, np.nan)


@pytest.mark.parametrize("kernel_km", [24.0, 40.0, 120.0])
def test_box_filter_matches_direct_convolution(kernel_km):
    rng = np.random.default_rng(1)
    f = rng.gamma(2.0, 0.8, size=(57, 71))
    valid = rng.random(f.shape) > 0.25
    out = filters.box_filter(f, valid, kernel_km)
    ref = direct_box(f, valid, int(kernel_km / 4))
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_box_kernel_has_exact_width():
    assert filters.box_kernel(120).sum() == 30
    assert len(filters.box_kernel(120)) == 31
    assert filters.box_kernel(12).tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(SitsrInputError, match="multiple"):
        filters.box_kernel(10)


def test_land_does_not_bleed_into_coast():
    f = np.full((60, 60), 2.0)
    valid = np.ones_like(f, dtype=bool)
    valid[:, :20] = False
    f[:, :20] = 1000.0  # absurd values on land must not leak
    out = filters.box_filter(f, valid, 120)
    assert np.all(np.isnan(out[:, :20]))
    np.testing.assert_allclose(out[:, 20:], 2.0, rtol=1e-6)


def test_nan_cells_are_invalid_and_constant_is_preserved():
    f = np.full((40, 50), 1.5)
    f[10:15, 10:30] = np.nan
    out = filters.box_filter(f, None, 24)
    assert np.isnan(out[12, 12])
    np.testing.assert_allclose(out[np.isfinite(out)], 1.5, rtol=1e-6)


def test_box_filter_batches_over_leading_axes():
    rng = np.random.default_rng(2)
    f = rng.standard_normal((3, 40, 40))
    out = filters.box_filter(f, None, 24)
    np.testing.assert_allclose(out[1], filters.box_filter(f[1], None, 24))


def test_block_average_and_fraction():
    f = np.arange(36, dtype=float).reshape(6, 6)
    valid = np.ones_like(f, bool)
    valid[0, 0] = False
    means, frac = filters.block_average(f, valid, 3)
    assert means.shape == (2, 2)
    assert means[0, 1] == pytest.approx(f[:3, 3:].mean())
    assert means[0, 0] == pytest.approx(f[:3, :3][valid[:3, :3]].mean())
    assert frac[0, 0] == pytest.approx(8 / 9)


def test_interp_baseline_reproduces_linear_field_and_keeps_land():
    ny, nx = 90, 120
    yy, xx = np.mgrid[0:ny, 0:nx]
    f = 0.01 * xx + 0.02 * yy + 1.0
    valid = np.ones((ny, nx), bool)
    valid[:30, :30] = False  # one all-land block
    out = filters.interp_baseline(f, valid, 120)
    assert np.all(np.isnan(out[:30, :30]))
    inner = (slice(45, 75), slice(45, 90))  # between block centres, away from land: bilinear is exact
    np.testing.assert_allclose(out[inner], f[inner], atol=1e-5)
    assert np.isfinite(out[valid]).all()

