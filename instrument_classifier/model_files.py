"""The files of a model folder, named once, and whether a folder holds them; no Keras, so the leaderboard stays light.

A finished model folder ``DATASET/models/<model_id>/`` (written by
:func:`training.train_model`) holds all seven :data:`MODEL_FOLDER_FILES`;
prediction needs the first three (:data:`PREDICTION_FILES`).
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

from .cli import UserError, read_json

MODELS_DIR = "models"                      # DATASET/models/<model_id>/
MODEL_FILE = "model.keras"                 # the network (classes' probabilities out)
PREPROCESSING_JSON = "preprocessing.json"  # feature extractor, scaler, class names (training_data's
                                           # TRAINING_RECORD_JSON has the same name, in training-data/)
CONFIG_JSON = "config.json"                # arguments, seed, timings, versions
FINAL_METRICS_CSV = "final_metrics.csv"    # train/valid/test error, loss, AUC
LEARNING_CURVES_CSV = "learning_curves.csv"
PREDICTIONS_CSV = "predictions.csv"
MODEL_SUMMARY_TXT = "model_summary.txt"
EVALUATION_DIR = "evaluation"              # evaluate.py's report (and analyze_errors.py's errors/) inside
INDEX_HTML = "index.html"                  # the page of each report folder

PREDICTION_FILES = (MODEL_FILE, PREPROCESSING_JSON, CONFIG_JSON)
MODEL_FOLDER_FILES = PREDICTION_FILES + (FINAL_METRICS_CSV, LEARNING_CURVES_CSV, PREDICTIONS_CSV, MODEL_SUMMARY_TXT)


def dataset_name(dataset_dir: str | os.PathLike) -> str:
    """The name a dataset goes by in a model's records, its ``evaluation/<name>/`` report and the
    generalisation report's columns: its folder's name."""
    return Path(dataset_dir).resolve().name


def missing_files(path: Path, names: tuple[str, ...] = MODEL_FOLDER_FILES) -> list[str]:
    """Those of ``names`` that are not files in ``path``."""
    return [name for name in names if not (path / name).is_file()]


def is_model_dir(path: Path) -> bool:
    """A finished model folder: not a hidden temporary one, every file present."""
    return not path.name.startswith(".") and not missing_files(path)


def check_model_dir(model_dir: str | os.PathLike, *, finished: bool = False) -> Path:
    """``model_dir`` as a Path; UserError unless it holds what prediction needs (``finished``: every file)."""
    model_dir = Path(model_dir)
    if model_dir.is_file():
        here = f", here {model_dir.parent}" if (model_dir.parent / MODEL_FILE).is_file() else ""
        raise UserError(f"{model_dir} is a file: give the model's folder (the one holding {MODEL_FILE}){here}")
    if not model_dir.is_dir():
        raise UserError(f"model directory not found: {model_dir}")
    missing = missing_files(model_dir, MODEL_FOLDER_FILES if finished else PREDICTION_FILES)
    if missing:
        raise UserError(f"{model_dir} is not a {'finished ' if finished else ''}model directory "
                        f"({', '.join(missing)} missing)")
    return model_dir


class ModelRecords(NamedTuple):
    """What a model folder's JSON files say: enough to read its predictions and features, no network."""

    model_dir: Path
    preprocessing: dict
    config: dict
    class_names: list[str]
    feature_params: dict


def read_model_records(model_dir: str | os.PathLike) -> ModelRecords:
    """``preprocessing.json`` and ``config.json`` of a model folder, checked (and that ``model.keras`` is a
    zip archive, as every .keras file is); one-line UserError if wrong."""
    model_dir = check_model_dir(model_dir)
    preprocessing = read_json(model_dir / PREPROCESSING_JSON, what="model preprocessing file")
    config = read_json(model_dir / CONFIG_JSON, what="model config file")
    for name, record in ((PREPROCESSING_JSON, preprocessing), (CONFIG_JSON, config)):
        if not isinstance(record, dict):
            raise UserError(f"invalid {model_dir / name}: not a JSON object")
    try:
        class_names = [str(name) for name in preprocessing["class_names"]]
        feature_params = dict(preprocessing["features"])
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"invalid {model_dir / PREPROCESSING_JSON}: missing or bad {error}") from None
    listed = isinstance(preprocessing["class_names"], list)  # a string was taken for a class per letter
    if not listed or not class_names or len(set(class_names)) != len(class_names):
        raise UserError(f"invalid {model_dir / PREPROCESSING_JSON}: class_names must be distinct names")
    if not feature_params:
        raise UserError(f"invalid {model_dir / PREPROCESSING_JSON}: no feature parameters")
    if not isinstance(config.get("dataset") or "", str):  # None: a model shared without its dataset's path
        raise UserError(f"invalid {model_dir / CONFIG_JSON}: dataset must be a folder's path")
    if not zipfile.is_zipfile(model_dir / MODEL_FILE):  # Keras would say "File not found" of such a file
        raise UserError(f"cannot load {model_dir / MODEL_FILE}: not a Keras model (a .keras file is a zip archive; "
                        "truncated or overwritten?)")
    return ModelRecords(model_dir, preprocessing, config, class_names, feature_params)


