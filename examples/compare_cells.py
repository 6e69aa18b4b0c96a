"""Elman, LSTM and GRU side by side: the embedded Reber grammar and the adding problem.

The Python face of ``rnnkit compare``: every run is a full Trainer run whose folder is kept;
the tables are Markdown, whatever the figures say, and comparison.png holds all the curves.

    python examples/compare_cells.py [--seeds 2] [--out runs/example-compare] [--quick]

``--quick`` (CI) runs one seed, 60 steps per Reber run and 3 seconds per adding-problem run:
it shows the machinery, not the figures.
"""
from __future__ import annotations

import argparse

from rnnkit.training.compare import CompareConfig, compare_cells, format_table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--long-lag-budget", type=float, default=30.0, help="seconds per adding-problem run")
    parser.add_argument("--out", default="runs/example-compare")
    parser.add_argument("--quick", action="store_true", help="one seed, tiny budgets (CI)")
    args = parser.parse_args(argv)
    seeds, budget, overrides = (1, 3.0, {"steps": 60}) if args.quick else (args.seeds, args.long_lag_budget, {})
    result = compare_cells(CompareConfig(seeds=seeds, long_lag="adding", lag=100, long_lag_budget=budget,
                                         overrides=overrides, out=args.out))
    for group in result["groups"]:
        print(format_table(group), end="\n\n")
    print(f"learning curves: {result['plot']}")


if __name__ == "__main__":
    main()
