#!/usr/bin/env python3
"""Prepare a dataset's chromagrams for training: the target, the split, the scaler.

Reads DATASET/parameters.csv and DATASET/features/ (extract_features.py) and
writes DATASET/training-data/:

    splits.csv          sample_id, split (train / valid / test)
    preprocessing.json  target, split method and seed, class names (the label
                        encoding), the scaler fitted on the training split only,
                        the feature extractor's parameters, counts per class and split

Examples:

    python prepare_training.py data/working/single-notes-2000
    python prepare_training.py data/working/single-notes-2000 --split instrument   # unseen instruments in test
    python prepare_training.py data/working/single-notes-2000 --target instrument
    python prepare_training.py data/working/multi-font-10000 --split soundfont --test-lineage gs \
        -o data/working/multi-font-10000/training-data-without-gs      # sound banks never heard in test
"""

from __future__ import annotations

import argparse
import sys

from instrument_classifier.cli import ArgumentParser, entry_point, read_json, seed_type
from instrument_classifier.defaults import DEFAULT_DATASET_DIR, DEFAULT_SEED
from instrument_classifier.soundfonts import load_catalogue
from instrument_classifier.training_data import (SPLIT_METHODS, SPLITS, TARGETS, TEST_FRACTION,
                                                 TRAINING_RECORD_JSON, VALID_FRACTION, prepare_training_data)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="--split random: 60/20/20 within every class, seeded. --split instrument: whole instruments "
               "go to one split (60/20/20 of each family's instruments), so the test set measures "
               "instruments the model never heard. --split soundfont: every clip of the --test-fonts (or of the "
               "fonts of a --test-lineage; see data/soundfonts.csv) is a test clip, so the test set measures "
               "sound banks the model never heard; validation is --valid-fraction of the other fonts' clips, "
               "or the --valid-fonts.")
    parser.add_argument("dataset", nargs="?", default=str(DEFAULT_DATASET_DIR), help="dataset folder")
    parser.add_argument("--target", choices=TARGETS, default="family", help="what the model predicts")
    parser.add_argument("--split", choices=SPLIT_METHODS, default="random", help="how samples are split")
    parser.add_argument("--seed", type=seed_type, default=DEFAULT_SEED, help="random seed of the split")
    parser.add_argument("--valid-fraction", type=float, default=None,
                        help=f"share for validation (default: {VALID_FRACTION}; not with --valid-fonts)")
    parser.add_argument("--test-fraction", type=float, default=None,
                        help=f"share for testing (default: {TEST_FRACTION}; not with --split soundfont)")
    parser.add_argument("--test-fonts", nargs="+", metavar="FONT", help="--split soundfont: fonts held out for test")
    parser.add_argument("--test-lineage", nargs="+", metavar="LINEAGE",
                        help="--split soundfont: lineages whose fonts are held out for test "
                             f"({', '.join(sorted({font.lineage for font in load_catalogue()}))})")
    parser.add_argument("--valid-fonts", nargs="+", metavar="FONT",
                        help="--split soundfont: fonts held out for validation (default: a random share of the rest)")
    parser.add_argument("-o", "--output-dir", default=None,
                        help="where to write (default: DATASET/training-data); train.py --training-data reads it")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the output folder of an earlier run (never a folder holding other files)")
    return parser.parse_args(argv)


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = prepare_training_data(args.dataset, target=args.target, split=args.split, seed=args.seed,
                                valid_fraction=args.valid_fraction, test_fraction=args.test_fraction,
                                output_dir=args.output_dir, overwrite=args.overwrite, test_fonts=args.test_fonts,
                                test_lineages=args.test_lineage, valid_fonts=args.valid_fonts)
    record = read_json(out / TRAINING_RECORD_JSON)  # its counts: no need to read the features again
    counts = ", ".join(f"{name} {sum(record['counts'][name].values())}" for name in SPLITS)
    print(f"{len(record['class_names'])} classes ({args.target}), {args.split} split: {counts}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
