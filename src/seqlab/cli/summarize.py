"""`python -m seqlab.summarize <sweep_dir>`: (re)write a sweep's summary.csv, summary.md and plots."""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="seqlab-summarize", description=__doc__)
    parser.add_argument("sweep_dir", type=Path, help="a multirun dir, e.g. outputs/sweeps/imdb_optimizers")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        parser.error(f"{args.sweep_dir}: no such directory")
    from seqlab.sweeps.summary import summarize

    rows = summarize(args.sweep_dir, plots=not args.no_plots)
    if not rows:
        parser.error(f"{args.sweep_dir}: no job dirs (with .hydra/config.yaml) inside; is it a sweep dir?")
    print((args.sweep_dir / "summary.md").read_text(), end="")


if __name__ == "__main__":
    main()
