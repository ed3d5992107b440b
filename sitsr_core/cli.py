"""The ``sitsr`` command: one subcommand per library entry point; no logic lives here.

User errors (:class:`~sitsr_core.errors.SitsrInputError`) print one line and exit 2; a training
stopped by Ctrl-C (:class:`~sitsr_core.errors.SitsrInterrupted`) prints how to resume and exits 130.
Messages go through the ``sitsr`` logger (stderr): ``-v`` adds debug messages, ``--quiet`` keeps
warnings and errors only; progress bars are not log messages and stay. ``python -m sitsr_core`` is the
same command.
"""

from __future__ import annotations

import argparse
import logging
import sys

from . import __version__, downscale, features, sweep, train
from .config import SAMPLERS, apply_overrides, profile
from .dataset import GAP_DAYS, SplitSpec, constitute
from .errors import exit_status
from .evaluate import evaluate_run
from .grid import get_grid
from .readers import read_product
from .runbook import execute
from .synth_files import write_synthetic_moorings

log = logging.getLogger("sitsr")


def _synth(a):
    files = write_synthetic_moorings(a.out, a.region, a.start, a.end, a.seed, a.overwrite)
    log.info(f"wrote {len(files)} moorings files to {a.out}")


def _window(text: str) -> tuple[str, str]:
    if ":" not in text:
        raise argparse.ArgumentTypeError(f"window {text!r} must look like YYYY-MM-DD:YYYY-MM-DD")
    s, e = text.split(":", 1)
    return (s, e)


def _dataset(a):
    spec = SplitSpec(tuple(a.val), tuple(a.test), a.gap_days) if (a.val or a.test) else None
    mapping = dict(m.split("=", 1) for m in a.map) if a.map else None
    out = constitute(a.moorings, a.out, kernel_km=a.kernel_km, sic_kernel_km=a.sic_kernel_km, splits=spec,
                     start=a.start, end=a.end, mapping=mapping, allow_gaps=a.allow_gaps, overwrite=a.overwrite,
                     operator=a.operator, seed=a.seed)
    log.info(f"wrote {out}")


def _train(a):
    cfg = apply_overrides(profile(a.profile), a.overrides)
    run = train.train(cfg, a.data, a.run, resume=a.resume, progress=not a.no_progress, device=a.device,
                base_run=a.base_run, loader_workers=a.loader_workers)
    log.info(f"run folder {run}")


def _downscale(a):
    for path in downscale.run_downscale(a):
        log.info(f"wrote {path}")


def _evaluate(a):
    r = evaluate_run(a.run, a.data, a.split, a.members, a.steps, a.outputs, a.out, a.max_days, a.regression_run,
                 overwrite=a.overwrite, progress=not a.no_progress, eta=a.eta, sampler=a.sampler, device=a.device)
    s = r["skill"]["scores"]
    log.info(f"wrote {a.out}: ensemble-mean RMSE {s['ensemble']['rmse']:.3f} m, "
             f"interpolation {s['interp']['rmse']:.3f} m, CRPS {s['ensemble']['crps']:.3f} m "
             f"over {len(r['days'])} days")


def _features(a):
    ds = features.product_features(read_product(a.product), get_grid(a.region), kernel_km=a.kernel_km,
                                   sic_kernel_km=a.sic_kernel_km, method=a.method)
    if a.run:
        features.check_run_features(a.run, ds, ds.attrs["product"])
    log.info(f"wrote {features.write_features(ds, a.out, overwrite=a.overwrite)}")


def _sweep(a):
    sweep.run_cli(a)
    log.info(f"wrote {a.out}")