class PredictionRecords(NamedTuple):
    """What prediction reads of a model folder but the network, checked (:func:`read_prediction_records`)."""

    records: ModelRecords
    scaler: Any             # scaling.ChromagramScaler
    extractor: Any          # features.ChromagramExtractor
    level_range_dbfs: tuple[float, float] | None


def read_prediction_records(model_dir: str | os.PathLike) -> PredictionRecords:
    """All that prediction reads of a model folder but the network, checked (one-line UserError if wrong).

    :func:`read_model_records`, the chromagram algorithm the model was trained
    on (this code's), its scaler, its feature extractor (whose parameters must
    make a 2 s clip at a sample rate a file can have) and the peak levels of
    its training clips.  What :func:`model_bundle.load_model_dir` and
    :class:`prediction.Predictor` check before the network, and
    :func:`leaderboard.load_problem` without Keras: a model the one refuses the
    other skips.
    """
    # Imported here: the leaderboard and the generator (for is_model_dir) need none of the feature code.
    from .audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
    from .defaults import CLIP_SECONDS
    from .features import ALGORITHM_VERSION, ChromagramExtractor
    from .scaling import ChromagramScaler

    records = read_model_records(model_dir)
    where = records.model_dir / PREPROCESSING_JSON
    version = records.preprocessing.get("algorithm_version", 1)  # models from before it was recorded: version 1
    if version != ALGORITHM_VERSION:
        raise UserError(f"{records.model_dir} was trained on chromagrams of algorithm version {version}; this code "
                        f"computes version {ALGORITHM_VERSION}, which the model has never seen: train it again")
    if not isinstance(records.preprocessing.get("scaler"), dict):
        raise UserError(f"invalid {where}: missing or bad 'scaler'")
    scaler = ChromagramScaler.from_dict(records.preprocessing["scaler"])
    try:
        extractor = ChromagramExtractor.from_params(records.feature_params)
    except UserError as error:
        raise UserError(f"invalid {where}: {error}") from None
    # Before the first clip is made: a sample rate of 1e12, say, would otherwise allocate terabytes.
    if not MIN_SAMPLE_RATE <= extractor.sample_rate <= MAX_SAMPLE_RATE:
        raise UserError(f"invalid {where}: feature sample_rate {extractor.sample_rate} Hz is outside "
                        f"{MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz")
    if extractor.block_size > round(CLIP_SECONDS * extractor.sample_rate):
        raise UserError(f"invalid {where}: feature block_size {extractor.block_size} is longer than "
                        f"the {CLIP_SECONDS:g} s clip")
    return PredictionRecords(records, scaler, extractor, _training_level_range(records.preprocessing, where))


def _training_level_range(preprocessing: dict, where: Path) -> tuple[float, float] | None:
    """Peak levels (dBFS) of the training clips, as train.py stored them; None where unknown.

    UserError for a stored value that is not two finite numbers, low <= high.
    """
    stored = preprocessing.get("peak_dbfs_range")
    if stored is None:
        return None
    try:
        low, high = (float(value) for value in stored)
        if not (math.isfinite(low) and math.isfinite(high) and low <= high):
            raise ValueError
    except (TypeError, ValueError):
        raise UserError(f"invalid {where}: peak_dbfs_range must be two numbers, low then high, "
                        f"got {stored!r}") from None
    return low, high


def own_dataset_changed(config: dict, identity: str | None) -> bool:
    """Whether the model's dataset no longer holds the clips it was trained and tested on.

    ``identity`` is the dataset's now (:func:`feature_store.features_identity`); config.json keeps
    the one of training (models trained before it was kept are taken as unchanged).
    """
    recorded = config.get("features_identity")
    return recorded is not None and recorded != identity


def is_own_dataset(config: dict, dataset_dir: str | os.PathLike) -> bool:
    """Whether ``dataset_dir`` is the dataset the model (its ``config``) was trained on, unchanged since.

    A dataset generated again in the same folder holds clips new to the model: not its own.
    """
    from .feature_store import features_identity  # the features' module reads datasets; none needed above

    own = config.get("dataset")
    return bool(own) and Path(dataset_dir).resolve() == Path(own).resolve() and \
        not own_dataset_changed(config, features_identity(dataset_dir))


def check_own_dataset(config: dict, identity: str | None) -> None:
    """UserError where :func:`own_dataset_changed`."""
    if own_dataset_changed(config, identity):
        raise UserError(f"the model's dataset {config.get('dataset')} changed since the model was trained "
                        "(generated again): its predictions.csv no longer describes "
                        "those clips; train again, or score the new clips with evaluate.py MODEL --dataset DATASET")
