"""Metrics against reference libraries (properscoring, scores, xskillscore), brute force and closed forms."""

import numpy as np
import properscoring
import pytest
import scores.probability
import xarray as xr
import xskillscore
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sitsr_core import metrics
from sitsr_core.filters import box_filter
from sitsr_core.spectra import power_law_field


def random_ensemble(m=7, shape=(20, 30), seed=0):
    rng = np.random.default_rng(seed)
    obs = rng.gamma(2.0, 0.8, size=shape)
    ens = obs + rng.normal(0.2, 0.5, size=(m,) + shape)
    return ens, obs


# ------------------------------------------------------------------ deterministic


def test_rmse_mae_bias_hand_values_with_mask_and_nan():
    obs = np.array([[1.0, 2.0], [3.0, np.nan]])
    pred = np.array([[2.0, 0.0], [100.0, 5.0]])
    mask = np.array([[True, True], [False, True]])  # (1, 0) is land; (1, 1) has a NaN truth
    assert metrics.rmse(pred, obs, mask) == pytest.approx(np.sqrt((1 + 4) / 2))
    assert metrics.mae(pred, obs, mask) == pytest.approx(1.5)
    assert metrics.bias(pred, obs, mask) == pytest.approx(-0.5)
    assert metrics.rmse(pred, obs) == pytest.approx(np.sqrt((1 + 4 + 97**2) / 3))


def test_stack_of_members_gives_one_score_per_member():
    ens, obs = random_ensemble()
    mask = np.random.default_rng(1).random(obs.shape) > 0.2
    per_member = metrics.rmse(ens, obs, mask)
    assert per_member.shape == (7,)
    for i in range(7):
        assert per_member[i] == pytest.approx(np.sqrt(np.mean((ens[i] - obs)[mask] ** 2)))


def test_large_scale_rmse():
    field = 1.5 + power_law_field((64, 64), -2.0, seed=4)
    ocean = ~(power_law_field((64, 64), -4.0, seed=5) > 1.2)
    lr = box_filter(field, ocean, 120.0, 4.0)
    assert metrics.large_scale_rmse(field, lr, ocean) < 1e-5  # the truth does not bias large scales
    members = np.stack([field + 0.3, field - 0.1])  # a constant offset survives the box filter
    np.testing.assert_allclose(metrics.large_scale_rmse(members, lr, ocean), [0.3, 0.1], rtol=1e-4)
    checker = field + 0.5 * (-1.0) ** np.add.outer(np.arange(64), np.arange(64))
    assert metrics.large_scale_rmse(checker, lr, ocean) < 0.05  # grid-scale noise is filtered out


# -------------------------------------------------------------------------- CRPS


def brute_crps(ens, obs, fair):
    m = ens.shape[0]
    skill = np.abs(ens - obs).mean(axis=0)
    pairs = np.abs(ens[:, None] - ens[None, :]).sum(axis=(0, 1))
    return skill - pairs / (2 * m * (m - 1) if fair else 2 * m * m)


def test_fair_crps_matches_scores():
    ens, obs = random_ensemble()
    fc = xr.DataArray(ens, dims=("member", "y", "x"))
    ob = xr.DataArray(obs, dims=("y", "x"))
    ref = scores.probability.crps_for_ensemble(fc, ob, "member", method="fair", preserve_dims=("y", "x"))
    np.testing.assert_allclose(metrics.crps_cells(ens, obs), ref.values, rtol=1e-10)


def test_non_fair_crps_matches_properscoring():
    ens, obs = random_ensemble()
    ref = properscoring.crps_ensemble(obs, np.moveaxis(ens, 0, -1))
    np.testing.assert_allclose(metrics.crps_cells(ens, obs, fair=False), ref, rtol=1e-10)
    np.testing.assert_allclose(metrics.crps_cells(ens, obs), brute_crps(ens, obs, fair=True), rtol=1e-10)


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float64, (4, 3), elements=st.floats(-5, 5).map(lambda v: round(v, 1))),  # rounding makes ties
    arrays(np.float64, (3,), elements=st.floats(-5, 5).map(lambda v: round(v, 1))),
    st.booleans(),
)
def test_sorted_formula_equals_pair_sum(ens, obs, fair):
    np.testing.assert_allclose(metrics.crps_cells(ens, obs, fair=fair), brute_crps(ens, obs, fair), atol=1e-12)


