#!/usr/bin/env python3
"""Turn every clip of a dataset into a reassigned chromagram.

A chromagram is a log-frequency, log-amplitude spectrogram with one bin per
semitone: a 2.0 s clip becomes float32 of shape (44 time frames, 115 pitch
bins), bin = MIDI number - 21 (A0 .. MIDI 135), values in [0, 1] for
-120 .. 0 dB.  The algorithm and the exact formula are documented in
instrument_classifier/features.py.

Examples:

    python extract_features.py data/working/multi-font-10000 --plot    # the default dataset (make pipeline)
    python extract_features.py data/working/single-notes-2000 --plot   # the seed's single-font experiment
    python extract_features.py data/working/big --layout chunked        # one .npy per shard, read lazily
    python extract_features.py /shared/big --scheduler tcp://host:8786  # the shards on a Dask cluster

Writes DATASET/features/chromagrams.npz (keys chromagrams, sample_id; rows in
parameters.csv order) or, for a dataset whose chromagrams would take more than
512 MiB (26,500 clips) or with --layout chunked, DATASET/features/chromagrams/
(one .npy file per shard of 256 rows, index.json, sample_id.npy: written shard
by shard, memory stays flat); DATASET/features/features.json (the layout, the
extractor's parameters, N, a fingerprint of the inputs, library versions,
time taken) and with --plot DATASET/features/chromagrams.png.  Running it
again on an unchanged dataset does nothing unless --overwrite.
"""

from __future__ import annotations

import argparse
import sys

from instrument_classifier.cli import ArgumentParser, entry_point, positive_int
from instrument_classifier.defaults import DEFAULT_DATASET_DIR
from instrument_classifier.feature_extraction import IN_MEMORY_LIMIT_BYTES, LAYOUTS, extract_dataset


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Example: python extract_features.py data/working/single-notes-2000 --plot")
    parser.add_argument("dataset", nargs="?", default=str(DEFAULT_DATASET_DIR), metavar="DATASET",
                        help="dataset folder (parameters.csv plus audio clips)")
    parser.add_argument("--overwrite", action="store_true",
                        help="recompute even if the features are up to date")
    parser.add_argument("--plot", action="store_true",
                        help="also write features/chromagrams.png, one example chromagram per family")
    parser.add_argument("--layout", choices=LAYOUTS, default="auto",
                        help=f"features/chromagrams.npz (npz) or one file per shard (chunked); auto: chunked "
                             f"when the chromagrams exceed {IN_MEMORY_LIMIT_BYTES // 2**20} MiB")
    parser.add_argument("-j", "--jobs", type=positive_int, default=None,
                        help="shards of clips transformed at once on this machine, one thread each "
                             "(default: all cores; not with --scheduler)")
    parser.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                        help="run the shards on the Dask cluster whose scheduler is there (`dask scheduler`); "
                             "the dataset must be in a folder every worker sees (default: this machine)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or status line")
    return parser.parse_args(argv)


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    extract_dataset(args.dataset, overwrite=args.overwrite, jobs=args.jobs, plot=args.plot, quiet=args.quiet,
                    layout=args.layout, scheduler=args.scheduler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
