#!/usr/bin/env python3
"""The best models so far, by validation error, and where the latest ones rank.

Lists the finished models of MODELS_DIR (a dataset folder stands for its
models/): rank, id, architecture, target, split, size, epochs, training time,
validation error and loss, test error and AUC.  Runs that crashed leave no
folder, so they never appear.

Examples:

    python leaderboard.py data/working/multi-font-10000/models
    python leaderboard.py --best          # only the best model's folder, for scripts
    python evaluate.py "$(python leaderboard.py --best)"
"""

from __future__ import annotations

import argparse
import sys

from instrument_classifier.cli import ArgumentParser, UserError, entry_point, non_negative_int, positive_int
from instrument_classifier.defaults import DEFAULT_DATASET_DIR
from instrument_classifier.model_files import MODELS_DIR
from instrument_classifier.training_data import SPLIT_METHODS, TARGETS
from instrument_classifier.leaderboard import (DEFAULT_LATEST, DEFAULT_MODEL_SPLIT, DEFAULT_MODEL_TARGET, DEFAULT_TOP,
                                                best_model_dir, format_leaderboard)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models_dir", nargs="?", default=str(DEFAULT_DATASET_DIR / MODELS_DIR),
                        help="folder of model folders (or a dataset folder)")
    parser.add_argument("--best", action="store_true",
                        help="print only the best model's directory (of --target, default family, and --split, "
                             "default random): the model predict.py, the web app and evaluate.py --best use")
    parser.add_argument("--top", type=positive_int, default=None,
                        help=f"how many of the best to list (default: {DEFAULT_TOP}; not with --best)")
    parser.add_argument("--latest", type=non_negative_int, default=None,
                        help=f"how many of the newest to rank (default: {DEFAULT_LATEST}; not with --best)")
    parser.add_argument("--target", default=None, choices=TARGETS, help="only models of this target")
    parser.add_argument("--split", default=None, choices=SPLIT_METHODS, help="only models of this split method")
    return parser.parse_args(argv)


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.best and (args.top is not None or args.latest is not None):
        raise UserError("--top and --latest shape the table; --best prints only the best model's folder")
    if args.best:
        print(best_model_dir(args.models_dir, target=args.target or DEFAULT_MODEL_TARGET,
                             split=args.split or DEFAULT_MODEL_SPLIT))
    else:
        print(format_leaderboard(args.models_dir, top=DEFAULT_TOP if args.top is None else args.top,
                                 latest=DEFAULT_LATEST if args.latest is None else args.latest, target=args.target,
                                 split=args.split))
    return 0


if __name__ == "__main__":
    sys.exit(main())