def test_crps_fair_mean_member_axis_and_xarray_wrapper():
    ens, obs = random_ensemble(m=5, shape=(3, 10, 12))  # (member, time, y, x)
    mask = np.random.default_rng(2).random((10, 12)) > 0.3
    ens[2, 0, 0, 0] = np.nan  # a NaN member invalidates that cell
    cells = brute_crps(ens, obs, fair=True)
    ok = np.broadcast_to(mask, obs.shape) & np.isfinite(cells)
    assert metrics.crps_fair(ens, obs, mask) == pytest.approx(cells[ok].mean())
    assert metrics.crps_fair(np.moveaxis(ens, 0, -1), obs, mask, member_axis=-1) == pytest.approx(cells[ok].mean())
    ens_da = xr.DataArray(ens, dims=("member", "time", "y", "x"))
    obs_da = xr.DataArray(obs, dims=("time", "y", "x"))
    mask_da = xr.DataArray(mask.astype(np.uint8), dims=("y", "x"))  # the dataset store's 1 = ocean
    per_day = metrics.crps_fair_xr(ens_da, obs_da, mask_da)
    assert per_day.dims == ("time",)
    for t in range(3):
        assert float(per_day[t]) == pytest.approx(metrics.crps_fair(ens[:, t], obs[t], mask))
    rm = metrics.rmse_xr(ens_da, obs_da, mask_da)
    assert rm.dims == ("member", "time")
    assert float(rm[1, 2]) == pytest.approx(metrics.rmse(ens[1, 2], obs[2], mask))


# -------------------------------------------------------------- spread and ranks


