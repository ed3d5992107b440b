"""Isotropic spectra: slope recovery on power-law fields (with and without land), fill, conventions."""

import numpy as np
import pytest

from sitsr_core.spectra import _harmonic_fill, isotropic_spectrum, power_law_field, spectral_slope

N = 256


def land_mask(frac: float = 0.15, seed: int = 100) -> np.ndarray:
    """Irregular islands and coasts: the top ``frac`` of a smooth random field, True on land."""
    f = power_law_field((N, N), -4.0, seed=seed)
    return f > np.quantile(f, 1.0 - frac)


@pytest.fixture(scope="module")
def stacks():
    """Eight realisations per slope (one realisation scatters by ~0.15 in slope at the large scales)."""
    return {s: np.stack([power_law_field((N, N), s, seed=i) for i in range(8)]) for s in (-1.5, -2.0, -3.0)}


@pytest.mark.parametrize("with_land", [False, True])
@pytest.mark.parametrize("slope", [-1.5, -2.0, -3.0])
def test_slope_recovered_16_to_200_km(stacks, slope, with_land):
    land = land_mask()
    assert 0.14 < land.mean() < 0.16
    k, psd = isotropic_spectrum(stacks[slope], mask=~land if with_land else None, dx=4.0)
    assert psd.shape == (8, k.size)
    assert spectral_slope(k, psd.mean(axis=0), 16.0, 200.0) == pytest.approx(slope, abs=0.1)


def test_coastal_land_mask_corner_continent(stacks):
    """A straight coast across a corner (15 % land) must not flatten a steep spectrum either."""
    yy, xx = np.mgrid[:N, :N]
    ocean = (xx + yy) < 1.45 * N
    assert 0.14 < 1 - ocean.mean() < 0.16
    k, psd = isotropic_spectrum(stacks[-3.0], mask=ocean)
    assert spectral_slope(k, psd.mean(axis=0), 16.0, 200.0) == pytest.approx(-3.0, abs=0.1)


def test_integral_is_variance_without_window():
    f = power_law_field((128, 96), -3.0, seed=3)
    k, psd = isotropic_spectrum(f, window=False)
    assert k[0] == pytest.approx(1 / (128 * 4.0)) and k[-1] == pytest.approx(1 / 8.0)
    # a red field has almost no energy in the corner modes beyond the Nyquist circle
    assert (psd * (k[1] - k[0])).sum() == pytest.approx(f.var(), rel=0.01)


def test_mask_true_is_valid_and_equals_nan_marking():
    f = power_law_field((64, 64), -2.0, seed=1)
    ocean = ~(power_law_field((64, 64), -4.0, seed=2) > 1.0)
    k1, p1 = isotropic_spectrum(f, mask=ocean)
    k2, p2 = isotropic_spectrum(np.where(ocean, f, np.nan))
    np.testing.assert_allclose(p1, p2)
    _, p_inverted = isotropic_spectrum(f, mask=~ocean)
    assert not np.allclose(p1, p_inverted)


def test_nan_in_one_field_invalidates_the_cell_for_the_stack():
    f = np.stack([power_law_field((64, 64), -2.0, seed=s) for s in (1, 2)])
    g = f.copy()
    g[1, 10:20, 30:40] = np.nan
    valid = np.ones((64, 64), bool)
    valid[10:20, 30:40] = False
    _, p = isotropic_spectrum(g)
    _, ref = isotropic_spectrum(f, mask=valid)
    np.testing.assert_allclose(p, ref)


def test_harmonic_fill_reproduces_a_linear_field_inside_a_hole():
    """Linear functions are discrete-harmonic: filling a hole away from the border must give them back."""
    yy, xx = np.mgrid[:40, :50].astype(float)
    lin = 0.3 * xx - 0.7 * yy + 2.0
    valid = np.ones((40, 50), bool)
    valid[8:30, 12:20] = False
    valid[15:18, 30:45] = False
    filled = _harmonic_fill(np.where(valid, lin, 0.0)[None], valid)[0]
    np.testing.assert_allclose(filled, lin, atol=1e-9)


def test_no_valid_cell_and_too_few_bins_raise():
    with pytest.raises(ValueError, match="no valid cell"):
        isotropic_spectrum(np.full((8, 8), np.nan))
    k, psd = isotropic_spectrum(power_law_field((32, 32), -2.0))
    with pytest.raises(ValueError, match="fewer than two"):
        spectral_slope(k, psd, 100.0, 110.0)
