#!/usr/bin/env python3
"""Write the evaluation report of trained models: plots, tables and index.html; compare models on unheard fonts.

Writes MODEL_DIR/evaluation/: learning curves (loss and error, train vs
valid), confusion matrices (counts and normalised), per-class precision,
recall and F1, ROC curves with AUC, per split; error by pitch; error by
SoundFont and lineage; metrics.csv; and index.html showing it all (open it
as a file, no server needed).  Re-runnable: train.py calls it, and you can
call it again any time.

With --recordings DIR, on a folder of recordings sorted into class
folders (DIR/strings/*.wav, DIR/brass/..., any format, rate and length),
each file read as predict.py reads it: the report goes to
evaluation/<DIR name>/, its predictions.csv names each file.

With --report DIR, also a generalisation table of all the models given:
one row per model, one column per held-out SoundFont and lineage (the test
split of a model trained with prepare_training.py --split soundfont, and
every --dataset and --recordings folder), beside the in-distribution error; the error by family
and by instrument on the fonts each model never heard; and, with two models
or more, each against the first on the same clips (McNemar's exact test).
DIR/generalisation.csv, DIR/generalisation_by_family.csv,
DIR/generalisation_by_instrument.csv, DIR/generalisation_paired.csv and
DIR/generalisation.md, printed too (the instruments: the worst ten each).

Examples:

    python evaluate.py data/working/multi-font-10000/models/<model_id>
    python evaluate.py MODEL_DIR --dataset data/working/single-notes-other-font   # -> evaluation/<name>/
    python evaluate.py --best                      # the best model of the default dataset
    python evaluate.py --best --recordings ~/my-recordings   # DIR/<family>/*.wav, your own
    python evaluate.py MODEL_A MODEL_B --dataset data/working/clean-fonts --report data/working/report
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from instrument_classifier.cli import ArgumentParser, UserError, entry_point
from instrument_classifier.defaults import DEFAULT_DATASET_DIR
from instrument_classifier.model_files import MODELS_DIR, check_model_dir


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", nargs="*", help="model folders (train.py's last output line)")
    parser.add_argument("--best", action="store_true",
                        help=f"evaluate the best model of {DEFAULT_DATASET_DIR / MODELS_DIR} (see leaderboard.py), "
                             "after any model folders given (the best model of another folder: "
                             "\"$(leaderboard.py FOLDER --best)\")")
    parser.add_argument("--dataset", nargs="+", default=None, metavar="DATASET",
                        help="evaluate on these other datasets (features extracted with the same parameters); "
                             "each report goes to MODEL_DIR/evaluation/<dataset name>/")
    parser.add_argument("--recordings", nargs="+", default=None, metavar="DIR",
                        help="evaluate on these folders of labelled recordings: DIR/<class>/... holds the "
                             "recordings of a class of the model (any depth, any format predict.py reads); each "
                             "report goes to MODEL_DIR/evaluation/<DIR name>/")
    parser.add_argument("--report", default=None, metavar="DIR",
                        help="write the generalisation table of the models to DIR")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    return parser.parse_args(argv)


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    models = list(args.model_dir)
    if args.best:
        from instrument_classifier.leaderboard import default_model_dir

        models.append(default_model_dir())
    if not models:
        raise UserError("give a model directory or --best")
    resolved = [Path(model).resolve() for model in models]
    twice = next((i for i in range(len(models)) if resolved[i] in resolved[:i]), None)
    if twice is not None:
        by_best = " (--best names it too)" if args.best and twice == len(models) - 1 else ""
        raise UserError(f"model {models[twice]} is given twice{by_best}: give each model once")
    from instrument_classifier.dataset import PARAMETERS_CSV
    from instrument_classifier.evaluation import check_dataset_name, evaluate_model, print_summary
    from instrument_classifier.labelled_recordings import (check_recordings, score_every_folder,
                                                           write_recordings_report)
    from instrument_classifier.feature_store import FEATURES_DIR, FEATURES_JSON

    # Every argument checked before anything is written: a failed run changes no model folder.
    for model_dir in models:
        check_model_dir(model_dir)
    recordings = args.recordings or []
    names = [check_dataset_name(folder) for folder in [*(args.dataset or []), *recordings]]
    if clash := next((name for name in names if names.count(name) > 1), None):
        raise UserError(f"two datasets named {clash!r}: each model's report of one would replace the other's "
                        f"(evaluation/{clash}/); give each dataset once, and rename one of two namesakes")
    check_recordings(recordings, models)
    for dataset in args.dataset or []:
        if not (Path(dataset) / PARAMETERS_CSV).is_file():
            raise UserError(f"{dataset} is not a dataset: {PARAMETERS_CSV} not found")
        if not (Path(dataset) / FEATURES_DIR / FEATURES_JSON).is_file():
            raise UserError(f"{dataset} has no features: run extract_features.py {dataset} first")
    if args.report is not None:
        from instrument_classifier.generalisation import check_report_datasets, check_report_dir, write_report

        check_report_dir(args.report, models)
        check_report_datasets(models, args.dataset or [])
    scored = score_every_folder(models, recordings, quiet=args.quiet)  # before any report is written
    for model_dir in models:
        for dataset in args.dataset or ([] if recordings else [None]):
            evaluate_model(model_dir, dataset_dir=dataset, quiet=args.quiet)
    for result in scored:
        index = write_recordings_report(result)
        if not args.quiet:
            print_summary(index)
    if args.report is not None:
        path = write_report(models, names, args.report)
        if not args.quiet:
            print(path.read_text(), end="")
            print(f"generalisation report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
