"""A model's predictions and their metrics: the tables training and evaluation write, and reading them back.

``predictions.csv`` (one row per clip: sample_id, split, true, predicted,
correct, what the clip was, p_<class> probabilities) is written by
:func:`predictions_table`; ``final_metrics.csv`` and an evaluation's
``metrics.csv`` (one row per split: n, loss, error, error_low, error_high,
accuracy, auc, ece) by
:func:`metrics_table`.  :func:`read_predictions` and :func:`read_final_metrics`
read them back, each file in one place.  No Keras here: the leaderboard ranks
models with :func:`read_final_metrics` alone.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .cli import UserError
from .model_files import FINAL_METRICS_CSV

# Columns of parameters.csv copied into predictions.csv, where the dataset has them.
CLIP_COLUMNS = ("midi_number", "instrument_id", "instrument_name", "family_name", "soundfont", "lineage",
                "audio_file")


def macro_auc(y: np.ndarray, proba: np.ndarray) -> float:
    """Mean one-vs-rest ROC AUC over the classes present (NaN if none can be scored)."""
    from sklearn.metrics import roc_auc_score

    scores = []
    for k in range(proba.shape[1]):
        positive = y == k
        if positive.any() and not positive.all():
            scores.append(roc_auc_score(positive, proba[:, k]))
    return float(np.mean(scores)) if scores else float("nan")


# Bins of the top probability for the calibration error and the reliability diagram (Guo et al. 2017 use 15).
CALIBRATION_BINS = 15


def calibration_bins(correct: np.ndarray, confidence: np.ndarray, bins: int = CALIBRATION_BINS) -> pd.DataFrame:
    """The clips by top probability in ``bins`` equal bins of (0, 1]: bin's low and high edge, n, mean
    confidence, accuracy (empty bins left out).  What a reliability diagram plots, and the ECE sums."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)  # (low, high]
    table = pd.DataFrame({"bin": which, "confidence": confidence, "correct": correct.astype(float)})
    grouped = table.groupby("bin").agg(n=("correct", "size"), confidence=("confidence", "mean"),
                                       accuracy=("correct", "mean")).reset_index()
    grouped.insert(1, "low", edges[grouped["bin"]])
    grouped.insert(2, "high", edges[grouped["bin"] + 1])
    return grouped.drop(columns="bin")