def consistent_ensemble(m, n=200_000, seed=0, member_scale=1.0):
    """Truth and members drawn from the same N(c, sigma) per cell (members' sd scaled by member_scale)."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=n)
    sigma = rng.uniform(0.2, 2.0, size=n)
    obs = centre + sigma * rng.standard_normal(n)
    ens = centre + member_scale * sigma * rng.standard_normal((m, n))
    return ens, obs


def test_spread_skill_ratio_is_one_for_a_consistent_ensemble():
    ens, obs = consistent_ensemble(m=5)
    # uncorrected it would be sqrt(5/6) = 0.913
    assert metrics.spread_skill_ratio(ens, obs) == pytest.approx(1.0, abs=0.015)


def test_spread_skill_ratio_of_an_underdispersive_ensemble():
    m, s = 5, 0.5
    ens, obs = consistent_ensemble(m=m, member_scale=s)
    expected = np.sqrt((m + 1) / m) * s / np.sqrt(1 + s**2 / m)
    assert metrics.spread_skill_ratio(ens, obs) == pytest.approx(expected, rel=0.02)


def test_rmse_of_the_infinite_ensemble_mean_is_the_error_of_the_centre():
    # members and truth scatter around the same centre: the infinite-ensemble mean is the centre
    rng = np.random.default_rng(3)
    centre = rng.normal(size=200_000)
    sigma = rng.uniform(0.2, 2.0, size=centre.size)
    obs = centre + sigma * rng.standard_normal(centre.size)
    ens = centre + 0.2 + sigma * rng.standard_normal((4, centre.size))  # biased by 0.2: the bias stays
    target = metrics.rmse(centre + 0.2, obs)
    assert metrics.rmse(ens.mean(axis=0), obs) > 1.1 * target  # 4 members: + sigma^2 / 4 on the MSE
    assert metrics.rmse_infinite_mean(ens, obs) == pytest.approx(target, rel=0.01)
    assert metrics.rmse_infinite_mean(np.moveaxis(ens, 0, -1), obs, member_axis=-1) == \
        pytest.approx(metrics.rmse_infinite_mean(ens, obs))
    with pytest.raises(ValueError, match="2 members"):
        metrics.rmse_infinite_mean(ens[:1], obs)


def test_spread_error_bins_follow_the_diagonal():
    # many members: binning by the sample spread has a selection bias of ~6 % with 30 members (docstring)
    ens, obs = consistent_ensemble(m=100, n=80_000)
    mask = np.arange(obs.size) % 7 != 0
    b = metrics.spread_error_bins(ens, obs, mask, n_bins=8)
    assert b["count"].sum() == mask.sum() and b["count"].max() - b["count"].min() <= 1
    assert np.all(np.diff(b["spread"]) > 0) and np.all(b["spread_min"] <= b["spread_max"])
    np.testing.assert_allclose(b["rmse"] / b["spread"], 1.0, atol=0.05)
    under = metrics.spread_error_bins(0.5 * ens, obs, mask, n_bins=8)  # shrunk members: error > spread
    assert np.all(under["rmse"] > 1.5 * under["spread"])


def test_rank_histogram_matches_xskillscore():
    ens, obs = random_ensemble(m=9, shape=(40, 50), seed=3)
    mask = np.random.default_rng(4).random(obs.shape) > 0.25
    counts = metrics.rank_histogram(ens, obs, mask)
    fc = xr.DataArray(ens[:, mask].T, dims=("cell", "member"))
    ob = xr.DataArray(obs[mask], dims=("cell",))
    ref = xskillscore.rank_histogram(ob, fc, dim="cell")
    np.testing.assert_array_equal(counts, ref.values)
    assert counts.sum() == mask.sum() and counts.shape == (10,)


def test_rank_histogram_ties_are_spread_uniformly():
    n, m = 20_000, 4
    counts = metrics.rank_histogram(np.zeros((m, n)), np.zeros(n))  # open water everywhere
    np.testing.assert_allclose(counts / n, 1 / (m + 1), atol=0.015)
    assert metrics.rank_flatness(counts) < 5


def test_rank_flatness_hand_values_and_reliable_ensemble():
    assert metrics.rank_flatness([10, 10, 10, 10]) == 0.0
    assert metrics.rank_flatness([20, 0, 10, 10]) == pytest.approx((100 + 100) / 10 / 3)
    ens, obs = consistent_ensemble(m=5, n=50_000)  # independent cells: chi2 / dof ~ 1
    assert metrics.rank_flatness(metrics.rank_histogram(ens, obs)) < 3
    assert metrics.rank_flatness(metrics.rank_histogram(0.5 * ens, obs)) > 100


# ------------------------------------------------------------------- skill table


def test_skill_table_hand_values():
    obs = np.zeros((4, 5))
    ens = np.stack([np.ones((4, 5)), -np.ones((4, 5))])
    lr = np.full((4, 5), 2.0)
    interp = np.full((4, 5), -0.5)
    lr[0, 0] = np.nan  # excluded for every forecast
    mask = np.ones((4, 5), bool)
    mask[3] = False
    t = metrics.skill_table(ens, obs, mask, {"lr": lr, "interp": interp})
    s = t["scores"]
    assert s["ensemble"] == pytest.approx({"rmse": 0.0, "mae": 0.0, "bias": 0.0, "crps": 0.0, "rmse_inf": 0.0})
    assert s["member"] == pytest.approx({"rmse": 1.0, "mae": 1.0, "bias": 0.0, "crps": 1.0})
    assert s["lr"] == pytest.approx({"rmse": 2.0, "mae": 2.0, "bias": 2.0, "crps": 2.0})
    assert s["interp"]["bias"] == pytest.approx(-0.5)
    assert t["improvement_pct"]["lr"]["member"] == pytest.approx({"rmse": 50.0, "mae": 50.0, "crps": 50.0})
    assert t["improvement_pct"]["interp"]["member"]["rmse"] == pytest.approx(-100.0)
    assert t["improvement_pct"]["lr"]["ensemble"]["crps"] == pytest.approx(100.0)


def test_skill_table_ensemble_crps_matches_properscoring_fair_offset():
    ens, obs = random_ensemble(m=6)
    t = metrics.skill_table(ens, obs, None, {"lr": obs + 1.0})
    m = 6
    # fair = ecdf CRPS - (1/(2M(M-1)) - 1/(2M^2)) * sum|Xi - Xj|
    pairs = np.abs(ens[:, None] - ens[None, :]).sum(axis=(0, 1))
    fair = properscoring.crps_ensemble(obs, np.moveaxis(ens, 0, -1)) - pairs * (1 / (2 * m * (m - 1)) - 1 / (2 * m * m))
    assert t["scores"]["ensemble"]["crps"] == pytest.approx(fair.mean())


# ------------------------------------------------------------------ scale bands


def test_scale_bands_defaults_and_scaling():
    assert metrics.scale_bands() == {
        "large": (240.0, None), "medium": (60.0, 240.0), "fine": (16.0, 60.0), "finest": (8.0, 16.0)}
    assert metrics.scale_bands(60.0, 2.0) == {
        "large": (120.0, None), "medium": (30.0, 120.0), "fine": (8.0, 30.0), "finest": (4.0, 8.0)}
    assert metrics.scale_bands(large_min_km=300.0)["medium"] == (60.0, 300.0)


def test_band_powers_partition_the_spectrum():
    k = np.arange(1, 129) / 1024.0  # 256 cells of 4 km: k = n / L up to Nyquist 1/8
    psd = np.stack([np.ones_like(k), k**-2])
    p = metrics.band_powers(k, psd)
    total = sum(p.values())
    np.testing.assert_allclose(total, (psd * k[0]).sum(axis=-1))
    dk = 1 / 1024.0
    # bins n with 1024/n in (240, inf) -> n <= 4; (60, 240] -> 5..17; (16, 60] -> 18..63; [8, 16] -> 64..128
    np.testing.assert_allclose([p[b][0] for b in ("large", "medium", "fine", "finest")],
                               np.array([4, 13, 46, 65]) * dk)


def lowpass(f, lam_km, dx=4.0):
    ky = np.fft.fftfreq(f.shape[-2], dx)
    kx = np.fft.fftfreq(f.shape[-1], dx)
    k = np.hypot(*np.meshgrid(ky, kx, indexing="ij"))
    return np.real(np.fft.ifft2(np.fft.fft2(f) * np.exp(-((k * lam_km) ** 4))))


@pytest.fixture(scope="module")
def scenario():
    """Truth with a basin-scale gradient; LR = its 120 km box mean; a 'good' ensemble."""
    n = 192
    ramp = np.linspace(-1.5, 1.5, n)[None, :] * np.ones((n, 1))
    truth = 2.0 + ramp + 0.3 * power_law_field((n, n), -2.5, seed=1)
    ocean = ~(power_law_field((n, n), -4.0, seed=2) > 1.3)
    lr = np.where(ocean, box_filter(truth, ocean), np.nan)
    mean = lowpass(truth, 50.0)
    members = mean + np.stack([0.3 * (p - lowpass(p, 50.0))
                               for p in (power_law_field((n, n), -2.5, seed=10 + i) for i in range(4))])
    return truth, lr, mean, members, ocean


def test_band_table_and_checks_good_ensemble(scenario):
    truth, lr, mean, members, ocean = scenario
    table = metrics.band_table(truth, lr, mean, members, ocean)
    assert list(table) == ["large", "medium", "fine", "finest"]
    assert table["medium"]["lambda_km"] == [60.0, 240.0]
    for row in table.values():
        assert row["lr_ratio"] == pytest.approx(row["lr"] / row["truth"])
    checks = metrics.band_checks(table)
    assert len(checks) == 5
    assert all(c["passed"] for c in checks), checks


def test_band_table_members_average_power(scenario):
    truth, lr, mean, _, ocean = scenario
    table = metrics.band_table(truth, lr, mean, np.stack([truth, 3 * truth]), ocean)
    for row in table.values():
        assert row["members_ratio"] == pytest.approx(5.0)  # (1 + 9) / 2


def test_band_checks_fail_when_the_mean_is_just_lr(scenario):
    truth, lr, _, members, ocean = scenario
    checks = {c["statement"].split(":")[0] + str(i): c for i, c in enumerate(
        metrics.band_checks(metrics.band_table(truth, lr, lr, members, ocean)))}
    assert checks["large0"]["passed"]
    assert not checks["medium1"]["passed"] and not checks["medium2"]["passed"]
    assert checks["medium2"]["value"] == pytest.approx(1.0)


# ------------------------------------------------------------- days and intervals


def test_bootstrap_ci_of_iid_normal_days_has_the_closed_form_half_width():
    x = np.random.default_rng(3).normal(2.0, 1.5, size=400)
    low, high = metrics.bootstrap_ci(x, n_boot=20_000, block=1, rng=1)
    half = 1.96 * x.std() / np.sqrt(x.size)
    assert 0.5 * (high - low) == pytest.approx(half, rel=0.05)
    assert 0.5 * (low + high) == pytest.approx(x.mean(), abs=0.1 * half)


def test_bootstrap_ci_with_block_one_matches_scipy():
    from scipy.stats import bootstrap

    x = np.random.default_rng(4).gamma(2.0, size=40)
    ref = bootstrap((x,), np.mean, n_resamples=40_000, method="percentile", random_state=5).confidence_interval
    low, high = metrics.bootstrap_ci(x, n_boot=40_000, block=1, rng=6)
    width = ref.high - ref.low
    assert low == pytest.approx(ref.low, abs=0.03 * width) and high == pytest.approx(ref.high, abs=0.03 * width)


def test_moving_blocks_widen_the_interval_of_correlated_days_as_ar1_theory_says():
    phi, n = 0.6, 4000
    rng = np.random.default_rng(7)
    x = np.empty(n)
    x[0] = rng.normal()
    for i in range(1, n):
        x[i] = phi * x[i - 1] + np.sqrt(1 - phi**2) * rng.normal()
    iid_half = 1.96 * x.std() / np.sqrt(n)
    lo1, hi1 = metrics.bootstrap_ci(x, n_boot=4000, block=1, rng=8)
    lob, hib = metrics.bootstrap_ci(x, n_boot=4000, block=40, rng=8)
    assert 0.5 * (hi1 - lo1) == pytest.approx(iid_half, rel=0.1)
    # variance of the mean of an AR(1) series: s^2 / n * (1 + phi) / (1 - phi)
    assert 0.5 * (hib - lob) == pytest.approx(iid_half * np.sqrt((1 + phi) / (1 - phi)), rel=0.15)


def test_bootstrap_ci_statistic_of_per_day_sums_and_edge_cases():
    rng = np.random.default_rng(9)
    sse, cells = rng.gamma(3.0, size=12) * 100, np.full(12, 100.0)
    pooled = np.sqrt(sse.sum() / cells.sum())
    low, high = metrics.bootstrap_ci(np.c_[sse, cells], statistic=lambda m: np.sqrt(m[..., 0] / m[..., 1]), rng=2)
    assert low < pooled < high
    assert (low, high) == pytest.approx(metrics.bootstrap_ci(sse / cells, statistic=np.sqrt, rng=2))
    assert np.isnan(metrics.bootstrap_ci([1.0])).all()
    with pytest.raises(ValueError, match="block"):
        metrics.bootstrap_ci(sse, block=13)


def test_lag_correlation_of_ar1_cells_is_phi_to_the_lag():
    phi, T = 0.7, 40
    rng = np.random.default_rng(10)
    f = np.empty((T, 100, 200))
    f[0] = rng.normal(size=f.shape[1:])
    for t in range(1, T):
        f[t] = phi * f[t - 1] + np.sqrt(1 - phi**2) * rng.normal(size=f.shape[1:])
    f[:, :10] = np.nan  # land
    mask = np.ones(f.shape[1:], bool)
    mask[:, :5] = False
    r = metrics.lag_correlation(f, mask, lags=(1, 4, 10))
    for k, v in r.items():
        assert v == pytest.approx(phi**k, abs=0.02)
    days = np.delete(np.arange(T), [5, 6, 20])  # gaps: pairs only between days exactly k apart
    dates = np.datetime64("2021-01-01") + days
    r2 = metrics.lag_correlation(np.delete(f, [5, 6, 20], axis=0), mask, lags=(1, 4), days=dates)
    assert r2[1] == pytest.approx(phi, abs=0.02) and r2[4] == pytest.approx(phi**4, abs=0.03)
    assert np.isnan(metrics.lag_correlation(f[:3], lags=(5,))[5])


def test_band_spread_skill_is_one_in_every_band_for_an_exchangeable_ensemble():
    m, days = 8, 3
    from scipy.ndimage import gaussian_filter

    white = np.random.default_rng(11).normal(size=(m + 1, days, 96, 96))
    fields = 4.0 * gaussian_filter(white, sigma=(0, 0, 3, 3), mode="wrap") + 0.3 * white  # one red + white law
    ens, obs = fields[1:], fields[0]  # truth and members: independent draws of one field distribution
    mask = np.ones((96, 96), bool)
    mask[:10, :20] = False
    bands = metrics.scale_bands(kernel_km=40.0)  # bands that fit a 384 km square
    table = metrics.band_spread_skill(ens, obs, mask, kernel_km=40.0, bands=bands)
    for band, row in table.items():
        assert row["ratio"] == pytest.approx(1.0, abs=0.2), band
    # members that keep only half of their deviation from the mean at the fine scales
    mean = ens.mean(axis=0)
    damped = mean + np.stack([0.5 * (e - mean) for e in ens])
    low = metrics.band_spread_skill(damped, obs, mask, kernel_km=40.0, bands=bands)
    assert all(low[b]["ratio"] < 0.75 for b in bands)
    one_day = metrics.band_spread_skill(ens[:, 0], obs[0], mask, kernel_km=40.0, bands=bands)
    assert set(one_day) == set(bands)


def _days_with_shared_difficulty(days=12, m=6, seed=12):
    """Days of very different difficulty; the ensemble is a little better than the baseline on each."""
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.2, 2.0, size=days)[:, None, None]  # per-day error size, shared by both forecasts
    obs = rng.normal(size=(days, 32, 32))
    base = obs + scale * rng.normal(size=obs.shape)
    ens = obs + scale * (0.8 * rng.normal(size=obs.shape) + 0.3 * rng.normal(size=(m,) + obs.shape))
    return ens, obs, base


def test_skill_table_per_day_scores_and_intervals_over_days():
    ens, obs, base = _days_with_shared_difficulty()
    mask = np.ones(obs.shape[1:], bool)
    mask[0] = False
    t = metrics.skill_table(ens, obs, mask, {"base": base}, day_axis=0, n_boot=4000)
    mean = ens.mean(axis=0)
    for d in range(obs.shape[0]):
        assert t["per_day"]["ensemble"]["rmse"][d] == pytest.approx(metrics.rmse(mean[d], obs[d], mask))
        assert t["per_day"]["ensemble"]["crps"][d] == pytest.approx(metrics.crps_fair(ens[:, d], obs[d], mask))
        assert t["per_day"]["base"]["mae"][d] == pytest.approx(metrics.mae(base[d], obs[d], mask))
        assert t["per_day"]["ensemble"]["spread_skill"][d] == pytest.approx(
            metrics.spread_skill_ratio(ens[:, d], obs[d], mask))
    for fc in ("ensemble", "member", "base"):
        for s in ("rmse", "mae", "crps"):
            low, high = t["ci95"][fc][s]
            assert low < t["scores"][fc][s] < high
    # the paired difference of RMSEs against scipy's paired bootstrap (block of one day)
    from scipy.stats import bootstrap

    e2 = (np.array(t["per_day"]["ensemble"]["rmse"]) ** 2, np.array(t["per_day"]["base"]["rmse"]) ** 2)
    ref = bootstrap(e2, lambda a, b, axis=-1: np.sqrt(a.mean(axis)) - np.sqrt(b.mean(axis)), paired=True,
                    n_resamples=20_000, method="percentile", random_state=1).confidence_interval
    one = metrics.skill_table(ens, obs, mask, {"base": base}, day_axis=0, n_boot=20_000, block=1)
    pr = one["paired"]["base"]["rmse"]
    assert pr["diff"] == pytest.approx(one["scores"]["ensemble"]["rmse"] - one["scores"]["base"]["rmse"])
    width = ref.high - ref.low
    assert pr["ci95"] == pytest.approx([ref.low, ref.high], abs=0.05 * width)
    # pairing removes the shared day-to-day difficulty: the difference is significant although the
    # intervals of the two scores overlap
    assert pr["ci95"][1] < 0
    assert one["ci95"]["ensemble"]["rmse"][1] > one["ci95"]["base"]["rmse"][0]
    assert one["paired"]["base"]["crps"]["diff"] == pytest.approx(
        one["scores"]["ensemble"]["crps"] - one["scores"]["base"]["mae"])


def test_rank_flatness_of_exchangeable_ensembles_has_expectation_one():
    # chi-square / dof of a multinomial with equal probabilities: expectation 1, for any ensemble size
    values = [metrics.rank_flatness(metrics.rank_histogram(*consistent_ensemble(m=9, n=3000, seed=s)))
              for s in range(40)]
    assert np.mean(values) == pytest.approx(1.0, abs=0.2)
    over = [metrics.rank_flatness(metrics.rank_histogram(*consistent_ensemble(m=9, n=3000, seed=s, member_scale=1.5)))
            for s in range(5)]
    assert min(over) > 5  # over-dispersed members: a dome, far from flat
