"""Rank the finished models of a models folder by validation error, and choose the default model.

A model folder counts once it is finished: all seven files of
``model_files.MODEL_FOLDER_FILES`` are there (training writes the folder
under a hidden temporary name and renames it at the end, so a crashed run
never shows up).  Ranking: validation error, then validation loss, then the
older model first.  The default model of predict.py, the web app and
``evaluate.py --best`` is the best one of the default dataset
(:func:`default_model_dir`).  Models of one folder may have been validated on
different clips (trained from training-data folders of other seeds or
fractions, or of another dataset): the table then names each model's
validation set, and ``--best`` says that it compared across them.  Nothing
here loads Keras: ranking stays fast.

>>> best_model_dir("data/working/single-notes-2000/models")
PosixPath('data/working/single-notes-2000/models/20261125-142301-harmonic-s42')
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import pandas as pd

from .cli import UserError, warn
from .defaults import DEFAULT_DATASET_DIR
from .metrics import error_interval, read_final_metrics
from .model_files import (CONFIG_JSON, FINAL_METRICS_CSV, MODEL_FILE, MODELS_DIR, PREDICTIONS_CSV, is_model_dir,
                          read_prediction_records)

COLUMNS = ("rank", "model_id", "arch", "target", "split", "parameters", "epochs_run", "train_seconds",
           "valid_error", "valid_loss", "test_error", "test_auc")


def resolve_models_dir(path: str | os.PathLike) -> Path:
    """A models folder; a dataset folder stands for its ``models/``."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path} is a file, not a folder of models" if path.exists()
                        else f"models directory not found: {path}")
    if is_model_dir(path):
        raise UserError(f"{path} is one model's folder: give the folder of models that holds it ({path.parent})")
    if not any(is_model_dir(p) for p in path.iterdir() if p.is_dir()) and (path / MODELS_DIR).is_dir():
        return path / MODELS_DIR
    return path


