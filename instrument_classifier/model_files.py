"""The files of a model folder, named once, and whether a folder holds them; no Keras, so the leaderboard stays light.

A finished model folder ``DATASET/models/<model_id>/`` (written by
:func:`training.train_model`) holds all seven :data:`MODEL_FOLDER_FILES`;
prediction needs the first three (:data:`PREDICTION_FILES`).
"""

from __future__ import annotations

import os
from pathlib import Path

from .cli import UserError

MODELS_DIR = "models"                      # DATASET/models/<model_id>/
MODEL_FILE = "model.keras"                 # the network (classes' probabilities out)
PREPROCESSING_JSON = "preprocessing.json"  # feature extractor, scaler, class names (training_data's
                                           # TRAINING_RECORD_JSON has the same name, in training-data/)
CONFIG_JSON = "config.json"                # arguments, seed, timings, versions
FINAL_METRICS_CSV = "final_metrics.csv"    # train/valid/test error, loss, AUC
LEARNING_CURVES_CSV = "learning_curves.csv"
PREDICTIONS_CSV = "predictions.csv"
MODEL_SUMMARY_TXT = "model_summary.txt"

PREDICTION_FILES = (MODEL_FILE, PREPROCESSING_JSON, CONFIG_JSON)
MODEL_FOLDER_FILES = PREDICTION_FILES + (FINAL_METRICS_CSV, LEARNING_CURVES_CSV, PREDICTIONS_CSV, MODEL_SUMMARY_TXT)


def missing_files(path: Path, names: tuple[str, ...] = MODEL_FOLDER_FILES) -> list[str]:
    """Those of ``names`` that are not files in ``path``."""
    return [name for name in names if not (path / name).is_file()]


def is_model_dir(path: Path) -> bool:
    """A finished model folder: not a hidden temporary one, every file present."""
    return not path.name.startswith(".") and not missing_files(path)


def check_model_dir(model_dir: str | os.PathLike, *, finished: bool = False) -> Path:
    """``model_dir`` as a Path; UserError unless it holds what prediction needs (``finished``: every file)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise UserError(f"model directory not found: {model_dir}")
    missing = missing_files(model_dir, MODEL_FOLDER_FILES if finished else PREDICTION_FILES)
    if missing:
        raise UserError(f"{model_dir} is not a {'finished ' if finished else ''}model directory "
                        f"({', '.join(missing)} missing)")
    return model_dir
