#!/usr/bin/env python3
"""Print the predicted instrument family of audio files.

Any format libsndfile reads (WAV, FLAC, OGG, MP3, AIFF, ...), any sample rate
(resampled to the model's), mono or multi-channel (downmixed), any length:
a 2 s window is taken from the onset of the first note and padded with
silence when the file is shorter.  The features are computed with the exact
extractor parameters stored in the model folder.

Examples:

    python predict.py note.wav other.mp3
    python predict.py -m data/working/multi-font-10000/models/<model_id> --proba clips/*.flac
    python predict.py --json note.wav          # one JSON object per line
    python predict.py --csv clips/*.wav > labels.csv

Output: one line per file, ``FILE<TAB>LABEL`` (with --proba followed by
``class=probability`` for every class); with --json the objects
``{"file", "label", "probabilities", "onset_seconds", "duration_seconds",
"sample_rate", "peak_dbfs", "warnings", "model_id"}`` (the probabilities are
always there, so --proba changes nothing; a file that failed has "error" and
a null label and probabilities); with --csv a table with a header,
one row per file: ``file, label, p_<class>`` for every class, the clip's
measurements, ``warnings`` (joined by "; "), ``error`` and ``model_id``.  Warnings (a silent or very short clip,
a level or sample rate unlike the training clips) and errors (a missing,
empty, unsupported or corrupt file) go to stderr, one line each; the other
files are still classified.  Exit status: 0 when every file was classified,
1 when any failed, 2 for a bad model folder or bad arguments.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from instrument_classifier.cli import ArgumentParser, UserError, entry_point, positive_int
from instrument_classifier.defaults import PREDICT_BATCH_SIZE


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(
        description=" ".join(__doc__.split("\n\n")[:2]),  # what it does, and what files it takes
        epilog="Exit status: 0 all files classified, 1 some file failed, 2 bad arguments or model.")
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio files to classify")
    parser.add_argument("-m", "--model-dir", default=None,
                        help="model folder written by train.py (default: the best model of the default "
                             "dataset, as `leaderboard.py --best` picks it)")
    parser.add_argument("--proba", action="store_true", help="also print the probability of every class")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true",
                        help='print one JSON object per file: {"file", "label", "probabilities" (always), '
                             '"onset_seconds", "duration_seconds", "sample_rate", "peak_dbfs", "warnings", '
                             '"model_id"}; a file that failed has "error" and a null label')
    output.add_argument("--csv", action="store_true",
                        help="print a CSV table with a header: file, label, p_<class> for every class, "
                             "onset_seconds, duration_seconds, sample_rate, peak_dbfs, warnings, error, model_id")
    parser.add_argument("-b", "--batch-size", type=int, default=PREDICT_BATCH_SIZE,
                        help="files per feature-and-network batch")
    parser.add_argument("-j", "--jobs", type=positive_int, default=None,
                        help="threads for decoding and features (default: all cores)")
    return parser.parse_args(argv)


CSV_MEASUREMENTS = ("onset_seconds", "duration_seconds", "sample_rate", "peak_dbfs")


def csv_header(class_names: list[str]) -> list[str]:
    """The --csv columns: a probability column ``p_<class>`` for every class of the model."""
    return ["file", "label", *(f"p_{name}" for name in class_names), *CSV_MEASUREMENTS,
            "warnings", "error", "model_id"]


def csv_row(path: str, result, class_names: list[str], model_id: str) -> list:
    """One file's --csv row; a failed file (``result`` an exception) has only its error and empty cells."""
    if isinstance(result, Exception):
        return [path, "", *([""] * len(class_names)), *([""] * len(CSV_MEASUREMENTS)), "", str(result), model_id]
    record = result.to_json()
    return [path, record["label"], *(record["probabilities"][name] for name in class_names),
            *("" if record[key] is None else record[key] for key in CSV_MEASUREMENTS),
            "; ".join(record["warnings"]), "", model_id]


def format_line(path: str, prediction, *, proba: bool) -> str:
    """``FILE<TAB>LABEL``, with ``proba`` then ``class=p`` for every class.

    A tab, newline, carriage return or backslash in FILE is written as
    ``\\t``, ``\\n``, ``\\r``, ``\\\\``, so that every file is one line of
    tab-separated fields.
    """
    shown = path.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    line = f"{shown}\t{prediction.label}"
    if proba:
        line += "\t" + " ".join(f"{name}={p:.4f}" for name, p in prediction.probabilities.items())
    return line


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    if sys.stdout is None or sys.stdout.closed:  # `predict.py x.wav >&-`: print() would drop every label
        raise UserError("standard output is closed: nowhere to print the labels")
    from instrument_classifier.leaderboard import default_model_dir
    from instrument_classifier.prediction import Predictor

    predictor = Predictor(default_model_dir(args.model_dir))
    prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "predict.py"
    table = csv.writer(sys.stdout, lineterminator="\n") if args.csv else None
    if table is not None:
        table.writerow(csv_header(predictor.class_names))
    failed = 0
    for path, result in predictor.predict_files(args.files, batch_size=args.batch_size, jobs=args.jobs):
        if isinstance(result, Exception):
            failed += 1
            print(f"{prog}: error: {result}", file=sys.stderr, flush=True)
            if table is not None:
                table.writerow(csv_row(path, result, predictor.class_names, predictor.model_id))
                sys.stdout.flush()
            elif args.json:
                print(json.dumps({"file": path, "label": None, "probabilities": None,
                                  "model_id": predictor.model_id, "warnings": [], "error": str(result)}),
                      flush=True)
            continue
        for warning in result.warnings:
            print(f"{prog}: warning: {path}: {warning}", file=sys.stderr)
        if table is not None:
            table.writerow(csv_row(path, result, predictor.class_names, predictor.model_id))
            sys.stdout.flush()
        elif args.json:
            print(json.dumps({"file": path, **result.to_json(), "model_id": predictor.model_id}), flush=True)
        else:
            print(format_line(path, result, proba=args.proba), flush=True)
    if failed:
        print(f"{prog}: {failed} of {len(args.files)} files could not be classified", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
