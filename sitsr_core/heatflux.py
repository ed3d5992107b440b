"""Conductive heat flux through sea ice: why thickness details matter.

The flux through a slab of ice with a linear temperature profile is

    F = k_i (T_f - T_s) / h        (W m-2, positive upward: heat lost by the ocean)

with ``k_i = 2.03 W m-1 K-1``, ``T_f = -1.8 degC`` (sea-water freezing point),
surface temperature ``T_s`` (default -25 degC) and the actual ice thickness
``h = sit / sic`` (``sit`` is the effective thickness, ice volume per cell
area), floored at ``h_min`` so that vanishing ice does not give an infinite
flux. Because ``F ~ 1/h``, thin ice dominates the domain total, and a field
that smooths thin leads and polynyas into thicker ice underestimates it.

Simplifications: snow is ignored (no snow insulation), so the fluxes are
upper bounds; ``T_s`` is one value for the whole domain, although thin ice is
warmer at the surface. Open water (``sic < 0.15`` or ``sit <= 0``) has no
conductive flux: it is left out of the ice flux and reported separately as
an area fraction. Masks are True on valid (ocean) cells.
"""

from __future__ import annotations

import numpy as np

#: Thermal conductivity of sea ice, W m-1 K-1.
K_ICE = 2.03
#: Freezing temperature of sea water, degC.
T_FREEZE = -1.8
#: Cells with a concentration below this are open water.
OPEN_WATER_SIC = 0.15


def _ice_thickness(sit: np.ndarray, sic: np.ndarray, h_min: float) -> np.ndarray:
    """Actual thickness ``max(sit / sic, h_min)`` (m) on ice cells, NaN on open water and NaN cells."""
    sit = np.asarray(sit, dtype=np.float64)
    sic = np.asarray(sic, dtype=np.float64)
    ice = (sic >= OPEN_WATER_SIC) & (sit > 0)  # False where either is NaN
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ice, np.maximum(sit / sic, h_min), np.nan)


def conductive_flux(sit: np.ndarray, sic: np.ndarray, t_surface: float = -25.0, h_min: float = 0.05) -> np.ndarray:
    """Conductive heat flux per unit ice area.

    Parameters
    ----------
    sit : ndarray, shape (..., *S)
        Effective ice thickness (m), e.g. one field or members ``(M, ny, nx)``.
    sic : ndarray, shape S
        Ice concentration (0-1).
    t_surface : float
        Ice surface temperature (degC).
    h_min : float
        Thin-ice floor on the actual thickness (m).

    Returns
    -------
    ndarray, shape (..., *S)
        ``K_ICE * (T_FREEZE - t_surface) / max(sit / sic, h_min)`` in W m-2 of ice;
        NaN on open water (``sic < 0.15`` or ``sit <= 0``) and where an input is NaN.
    """
    return K_ICE * (T_FREEZE - t_surface) / _ice_thickness(sit, sic, h_min)


def domain_mean_flux(
    sit: np.ndarray,
    sic: np.ndarray,
    mask: np.ndarray | None = None,
    t_surface: float = -25.0,
    h_min: float = 0.05,
    thin_ice: float = 0.5,
) -> dict[str, np.ndarray | float]:
    """Domain-mean conductive flux per unit cell area, and its thin-ice part.

    Each cell contributes ``sic * F`` (its ice covers the fraction ``sic`` of the
    cell); open-water cells contribute 0. Means are over the valid cells (mask
    True, ``sit`` and ``sic`` finite).

    Parameters
    ----------
    sit : ndarray, shape (..., *S)
        Effective ice thickness (m).
    sic : ndarray, shape S
        Ice concentration (0-1).
    mask : ndarray of bool, broadcastable to S, optional
        True on valid (ocean) cells.
    t_surface, h_min : float
        As in :func:`conductive_flux`.
    thin_ice : float
        Thin ice is ``h < thin_ice`` (m, actual thickness after the floor).

    Returns
    -------
    dict of str -> float or ndarray, shape (...)
        ``flux``: mean of ``sic * F`` (W m-2 of domain);
        ``thin_ice_flux``: the part of ``flux`` from thin-ice cells (W m-2 of domain);
        ``open_water_fraction``: fraction of valid cells that are open water.
    """
    sit = np.asarray(sit, dtype=np.float64)
    sic = np.asarray(sic, dtype=np.float64)
    valid = np.isfinite(sit) & np.isfinite(sic)
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool)
    h = _ice_thickness(sit, sic, h_min)
    per_cell = np.where(np.isfinite(h), sic * K_ICE * (T_FREEZE - t_surface) / h, 0.0)
    axes = tuple(range(-sic.ndim, 0))
    with np.errstate(invalid="ignore", divide="ignore"):
        n = valid.sum(axis=axes)
        out = {
            "flux": np.where(valid, per_cell, 0.0).sum(axis=axes) / n,
            "thin_ice_flux": np.where(valid & (h < thin_ice), per_cell, 0.0).sum(axis=axes) / n,
            "open_water_fraction": (valid & ~np.isfinite(h)).sum(axis=axes) / n,
        }
    return {key: v[()] if np.ndim(v) == 0 else v for key, v in out.items()}


