#!/usr/bin/env python3
"""Write the evaluation report of a trained model: plots, tables and index.html.

Writes MODEL_DIR/evaluation/: learning curves (loss and error, train vs
valid), confusion matrices (counts and normalised), per-class precision,
recall and F1, ROC curves with AUC, per split; error by pitch; metrics.csv;
and index.html showing it all (open it as a file, no server needed).
Re-runnable: train.py calls it, and you can call it again any time.

Examples:

    python evaluate.py data/working/single-notes-2000/models/20261125-142301-harmonic-s42
    python evaluate.py MODEL_DIR --dataset data/working/single-notes-other-font   # -> evaluation/<name>/
    python evaluate.py --best                      # the best model of the default dataset
"""

from __future__ import annotations

import argparse
import sys

from instrument_classifier.cli import ArgumentParser, UserError, entry_point
from instrument_classifier.defaults import DEFAULT_DATASET_DIR
from instrument_classifier.model_files import MODELS_DIR


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", nargs="?", help="model folder (train.py's last output line)")
    parser.add_argument("--best", action="store_true",
                        help=f"evaluate the best model of {DEFAULT_DATASET_DIR / 'models'} (see leaderboard.py)")
    parser.add_argument("--dataset", default=None,
                        help="evaluate on this other dataset (features extracted with the same parameters); "
                             "the report goes to MODEL_DIR/evaluation/<dataset name>/")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    return parser.parse_args(argv)


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.model_dir is None:
        if not args.best:
            raise UserError("give a model directory or --best")
        from instrument_classifier.leaderboard import best_model_dir

        args.model_dir = best_model_dir(DEFAULT_DATASET_DIR / MODELS_DIR)
    from instrument_classifier.evaluation import evaluate_model

    evaluate_model(args.model_dir, dataset_dir=args.dataset, quiet=args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
