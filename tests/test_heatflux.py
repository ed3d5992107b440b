"""Conductive heat flux against hand-computed values."""

import numpy as np
import pytest

from sitsr_core import heatflux

F0 = 2.03 * (-1.8 - (-25.0))  # k_i (T_f - T_s) = 47.096 W/m for the default surface temperature

SIT = np.array([[1.0, 0.2, 0.0], [0.5, 0.01, np.nan]])
SIC = np.array([[1.0, 0.5, 0.9], [0.1, 1.0, 0.8]])
# cells: h = 1 m; h = 0.4 m; sit = 0 (open water); sic < 0.15 (open water); h = 0.01 m floored to 0.05 m; NaN


def test_conductive_flux_hand_values():
    f = heatflux.conductive_flux(SIT, SIC)
    expected = np.array([[F0 / 1.0, F0 / 0.4, np.nan], [np.nan, F0 / 0.05, np.nan]])
    np.testing.assert_allclose(f, expected, equal_nan=True)
    assert heatflux.conductive_flux(1.0, 1.0, t_surface=-10.0) == pytest.approx(2.03 * 8.2)
    assert heatflux.conductive_flux(0.01, 1.0, h_min=0.1) == pytest.approx(F0 / 0.1)


def test_domain_mean_flux_weights_by_concentration():
    d = heatflux.domain_mean_flux(SIT, SIC)  # 5 valid cells (the NaN one is out)
    assert d["flux"] == pytest.approx((F0 + 0.5 * F0 / 0.4 + F0 / 0.05) / 5)
    assert d["thin_ice_flux"] == pytest.approx((0.5 * F0 / 0.4 + F0 / 0.05) / 5)
    assert d["open_water_fraction"] == pytest.approx(2 / 5)
    mask = np.array([[True, True, True], [True, False, True]])  # True = ocean; hide the floored cell
    d = heatflux.domain_mean_flux(SIT, SIC, mask)
    assert d["flux"] == pytest.approx((F0 + 0.5 * F0 / 0.4) / 4)
    assert d["thin_ice_flux"] == pytest.approx(0.5 * F0 / 0.4 / 4)
    assert d["open_water_fraction"] == pytest.approx(2 / 4)


def test_domain_mean_flux_of_a_member_stack():
    d = heatflux.domain_mean_flux(np.stack([SIT, 2 * SIT]), SIC)
    assert d["flux"].shape == (2,)
    assert d["flux"][1] == pytest.approx((F0 / 2 + 0.5 * F0 / 0.8 + F0 / 0.05) / 5)  # 2 * 0.01 still floored


def test_flux_comparison_hand_values():
    sic = np.array([[1.0, 0.5, 1.0]])
    truth = np.array([[1.0, 0.1, 3.0]])  # h = 1, 0.2 (thin)
    lr = np.array([[0.55, 0.55, 3.0]])  # h = 0.55, 1.1
    interp = np.array([[0.8, 0.3, np.nan]])  # h = 0.8, 0.6; the NaN removes column 2 from every field
    members = np.stack([truth, np.array([[0.5, 0.2, 0.0]])])  # member 1: h = 0.5 (not thin), 0.4 (thin)
    out = heatflux.flux_comparison(truth, lr, interp, members, sic)
    t_flux, t_thin = (F0 + 0.5 * F0 / 0.2) / 2, 0.5 * F0 / 0.2 / 2
    assert out["truth"] == pytest.approx({"flux": t_flux, "thin_ice_flux": t_thin, "open_water_fraction": 0.0})
    lr_flux = (F0 / 0.55 + 0.5 * F0 / 1.1) / 2
    assert out["lr"]["flux"] == pytest.approx(lr_flux)
    assert out["lr"]["thin_ice_flux"] == 0.0
    assert out["lr"]["flux_error"] == pytest.approx(lr_flux - t_flux)
    assert out["lr"]["flux_error_pct"] == pytest.approx(100 * (lr_flux / t_flux - 1))
    assert out["lr"]["thin_ice_flux_error_pct"] == pytest.approx(-100.0)
    assert out["interp"]["flux"] == pytest.approx((F0 / 0.8 + 0.5 * F0 / 0.6) / 2)
    m1_flux, m1_thin = (F0 / 0.5 + 0.5 * F0 / 0.4) / 2, 0.5 * F0 / 0.4 / 2
    assert out["ensemble"]["flux"] == pytest.approx((t_flux + m1_flux) / 2)
    assert out["ensemble"]["thin_ice_flux"] == pytest.approx((t_thin + m1_thin) / 2)
    assert out["ensemble"]["thin_ice_flux_error"] == pytest.approx((m1_thin - t_thin) / 2)
    assert "flux_error" not in out["truth"]


def test_flux_comparison_member_axis_and_mask():
    sic = np.full((2, 2), 1.0)
    truth = np.array([[1.0, 2.0], [0.0, 5.0]])
    members = np.stack([truth, truth], axis=-1)
    mask = np.array([[True, True], [True, False]])
    out = heatflux.flux_comparison(truth, truth, truth, members, sic, mask, member_axis=-1)
    assert out["ensemble"]["flux"] == pytest.approx((F0 + F0 / 2) / 3)
    assert out["ensemble"]["open_water_fraction"] == pytest.approx(1 / 3)
    assert out["ensemble"]["flux_error"] == 0.0


def test_flux_comparison_truth_uses_its_own_4km_concentration():
    # a 2-cell domain: ice of 1 m over half of one cell; the coarse concentration smears it over both
    truth = np.array([0.5, 0.0])  # effective thickness: 0.5 m of ice per cell area on the first cell
    sic_hr, sic_lr = np.array([0.5, 0.0]), np.array([0.25, 0.25])
    lr = np.array([0.25, 0.25])
    out = heatflux.flux_comparison(truth, lr, lr, np.stack([truth, truth]), sic_lr, sic_truth=sic_hr)
    assert out["truth"]["flux"] == pytest.approx(0.5 * F0 / 1.0 / 2)  # h = 0.5 / 0.5 = 1 m on half the domain
    assert out["truth"]["open_water_fraction"] == pytest.approx(0.5)
    assert out["lr"]["flux"] == pytest.approx(2 * 0.25 * F0 / 1.0 / 2)  # h = 0.25 / 0.25 = 1 m everywhere
    assert out["ensemble"]["flux"] == pytest.approx(0.25 * F0 / 2.0 / 2)  # h = 0.5 / 0.25 = 2 m on one cell
    same = heatflux.flux_comparison(truth, lr, lr, np.stack([truth, truth]), sic_lr)
    assert same["truth"]["flux"] == pytest.approx(out["ensemble"]["flux"])  # default: the truth with sic