def calibration_error(correct: np.ndarray, confidence: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """The expected calibration error: how far the top probability is from the share of clips it gets
    right, the mean over :func:`calibration_bins` of |accuracy - confidence| weighted by the bin's clips
    (0: calibrated; NaN for no clips)."""
    if len(correct) == 0:
        return float("nan")
    table = calibration_bins(correct, confidence, bins)
    return float(np.sum(table["n"] * (table["accuracy"] - table["confidence"]).abs()) / len(correct))


def expected_calibration_error(y: np.ndarray, proba: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """:func:`calibration_error` of class indices ``y`` and an (n, classes) array of probabilities."""
    return calibration_error(proba.argmax(axis=1) == y, proba.max(axis=1), bins)


# The confidence level of the interval given beside every error rate.
INTERVAL_CONFIDENCE = 0.95


def error_interval(errors: int, n: int, confidence: float = INTERVAL_CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval of an error rate of ``errors`` wrong in ``n`` clips: (low, high).

    Where a model's error on many more clips drawn the same way would lie: what
    the number of clips allows (2000 clips at 18 %: 16.4-19.7 %), not the spread
    between training seeds (README, *What was tried*: ~1 point).  (NaN, NaN)
    for no clips.
    """
    from scipy.stats import binomtest

    if n == 0:
        return float("nan"), float("nan")
    interval = binomtest(int(errors), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


def split_metrics(y: np.ndarray, proba: np.ndarray, predicted: np.ndarray | None = None) -> dict:
    """n, loss (cross-entropy), error and its :func:`error_interval`, accuracy, macro AUC and expected
    calibration error of one split.

    ``predicted``: the class indices answered (default: ``proba``'s argmax),
    given when ``proba`` was rounded, so that a tie made by the rounding
    cannot change the answer.  The loss clips each probability at 1e-7, as
    Keras's cross-entropy does.
    """
    if len(y) == 0:
        return {"n": 0, "loss": float("nan"), "error": float("nan"), "error_low": float("nan"),
                "error_high": float("nan"), "accuracy": float("nan"), "auc": float("nan"), "ece": float("nan")}
    eps = 1e-7
    loss = float(-np.mean(np.log(np.clip(proba[np.arange(len(y)), y], eps, 1.0))))
    right = int(np.sum((proba.argmax(axis=1) if predicted is None else predicted) == y))
    low, high = error_interval(len(y) - right, len(y))
    return {"n": int(len(y)), "loss": loss, "error": 1.0 - right / len(y), "error_low": low, "error_high": high,
            "accuracy": right / len(y), "auc": macro_auc(y, proba), "ece": expected_calibration_error(y, proba)}


def predictions_table(data_parameters: pd.DataFrame, split: np.ndarray, y: np.ndarray | None,
                      proba: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    """One row per sample: ids, split, true and predicted class, p_<class> columns."""
    predicted = proba.argmax(axis=1)
    table = pd.DataFrame({"sample_id": data_parameters["sample_id"].to_numpy(), "split": split})
    if y is not None:
        table["true"] = [class_names[i] for i in y]
    table["predicted"] = [class_names[i] for i in predicted]
    if y is not None:
        table["correct"] = predicted == y
    for column in CLIP_COLUMNS:
        if column in data_parameters.columns:
            table[column] = data_parameters[column].to_numpy()
    for k, name in enumerate(class_names):
        table[f"p_{name}"] = np.round(proba[:, k], 6)
    return table


def metrics_table(predictions: pd.DataFrame, class_names: list[str], splits: tuple[str, ...] | list[str]
                  ) -> pd.DataFrame:
    """final_metrics.csv from a predictions table: one row per split.

    From what the table holds, as written to predictions.csv, so that a
    report made again from the file gives the same figures: the answers of
    its ``predicted`` column, and probabilities rounded to 6 decimals (a
    probability under 5e-7 counts as the loss's floor, 1e-7: at most 1.6 nats
    too much on such a clip).
    """
    index = {name: i for i, name in enumerate(class_names)}
    proba_columns = [f"p_{name}" for name in class_names]
    rows = []
    for name in splits:
        part = predictions[predictions["split"] == name]
        y = part["true"].map(index).to_numpy(dtype=np.int64)
        predicted = part["predicted"].map(index).to_numpy(dtype=np.int64)
        rows.append({"split": name, **split_metrics(y, part[proba_columns].to_numpy(dtype=np.float64), predicted)})
    return pd.DataFrame(rows)


def read_final_metrics(model_dir: str | os.PathLike) -> dict[str, dict[str, float | None]]:
    """A model folder's final_metrics.csv as {split: {column: value}}; {} when absent or unreadable.

    Values that are not numbers are left out; NaN and infinity are None.
    """
    path = Path(model_dir) / FINAL_METRICS_CSV
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error):
        return {}
    metrics = {}
    for row in rows:
        split = row.pop("split", None) or row.pop("", None)
        if not split:
            continue
        values = {}
        for key, value in row.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            values[key] = number if math.isfinite(number) else None
        metrics[split] = values
    return metrics


def read_predictions(path: str | os.PathLike, class_names: list[str] | None = None, *,
                     splits: tuple[str, ...] | list[str] | None = None) -> pd.DataFrame:
    """A predictions.csv, checked; UserError for anything a report could not use.

    The columns split and correct must be there, ``correct`` True/False.
    Given ``class_names``, so must sample_id, true, predicted and p_<class>,
    labels must be the model's classes, splits among ``splits`` (when given)
    and probabilities numbers in [0, 1].
    """
    path = Path(path)
    try:
        table = pd.read_csv(path)
    except FileNotFoundError:
        raise UserError(f"{path.parent} is not a finished model directory ({path.name} missing)") from None
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {path}: {error}") from None
    proba_columns = [f"p_{name}" for name in class_names or []]
    needed = ["split", "correct"] if class_names is None else \
        ["sample_id", "split", "true", "predicted", "correct", *proba_columns]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise UserError(f"{path} lacks columns: {', '.join(missing)}")
    if table.empty:
        raise UserError(f"{path} holds no predictions (a header without rows)")
    if table["correct"].dtype != bool:
        raise UserError(f"{path}: column correct must hold True or False")
    if class_names is None:
        return table
    allowed_values = [("true", class_names), ("predicted", class_names)] + ([("split", list(splits))] if splits else [])
    for column, allowed in allowed_values:
        unknown = sorted(set(table[column].astype(str)) - set(allowed))
        if unknown:
            raise UserError(f"{path}: {column} {unknown[0]!r} is not one of {', '.join(allowed)}")
    proba = table[proba_columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~(np.isfinite(proba) & (proba >= 0) & (proba <= 1))
    if bad.any():
        row, column = np.argwhere(bad)[0]
        value = table[proba_columns[column]].iloc[row]
        shown = repr(value) if isinstance(value, str) else value
        raise UserError(f"{path}: {proba_columns[column]} of sample {table['sample_id'].iloc[row]} is "
                        f"{shown}, not a probability")
    return table


