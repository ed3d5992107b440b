"""The ``sitsr`` command: one subcommand per library entry point; no logic lives here.

User errors (:class:`~sitsr_core.errors.SitsrInputError`) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import sys

from .errors import SitsrInputError


def _synth(a):
    from .synth_files import write_synthetic_moorings

    files = write_synthetic_moorings(a.out, a.region, a.start, a.end, a.seed, a.overwrite)
    print(f"wrote {len(files)} moorings files to {a.out}")


def _window(text: str) -> tuple[str, str]:
    if ":" not in text:
        raise argparse.ArgumentTypeError(f"window {text!r} must look like YYYY-MM-DD:YYYY-MM-DD")
    s, e = text.split(":", 1)
    return (s, e)


def _dataset(a):
    from .dataset import SplitSpec, constitute

    spec = SplitSpec(tuple(a.val), tuple(a.test), a.gap_days) if (a.val or a.test) else None
    mapping = dict(m.split("=", 1) for m in a.map) if a.map else None
    out = constitute(a.moorings, a.out, kernel_km=a.kernel_km, sic_kernel_km=a.sic_kernel_km, splits=spec,
                     start=a.start, end=a.end, mapping=mapping, allow_gaps=a.allow_gaps, overwrite=a.overwrite)
    print(f"wrote {out}")


def _notebooks(a):
    from .runbook import execute

    for path in execute(a.only, a.out, a.set, a.region):
        print(f"executed {path}")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``sitsr`` command."""
    p = argparse.ArgumentParser(prog="sitsr", description=__doc__.splitlines()[0])
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
    d.add_argument("--gap-days", type=int, default=3, help="days excluded around each val/test window")
    d.add_argument("--start", help="first day to use")
    d.add_argument("--end", help="last day to use")
    d.add_argument("--map", nargs="*", help="variable names in the files, e.g. sit=thickness sic=concentration")
    d.add_argument("--allow-gaps", action="store_true", help="accept missing days")
    d.add_argument("--overwrite", action="store_true", help="replace an existing store")
    d.set_defaults(func=_dataset)

    n = sub.add_parser("notebooks", help="execute the numbered notebooks with papermill")
    n.add_argument("--set", default="book", help="parameter set of notebooks/parameters.yml (book or smoke)")
    n.add_argument("--region", default="central", help="substituted into {region} in parameter values")
    n.add_argument("--only", nargs="*", help="notebook stems to run (default: all, in order)")
    n.add_argument("--out", default="notebooks/executed", help="folder of the executed copies")
    n.set_defaults(func=_notebooks)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sitsr`` console script."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except SitsrInputError as exc:
        print(f"sitsr {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
