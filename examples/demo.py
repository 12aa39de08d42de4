"""The main job on real data: tune a random forest on breast_cancer (F1) with
grid, random, Optuna TPE and successive-halving search at an equal budget,
each recorded live into the store, score the winners on a held-out test
split, then print the report and write report.html.

The logic lives in the package (``hptrack.cli.demo``); this is the same as
``hptrack demo``. Run with ``make demo`` or
``.venv/bin/python examples/demo.py [--quick] [--store DIR] [--html FILE]``.
"""

import argparse

import hptrack.cli.demo


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--store", default=None, help="store folder (default ./.hptrack or $HPTRACK_STORE)")
    ap.add_argument("--quick", action="store_true", help="a smaller run for CI")
    ap.add_argument("--html", default="report.html", help="where to write the HTML report")
    args = ap.parse_args(argv)
    hptrack.cli.demo.run(store=args.store, quick=args.quick, html=args.html)


if __name__ == "__main__":
    main()