def flux_comparison(
    truth_sit: np.ndarray,
    lr_sit: np.ndarray,
    interp_sit: np.ndarray,
    members: np.ndarray,
    sic: np.ndarray,
    mask: np.ndarray | None = None,
    t_surface: float = -25.0,
    h_min: float = 0.05,
    thin_ice: float = 0.5,
    member_axis: int = 0,
    sic_truth: np.ndarray | None = None,
) -> dict[str, dict[str, float]]:
    """Domain-mean conductive flux of the truth, LR, interpolation and SR ensemble.

    Every field is evaluated on the same cells (mask True and every input finite).
    The estimates (LR, interpolation, members) use ``sic``, the concentration a user has
    (the LR product); the truth uses ``sic_truth``, the 4 km concentration, so the error
    includes what the coarse concentration gets wrong. The ensemble's flux is computed
    per member, then averaged (the flux of the ensemble mean would be biased low: ``1/h``
    is convex).

    Parameters
    ----------
    truth_sit, lr_sit, interp_sit : ndarray, shape (ny, nx)
        Effective thickness (m).
    members : ndarray, shape (ny, nx) with M members inserted at ``member_axis``
    sic : ndarray, shape (ny, nx)
        Ice concentration of the estimates (0-1), e.g. ``sic_lr``.
    mask : ndarray of bool, shape (ny, nx), optional
        True on valid (ocean) cells.
    t_surface, h_min, thin_ice : float
        As in :func:`domain_mean_flux`.
    member_axis : int
    sic_truth : ndarray, shape (ny, nx), optional
        The truth's 4 km concentration (default ``sic``).

    Returns
    -------
    dict of str -> dict of str -> float
        Keys ``truth``, ``lr``, ``interp``, ``ensemble``, each with ``flux``,
        ``thin_ice_flux`` (W m-2) and ``open_water_fraction``; the last three also
        ``flux_error``, ``thin_ice_flux_error`` (forecast - truth, W m-2) and
        ``flux_error_pct``, ``thin_ice_flux_error_pct`` (% of the truth's value).
    """
    x = np.moveaxis(np.asarray(members, dtype=np.float64), member_axis, 0)
    sic_truth = sic if sic_truth is None else sic_truth
    fields = {"truth": truth_sit, "lr": lr_sit, "interp": interp_sit}
    valid = np.isfinite(x).all(axis=0) & np.isfinite(sic) & np.isfinite(sic_truth)
    for f in fields.values():
        valid &= np.isfinite(f)
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool)
    kw = {"mask": valid, "t_surface": t_surface, "h_min": h_min, "thin_ice": thin_ice}
    out = {name: {k: float(v) for k, v in domain_mean_flux(f, sic_truth if name == "truth" else sic, **kw).items()}
           for name, f in fields.items()}
    out["ensemble"] = {k: float(np.mean(v)) for k, v in domain_mean_flux(x, sic, **kw).items()}
    for name in ("lr", "interp", "ensemble"):
        for key in ("flux", "thin_ice_flux"):
            err = out[name][key] - out["truth"][key]
            out[name][f"{key}_error"] = err
            with np.errstate(divide="ignore", invalid="ignore"):
                out[name][f"{key}_error_pct"] = float(100.0 * np.float64(err) / out["truth"][key])
    return out
