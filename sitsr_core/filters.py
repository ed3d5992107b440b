"""Mask-aware filters that turn 4 km fields into the low-resolution (LR) context.

Three operations, all in physical units and ignoring land/NaN cells:

* :func:`box_filter` — the slides' "convolution with a constant kernel": a moving
  box mean of width ``kernel_km`` (120 km for sit, divergence and shear; 24 km for
  sic), evaluated at every 4 km cell and normalised by the valid-cell weight so
  that land does not bleed into coastal values.
* :func:`block_average` — non-overlapping ``block x block`` means (the LR product on
  its own coarse grid).
* :func:`interp_baseline` — block means bilinearly interpolated back to 4 km: the
  classic "interpolated low-resolution product" that every result is compared to.

The box has an exact width of ``kernel_km``: with ``n = kernel_km / dx`` cells,
the ``n - 1`` central cells have weight 1 and the two end cells weight 1/2 (a
trapezoidal box of length ``n + 1`` taps summing to ``n``). The filter is
separable and runs in O(N * n) with :func:`scipy.ndimage.correlate1d`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .errors import SitsrInputError


def box_kernel(kernel_km: float, dx_km: float = 4.0) -> np.ndarray:
    """1-D weights of a box of width ``kernel_km`` on a grid of spacing ``dx_km``.

    Returns
    -------
    ndarray, shape (2 * (n // 2) + 1,)
        For even ``n = kernel_km / dx_km``: ``[0.5, 1, ..., 1, 0.5]`` (``n + 1`` taps);
        for odd ``n``: ``n`` ones. Sums to ``n``.
    """
    n = kernel_km / dx_km
    if n < 1 or abs(n - round(n)) > 1e-6:
        raise SitsrInputError(f"kernel {kernel_km} km is not a positive multiple of the {dx_km} km grid spacing")
    n = int(round(n))
    if n % 2:
        return np.ones(n)
    w = np.ones(n + 1)
    w[0] = w[-1] = 0.5
    return w


def _valid(field: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    valid = np.isfinite(field)
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool)
    return valid


def box_filter(field: np.ndarray, mask: np.ndarray | None = None, kernel_km: float = 120.0,
               dx_km: float = 4.0) -> np.ndarray:
    """Mask-aware moving box mean.

    Parameters
    ----------
    field : ndarray, shape (..., ny, nx)
        Field(s) to filter; NaNs are invalid.
    mask : ndarray of bool, shape (ny, nx), optional
        True on valid (ocean) cells. Invalid cells neither contribute nor receive values.
    kernel_km, dx_km : float
        Box width and grid spacing, km.

    Returns
    -------
    ndarray, shape (..., ny, nx), float32
        Box mean over the valid cells of each window; NaN on invalid cells.
    """
    a = np.asarray(field, dtype=np.float64)
    valid = _valid(a, mask)
    w = box_kernel(kernel_km, dx_km)
    num = np.where(valid, a, 0.0)
    den = valid.astype(np.float64)
    for axis in (-2, -1):
        num = ndimage.correlate1d(num, w, axis=axis, mode="constant", cval=0.0)
        den = ndimage.correlate1d(den, w, axis=axis, mode="constant", cval=0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    return np.where(valid & (den > 1e-9), out, np.nan).astype(np.float32)


def block_sum(a: np.ndarray, block: int) -> np.ndarray:
    """Sums over non-overlapping ``block x block`` blocks anchored at (0, 0).

    Parameters
    ----------
    a : ndarray, shape (..., ny, nx)
    block : int
        Block size in cells; partial blocks at the upper edges sum what they have.

    Returns
    -------
    ndarray, shape (..., ceil(ny / block), ceil(nx / block))
    """
    *lead, ny, nx = a.shape
    by, bx = -(-ny // block), -(-nx // block)
    pad = [(0, 0)] * len(lead) + [(0, by * block - ny), (0, bx * block - nx)]
    return np.pad(a, pad).reshape(*lead, by, block, bx, block).sum(axis=(-3, -1))


def block_average(field: np.ndarray, mask: np.ndarray | None = None, block: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Mask-aware non-overlapping block means.

    Parameters
    ----------
    field : ndarray, shape (ny, nx)
    mask : ndarray of bool, shape (ny, nx), optional
        True on valid cells.
    block : int
        Block size in cells (30 cells = 120 km at 4 km). Partial blocks at the
        upper edges use the cells they have.

    Returns
    -------
    means : ndarray, shape (ceil(ny / block), ceil(nx / block))
        Block means over valid cells (NaN for blocks with no valid cell).
    fraction : ndarray, same shape
        Fraction of the block's cells that are valid.
    """
    a = np.asarray(field, dtype=np.float64)
    valid = _valid(a, mask)
    num = block_sum(np.where(valid, a, 0.0), block)
    cnt = block_sum(valid.astype(np.float64), block)
    size = block_sum(np.ones_like(a), block)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(cnt > 0, num / cnt, np.nan)
    return means, cnt / size


def upsample_bilinear(coarse: np.ndarray, shape: tuple[int, int], block: int,
                      mask: np.ndarray | None = None) -> np.ndarray:
    """Bilinear interpolation of block values back to the fine grid, ignoring NaN blocks.

    Block ``(I, J)`` is centred on fine cell ``(I * block + (block - 1) / 2, ...)``.
    NaN blocks get zero weight and the remaining weights are renormalised
    (normalised convolution); beyond the outermost block centres values are
    held constant. No value is extrapolated across an all-land block: fine
    cells whose four neighbouring blocks are all NaN are NaN.

    Parameters
    ----------
    coarse : ndarray, shape (by, bx)
    shape : (ny, nx)
        Fine-grid shape.
    block : int
        Block size in cells.
    mask : ndarray of bool, shape (ny, nx), optional
        True on valid fine cells; invalid ones are set to NaN.

    Returns
    -------
    ndarray, shape (ny, nx), float32
    """
    ny, nx = shape
    ok = np.isfinite(coarse)
    rows = (np.arange(ny) - (block - 1) / 2) / block
    cols = (np.arange(nx) - (block - 1) / 2) / block
    R, C = np.meshgrid(np.clip(rows, 0, coarse.shape[0] - 1), np.clip(cols, 0, coarse.shape[1] - 1), indexing="ij")
    num = ndimage.map_coordinates(np.where(ok, coarse, 0.0), [R, C], order=1, mode="nearest")
    den = ndimage.map_coordinates(ok.astype(np.float64), [R, C], order=1, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 1e-9, num / den, np.nan)
    if mask is not None:
        out = np.where(mask, out, np.nan)
    return out.astype(np.float32)


def interp_baseline(field: np.ndarray, mask: np.ndarray | None = None, kernel_km: float = 120.0,
                    dx_km: float = 4.0) -> np.ndarray:
    """The interpolation baseline: ``kernel_km`` block means interpolated back to ``dx_km``.

    Parameters
    ----------
    field : ndarray, shape (ny, nx)
    mask : ndarray of bool, shape (ny, nx), optional
        True on valid (ocean) cells.

    Returns
    -------
    ndarray, shape (ny, nx), float32; NaN on invalid cells.
    """
    block = int(round(kernel_km / dx_km))
    valid = _valid(np.asarray(field, dtype=np.float64), mask)
    means, _ = block_average(field, valid, block)
    return upsample_bilinear(means, np.shape(field), block, valid)