def _notebooks(a):
    for path in execute(a.only, a.out, a.set, a.region, a.profile):
        log.info(f"executed {path}")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``sitsr`` command."""
    p = argparse.ArgumentParser(prog="sitsr", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"sitsr {__version__}")
    level = p.add_mutually_exclusive_group()
    level.add_argument("-v", "--verbose", action="store_true", help="debug messages too")
    level.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only (progress bars stay)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="write synthetic neXtSIM-like moorings files")
    s.add_argument("--out", default="data/moorings", help="output folder (default: data/moorings)")
    s.add_argument("--region", default="central", help="grid window: central (default), small, arctic")
    s.add_argument("--start", default="2020-10-18", help="first day (default 2020-10-18)")
    s.add_argument("--end", default="2021-04-15", help="last day (default 2021-04-15)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--overwrite", action="store_true", help="replace existing files")
    s.set_defaults(func=_synth)

    d = sub.add_parser("dataset", help="constitute the training dataset from moorings files")
    d.add_argument("--moorings", nargs="+", required=True, help="moorings files or glob patterns")
    d.add_argument("--out", required=True, help="output store (.zarr or .nc)")
    d.add_argument("--kernel-km", type=float, default=120.0, help="box width for sit, divergence, shear (km)")
    d.add_argument("--sic-kernel-km", type=float, default=24.0, help="box width for sic (km)")
    d.add_argument("--val", type=_window, action="append", default=[], help="validation window START:END (repeatable)")
    d.add_argument("--test", type=_window, action="append", default=[], help="test window START:END (repeatable)")
    d.add_argument("--gap-days", type=int, default=GAP_DAYS,
                   help=f"days excluded around each val/test window (default {GAP_DAYS}: the fine-scale "
                        "decorrelation time)")
    d.add_argument("--start", help="first day to use")
    d.add_argument("--end", help="last day to use")
    d.add_argument("--map", nargs="*", help="variable names in the files, e.g. sit=thickness sic=concentration")
    d.add_argument("--allow-gaps", action="store_true", help="accept missing days")
    d.add_argument("--operator", choices=("product", "moving-mean"), default="product",
                   help="how the LR context is observed (sitsr_core.observe; default: like a product)")
    d.add_argument("--seed", type=int, default=0, help="seed of the observation noise")
    d.add_argument("--overwrite", action="store_true", help="replace an existing store")
    d.set_defaults(func=_dataset)

    t = sub.add_parser("train", help="train a model (diffusion or regression baseline) into a run folder")
    train.add_arguments(t)
    t.set_defaults(func=_train)

    g = sub.add_parser("downscale", help="generate SR ensembles (sit_hrai_YYYYMMDD.nc) for dates or an LR file")
    downscale.add_arguments(g)
    g.set_defaults(func=_downscale)

    e = sub.add_parser("evaluate", help="generate (if needed) and score the ensembles of a split; JSON in metres")
    e.add_argument("--run", required=True, help="diffusion run folder")
    e.add_argument("--data", required=True, help="dataset store")
    e.add_argument("--split", default="test", help="val or test (default test)")
    e.add_argument("--members", type=int, default=30)
    e.add_argument("--steps", type=int, help="sampler steps (default: the run's sample.steps)")
    e.add_argument("--sampler", choices=sorted(SAMPLERS), help="sampler (default: the run's sample.sampler)")
    e.add_argument("--eta", type=float,
                   help="sampling stochasticity, with --sampler ddim (default: the run's sample.eta)")
    e.add_argument("--max-days", type=int, help="evaluate at most this many days of the split")
    e.add_argument("--outputs", help="folder of the ensemble files (default RUN/outputs_SPLIT)")
    e.add_argument("--regression-run", help="run folder of the deterministic baseline")
    e.add_argument("--out", required=True, help="metrics JSON")
    e.add_argument("--device", help="cpu or cuda")
    e.add_argument("--overwrite", action="store_true", help="regenerate existing ensemble files")
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(func=_evaluate)

    f = sub.add_parser("features", help="LR features file on the 4 km grid from an observation product")
    f.add_argument("--product", required=True, help="CS2SMOS, OSI SAF or TOPAZ4 file")
    f.add_argument("--region", default="central", help="grid window (central, small, arctic)")
    f.add_argument("--out", required=True, help="LR features netCDF (input of `sitsr downscale --lr-file`)")
    f.add_argument("--kernel-km", type=float, default=120.0)
    f.add_argument("--sic-kernel-km", type=float, default=24.0)
    f.add_argument("--method", default="bilinear", help="regridding: bilinear, nearest, mean, gauss")
    f.add_argument("--run", help="check that this run's features are available")
    f.add_argument("--overwrite", action="store_true")
    f.set_defaults(func=_features)

    w = sub.add_parser("sweep", help="sensitivity sweep: score one changed choice per row (CSV) and rank them")
    sweep.add_arguments(w)
    w.set_defaults(func=_sweep)

    n = sub.add_parser("notebooks", help="execute the numbered notebooks with papermill")
    n.add_argument("--set", default="book", help="parameter set of notebooks/parameters.yml (book or smoke)")
    n.add_argument("--region", default="central", help="substituted into {region} in parameter values")
    n.add_argument("--profile", default="quick", help="substituted into {profile} in parameter values")
    n.add_argument("--only", nargs="*", help="notebook stems to run (default: all, in order)")
    n.add_argument("--out", default="notebooks/executed", help="folder of the executed copies")
    n.set_defaults(func=_notebooks)
    return p


def configure_logging(level: int) -> None:
    """Messages of the ``sitsr`` logger on stderr, one line each, at ``level`` and above."""
    logger = logging.getLogger("sitsr")
    logger.setLevel(level)
    if not any(getattr(h, "sitsr", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.sitsr = True
        logger.addHandler(handler)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sitsr`` console script."""
    args = build_parser().parse_args(argv)
    configure_logging(logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO)
    return exit_status(f"sitsr {args.command}", lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
