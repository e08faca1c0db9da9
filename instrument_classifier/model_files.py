"""The files of a model folder, named once; no Keras import, so the leaderboard stays light.

A finished model folder ``DATASET/models/<model_id>/`` (written by
:func:`training.train_model`) holds all of :data:`MODEL_FOLDER_FILES`;
prediction needs the first three.
"""

from __future__ import annotations

from pathlib import Path

MODELS_DIR = "models"                      # DATASET/models/<model_id>/
MODEL_FILE = "model.keras"                 # the network (classes' probabilities out)
PREPROCESSING_JSON = "preprocessing.json"  # feature extractor, scaler, class names
CONFIG_JSON = "config.json"                # arguments, seed, timings, versions
FINAL_METRICS_CSV = "final_metrics.csv"    # train/valid/test error, loss, AUC
LEARNING_CURVES_CSV = "learning_curves.csv"
PREDICTIONS_CSV = "predictions.csv"
MODEL_SUMMARY_TXT = "model_summary.txt"

PREDICTION_FILES = (MODEL_FILE, PREPROCESSING_JSON, CONFIG_JSON)
MODEL_FOLDER_FILES = PREDICTION_FILES + (FINAL_METRICS_CSV, LEARNING_CURVES_CSV, PREDICTIONS_CSV, MODEL_SUMMARY_TXT)


def is_model_dir(path: Path) -> bool:
    """A finished model folder: not a hidden temporary one, every file present."""
    return not path.name.startswith(".") and all((path / name).is_file() for name in MODEL_FOLDER_FILES)
