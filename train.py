#!/usr/bin/env python3
"""Train a classifier on a prepared dataset, then evaluate it.

Reads DATASET/training-data/ (prepare_training.py) and DATASET/features/, and
writes one run folder DATASET/models/<YYYYMMDD-HHMMSS>-<arch>-s<seed>/ with
model.keras (the best epoch on validation), preprocessing.json, config.json,
model_summary.txt, learning_curves.csv, predictions.csv and final_metrics.csv;
then the evaluation report in its evaluation/ (see evaluate.py).  The folder
appears only when training has finished.  Its path is the last line printed.

Examples:

    python train.py data/working/multi-font-10000                      # the default architecture
    python train.py data/working/single-notes-2000 --arch harmonic      # the seed's single-font experiment
    python train.py data/working/single-notes-2000 --arch reference     # the original network
    python train.py data/working/single-notes-2000 --epochs 5 --seed 1 --no-evaluate

Same seed, same result on a CPU.  Keras 3 runs on the backend named by
KERAS_BACKEND (TensorFlow by default).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from instrument_classifier.cli import ArgumentParser, Terminated, UserError, entry_point, seed_type, warn
from instrument_classifier.architectures import ARCHITECTURE_OPTIONS, DEFAULT_ARCHITECTURE, describe_default
from instrument_classifier.defaults import DEFAULT_DATASET_DIR, DEFAULT_SEED


def model_options(items: list[str]) -> dict:
    """``KEY=VALUE`` strings -> {key: number, bool or text}; UserError for a malformed one."""
    options = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise UserError(f"bad --model-option {item!r}: use KEY=VALUE, e.g. relative_db=80")
        if key.strip() in options:  # the last would have won in silence
            raise UserError(f"--model-option {key.strip()} is given twice: give each option once")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        options[key.strip()] = value
    return options


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    # Keras is imported only after the arguments parsed: --help stays instant.
    parser = ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Architectures: relative-harmonic (default: learnt harmonic templates matched at every pitch, max "
               "over pitch, on levels relative to each clip's peak, with random equalisers in training; "
               "~44k parameters, trained on instrument labels summed into families), harmonic (the same network "
               "on absolute levels: the seed's single-font experiment) and reference (the original 8-convolution "
               "network, ~221k parameters, 12-14 minutes on 2,000 clips). Each architecture has its own training "
               "defaults (instrument_classifier/architectures.py), shown with each option.")
    parser.add_argument("dataset", nargs="?", default=str(DEFAULT_DATASET_DIR), help="dataset folder")
    parser.add_argument("--arch", default=DEFAULT_ARCHITECTURE,
                        help=f"architecture: {', '.join(ARCHITECTURE_OPTIONS)}")
    parser.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                        help="change one option of the architecture's network, e.g. relative_db=80 or filters=128 "
                             "(see instrument_classifier/models.py; repeatable)")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"training epochs (default: {describe_default('epochs')})")
    parser.add_argument("--batch-size", type=int, default=None,
                        help=f"batch size (default: {describe_default('batch_size')})")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help=f"initial learning rate (default: {describe_default('learning_rate')})")
    parser.add_argument("--patience", type=int, default=None,
                        help="stop after this many epochs without a better validation cross-entropy (0: never; "
                             f"default: {describe_default('patience')})")
    parser.add_argument("--fine-labels", action=argparse.BooleanOptionalAction, default=None,
                        help="learn the instruments and sum their probabilities into families (needs --target "
                             f"family; default: {describe_default('fine_labels')})")
    parser.add_argument("--seed", type=seed_type, default=DEFAULT_SEED,
                        help="random seed (weights, shuffling, augmentation)")
    parser.add_argument("--training-data", default=None, help="prepared folder (default: DATASET/training-data)")
    parser.add_argument("--models-dir", default=None, help="where run folders go (default: DATASET/models)")
    parser.add_argument("--no-evaluate", action="store_true", help="skip the evaluation report")
    parser.add_argument("-q", "--quiet", action="store_true", help="no per-epoch progress")
    return parser.parse_args(argv)


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from instrument_classifier.training import train_model

    model_dir = train_model(args.dataset, arch=args.arch, epochs=args.epochs, batch_size=args.batch_size,
                            learning_rate=args.learning_rate, seed=args.seed, patience=args.patience,
                            fine_labels=args.fine_labels,
                            models_dir=args.models_dir, training_dir=args.training_data,
                            model_options=model_options(args.model_option), verbose=0 if args.quiet else 2)
    if not args.no_evaluate:
        from instrument_classifier.evaluation import evaluate_model

        try:
            evaluate_model(model_dir, quiet=args.quiet)
        except (KeyboardInterrupt, Terminated):  # the model is finished: say where, then stop as asked
            warn(f"the model is saved in {model_dir}; its evaluation was stopped: evaluate.py {model_dir} writes it")
            raise
        except UserError as error:
            raise UserError(f"{error} (the model is saved in {model_dir}; evaluate.py {model_dir} writes its "
                            "report)") from None
    print(model_dir)
    return 0


if __name__ == "__main__":
    status = main()
    if status in (130, 143):
        # Interrupted mid-fit: TensorFlow's input threads may still be running, and tearing them down at
        # interpreter exit crashed now and then (glibc "free(): invalid next size"); the cleanup is done.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
