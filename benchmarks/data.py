"""Data-stage timings: one synthetic day and one dataset-constitution day on a given grid."""

from __future__ import annotations

import time

import numpy as np


def _median_time(fn, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), float(np.std(times))


def bench_data(region: str = "arctic", repeats: int = 3) -> dict:
    """Seconds per day for :func:`sitsr_core.synth.synth_day` and :func:`sitsr_core.dataset.constitute_day`.

    Returns
    -------
    dict with ``region``, ``shape``, ``synth_day_s``, ``constitute_day_s``, ``box_filter_s`` (median, spread).
    """
    from sitsr_core import dataset, filters, synth
    from sitsr_core.grid import get_grid

    grid = get_grid(region)
    mask = ~grid.land_mask()
    synth.synth_day(grid, "2021-01-15")  # warm-up (land mask, caches)
    day = synth.synth_day(grid, "2021-01-15")
    out = {"region": region, "shape": list(grid.shape)}
    out["synth_day_s"] = _median_time(lambda: synth.synth_day(grid, "2021-01-16"), repeats)
    out["constitute_day_s"] = _median_time(lambda: dataset.constitute_day(day, mask), repeats)
    out["box_filter_s"] = _median_time(lambda: filters.box_filter(day["sit"], mask, 120.0), repeats)
    return out
