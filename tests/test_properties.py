"""Property-based tests (hypothesis) of the filters: random shapes, masks and NaN patterns."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sitsr_core import filters

shapes = st.tuples(st.integers(1, 40), st.integers(1, 40))


@st.composite
def masked_fields(draw):
    shape = draw(shapes)
    values = draw(arrays(np.float64, shape, elements=st.one_of(st.floats(-50, 50), st.just(np.nan))))
    mask = draw(arrays(np.bool_, shape))
    return values, mask


@settings(max_examples=150, deadline=None)
@given(masked_fields(), st.sampled_from([4.0, 8.0, 24.0, 120.0]))
def test_box_filter_is_a_local_mean_of_valid_cells(data, kernel_km):
    field, mask = data
    out = filters.box_filter(field, mask, kernel_km)
    valid = mask & np.isfinite(field)
    assert out.shape == field.shape
    assert np.array_equal(np.isfinite(out), valid)  # NaN exactly where invalid
    if valid.any():
        lo, hi = field[valid].min(), field[valid].max()
        assert np.all(out[valid] >= lo - 1e-4) and np.all(out[valid] <= hi + 1e-4)


@settings(max_examples=150, deadline=None)
@given(masked_fields(), st.integers(1, 12))
def test_block_average_conserves_mass_over_valid_cells(data, block):
    field, mask = data
    means, fraction = filters.block_average(field, mask, block)
    valid = mask & np.isfinite(field)
    ny, nx = field.shape
    counts = np.pad(valid, ((0, -ny % block), (0, -nx % block))).reshape(means.shape[0], block, means.shape[1],
                                                                         block).sum(axis=(1, 3))
    np.testing.assert_allclose(np.nansum(means * counts), field[valid].sum(), atol=1e-6 * max(1, valid.sum()))
    assert np.array_equal(np.isnan(means), counts == 0)
    assert np.all((fraction >= 0) & (fraction <= 1))


@settings(max_examples=80, deadline=None)
@given(masked_fields())
def test_interp_baseline_never_extrapolates_to_invalid_cells(data):
    field, mask = data
    out = filters.interp_baseline(field, mask, 24.0)
    valid = mask & np.isfinite(field)
    assert not np.isfinite(out[~valid]).any()
    if valid.any():
        assert np.nanmin(out) >= field[valid].min() - 1e-4 and np.nanmax(out) <= field[valid].max() + 1e-4