def collect_models(models_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per finished model, ranked (``rank`` 1 = lowest validation error).

    Columns: rank, model_id, arch, target, split, parameters, epochs_run,
    train_seconds, valid_error, valid_loss, valid_auc, test_error, test_auc,
    created, path, valid_set (:func:`validation_set`), valid_n (its clips).  Folders whose files cannot be read are
    skipped, with a warning on stderr.
    """
    models_dir = resolve_models_dir(models_dir)
    rows = []
    for path in sorted(models_dir.iterdir()):
        if not path.is_dir() or not is_model_dir(path):
            continue
        try:
            config = json.loads((path / CONFIG_JSON).read_text())
            metrics = read_final_metrics(path)
            row = {
                "model_id": _text(config, "model_id", path.name),
                "arch": _text(config, "arch"),
                "target": _text(config, "target"),
                "split": _text(config, "split"),
                "parameters": config.get("parameters"),
                "epochs_run": config.get("epochs_run"),
                "train_seconds": config.get("train_seconds"),
                "valid_error": _number(metrics["valid"]["error"]),
                "valid_loss": _number(metrics["valid"].get("loss")),
                "valid_auc": _number(metrics["valid"]["auc"]),
                "test_error": _number(metrics["test"]["error"]),
                "test_auc": _number(metrics["test"]["auc"]),
                "created": _text(config, "created", ""),
                "path": str(path),
                "valid_set": validation_set(path, config.get("features_identity")),
                "valid_n": _number(metrics["valid"].get("n")),
            }
        except KeyError as error:
            warn(f"skipping model {path}: its {FINAL_METRICS_CSV} lacks {error.args[0]!r}")
            continue
        except (OSError, ValueError, TypeError, AttributeError) as error:
            warn(f"skipping model {path}: cannot read its {CONFIG_JSON} or final metrics ({error})")
            continue
        rows.append(row)
    table = pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "rank"]
                         + ["valid_auc", "created", "path", "valid_set", "valid_n"])
    if table.empty:
        return table.assign(rank=pd.Series(dtype=int))
    table = table.sort_values(["valid_error", "valid_loss", "created", "model_id"],
                              na_position="last", kind="mergesort").reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    return table


def validation_set(model_dir: Path, features_identity: str | None) -> str:
    """A short name of the clips a model was validated on: 8 hex digits of a hash of what its dataset's
    features are of and of its validation clips' sample ids (its predictions.csv); "?" where unreadable.

    Two models' validation errors compare only where this is the same.
    """
    try:
        rows = pd.read_csv(model_dir / PREDICTIONS_CSV, usecols=["sample_id", "split"])
    except (OSError, ValueError) as error:
        warn(f"model {model_dir}: cannot read the validation clips of its {PREDICTIONS_CSV} ({error})")
        return "?"
    ids = sorted(rows.loc[rows["split"] == "valid", "sample_id"].astype(str))
    what = json.dumps([features_identity, ids])
    return hashlib.sha256(what.encode()).hexdigest()[:8]


def _shown(value: float, spec: str = ".2%") -> str:
    """A metric as the table shows it ("12.34%" by default), "-" where there is none."""
    return "-" if pd.isna(value) else format(value, spec)


def _text(config: dict, key: str, default: str | None = None) -> str | None:
    """``config[key]``, checked to be text where given (a list there stopped the ranking with a traceback)."""
    value = config.get(key, default)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{key} is {value!r}, not text")
    return value


def _number(value: float | None) -> float:
    """A metric of :func:`metrics.read_final_metrics` as a float (NaN where it is none)."""
    return float("nan") if value is None else float(value)


def _which(every: pd.DataFrame, target: str | None, split: str | None) -> str:
    """" of target family and split random" for the filters given, where there are models at all."""
    which = " and ".join(f"{key} {value}" for key, value in (("target", target), ("split", split)) if value)
    return f" of {which}" if which and not every.empty else ""


def _none_found(models_dir, every: pd.DataFrame, target: str | None, split: str | None) -> UserError:
    """No model passes the filters: say so, and what there is where there are others."""
    which = _which(every, target, split)
    if not which:
        return UserError(f"no finished models in {resolve_models_dir(models_dir)}; run train.py first")
    there = ", ".join(sorted({f"target {t}, split {s}" for t, s in zip(every["target"], every["split"])}))
    verb = "is" if len(every) == 1 else "are"
    return UserError(f"no finished models{which} in {resolve_models_dir(models_dir)} (there {verb} {len(every)} "
                     f"of {there})")


def _filtered(table: pd.DataFrame, target: str | None, split: str | None) -> pd.DataFrame:
    if target is not None:
        table = table[table["target"] == target]
    if split is not None:
        table = table[table["split"] == split]
    return table


# The target of the default model (`leaderboard.py --best`, predict.py, evaluate.py --best):
# the pipeline classifies families.
DEFAULT_MODEL_TARGET = "family"
# ... and trains on clips of every font and instrument: a model of --split soundfont never heard some
# fonts (it measures generalisation), one of --split instrument some instruments.  Their validation
# errors are of other validation sets, so the default is chosen among random-split models only.
DEFAULT_MODEL_SPLIT = "random"


def default_model_dir(model_dir: str | os.PathLike | None = None) -> Path:
    """``model_dir`` itself, or by default the best model of the default dataset (as ``leaderboard.py --best``).

    The one place that decides which model predict.py, the web app and ``evaluate.py --best`` use.
    """
    if model_dir is not None:
        return Path(model_dir)
    models_dir = DEFAULT_DATASET_DIR / MODELS_DIR
    if not models_dir.is_dir():
        raise UserError(f"no trained models in {models_dir}: run train.py first or give a model folder")
    return best_model_dir(models_dir)


def best_model_dir(models_dir: str | os.PathLike, *, target: str | None = DEFAULT_MODEL_TARGET,
                   split: str | None = DEFAULT_MODEL_SPLIT) -> Path:
    """The folder of the model with the lowest validation error, of one target and split method (None: any).

    A folder whose model could not load (:func:`load_problem`) is skipped
    with a warning on stderr.  Raises UserError when there is no finished model.
    """
    every = collect_models(models_dir)
    table = _filtered(every, target, split)
    which = _which(every, target, split)
    if table.empty:
        raise _none_found(models_dir, every, target, split)
    sets = table["valid_set"].nunique()  # 1: their validation errors compare
    if sets > 1:
        warn(f"the {len(table)} models{which} in {resolve_models_dir(models_dir)} were validated on {sets} "
             f"different sets of clips (leaderboard.py names each): the best of them by validation error is "
             f"not a comparison on the same clips")
    for path in table["path"]:
        problem = load_problem(Path(path))
        if problem is None:
            return Path(path)
        warn(f"skipping model {path}: {problem}")
    raise UserError(f"no model{which} in {resolve_models_dir(models_dir)} can be loaded (see the warnings)")


def load_problem(model_dir: Path) -> str | None:
    """Why a finished model folder could not be loaded, or None; without Keras, in milliseconds.

    Checks what :func:`model_bundle.load_model_dir` reads
    (:func:`model_files.read_prediction_records`: the two JSON files, the
    chromagram version, the scaler), and that model.keras is an intact
    Keras archive (every member's checksum, the config and the weights there).
    """
    try:
        read_prediction_records(model_dir)
    except UserError as error:
        return str(error)
    try:
        with zipfile.ZipFile(model_dir / MODEL_FILE) as archive:
            damaged = archive.testzip()
            members = set(archive.namelist())
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        return f"{MODEL_FILE} is not a Keras archive ({error or 'unreadable'})"
    if damaged is not None:
        return f"{MODEL_FILE} is damaged ({damaged} fails its checksum)"
    absent = [name for name in ("config.json", "model.weights.h5") if name not in members]
    if absent:
        return f"{MODEL_FILE} lacks {', '.join(absent)}"
    return None


# How many of the best models the table lists, and of the newest it ranks, by default.
DEFAULT_TOP, DEFAULT_LATEST = 10, 3


def format_leaderboard(models_dir: str | os.PathLike, *, top: int = DEFAULT_TOP, latest: int = DEFAULT_LATEST,
                       target: str | None = None, split: str | None = None) -> str:
    """The ``top`` best models as a table, then the rank of the ``latest`` newest ones."""
    every = collect_models(models_dir)
    table = _filtered(every, target, split)
    if table.empty:
        raise _none_found(models_dir, every, target, split)
    table = table.assign(rank=range(1, len(table) + 1))
    for path in table.head(top)["path"]:  # ranked by their records; say which of them would not load
        problem = load_problem(Path(path))
        if problem is not None:
            warn(f"model {path} is ranked but cannot be loaded: {problem}")
    sets = table["valid_set"].nunique()  # 1: their validation errors compare
    shown = table.head(top)[list(COLUMNS) + (["valid_set"] if sets > 1 else [])].copy()
    for column in ("valid_error", "test_error"):
        shown[column] = shown[column].map(_shown)
    for column in ("valid_loss", "test_auc"):
        shown[column] = shown[column].map(lambda v: _shown(v, ".4f"))
    lines = [f"best {len(shown)} of {len(table)} models in {resolve_models_dir(models_dir)} (by validation error):",
             shown.to_string(index=False)]
    best = table.iloc[0]
    if best["valid_n"] > 0 and not pd.isna(best["valid_error"]):
        low, high = error_interval(round(best["valid_error"] * best["valid_n"]), int(best["valid_n"]))
        lines.append(f"(the best's validation error is measured on {int(best['valid_n'])} clips: "
                     f"its 95 % interval is {low:.1%}-{high:.1%})")
    if sets > 1:
        lines.append(f"(validated on {sets} different sets of clips, valid_set: "
                     "validation errors compare only between models of one set)")
    lines += ["", "latest:"]
    newest = table.sort_values(["created", "model_id"], ascending=False).head(latest)
    for row in newest.itertuples():
        lines.append(f"  {row.model_id}: rank {row.rank} of {len(table)} "
                     f"(valid error {_shown(row.valid_error)}, test error {_shown(row.test_error)})")
    return "\n".join(lines)
