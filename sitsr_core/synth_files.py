"""Write a synthetic winter as neXtSIM moorings files (one file per month)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from . import fileio, synth
from .errors import SitsrInputError
from .grid import get_grid


def write_synthetic_moorings(out_dir: str | os.PathLike, region: str = "central", start: str = "2020-10-18",
                             end: str = "2021-04-15", seed: int = 0, overwrite: bool = False,
                             progress: bool = True) -> list[Path]:
    """Generate daily synthetic fields and write ``Moorings_YYYYmMM.nc`` files.

    Parameters
    ----------
    out_dir : path
        Folder for the files (created if missing).
    region : str
        Grid window (``central``, ``small``, ``arctic``).
    start, end : str
        First and last day (inclusive).
    seed : int
        Generator seed: the same seed and dates give identical files.
    overwrite : bool
        Replace existing files; otherwise existing files are an error.
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    list of Path, the files written.
    """
    dates = pd.date_range(start, end, freq="D")
    if len(dates) == 0:
        raise SitsrInputError(f"--start {start} is after --end {end}")
    grid = get_grid(region)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = synth.SynthConfig()
    months = dates.to_period("M").unique()
    targets = {m: out_dir / f"Moorings_{m.year}m{m.month:02d}.nc" for m in months}
    existing = [p for p in targets.values() if p.exists()]
    if existing and not overwrite:
        raise SitsrInputError(f"{existing[0]}: output exists; pass --overwrite to replace it")
    attrs = {"source": "sitsr synthetic neXtSIM-like generator", "synth_seed": seed,
             "synth_config": json.dumps(dataclasses.asdict(cfg))}
    written = []
    bar = tqdm(total=len(dates), desc=f"synth {region}", unit="day", disable=not progress)
    for month in months:
        days = dates[dates.to_period("M") == month]
        stack: dict[str, list[np.ndarray]] = {v: [] for v in fileio.VARIABLES}
        for day in days:
            fields = synth.synth_day(grid, day, seed=seed, cfg=cfg)
            for v in fileio.VARIABLES:
                stack[v].append(fields[v])
            bar.update()
        ds = fileio.moorings_dataset(grid, days, {v: np.stack(a) for v, a in stack.items()}, attrs)
        written.append(fileio.write_moorings(targets[month], ds, overwrite=overwrite))
    bar.close()
    return written
