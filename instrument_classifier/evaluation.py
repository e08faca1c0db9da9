"""Evaluation report of a finished model: plots, tables and one HTML page.

``evaluate_model(MODEL_DIR)`` writes ``MODEL_DIR/evaluation/``::

    index.html                  everything below on one page (relative links; open it as a file)
    metrics.csv                 per split: n, loss, error (its 95 % interval too), accuracy, AUC, ECE
    learning_curves.png         loss and error per epoch, train vs valid
    confusion_<split>.png/.csv  confusion matrix, counts and row-normalised
    per_class_metrics.csv       per split and class: precision, recall, F1, support
    per_class_<split>.png       the same as bars
    roc_<split>.png             one-vs-rest ROC curve of every class, with its AUC
    error_by_pitch.png/.csv     error rate per MIDI-number band, per split
    calibration.png/.csv        reliability diagram: accuracy against top probability, per split
    error_by_soundfont.csv      error (and its 95 % interval) per split and SoundFont, and per lineage

On the model's own dataset it reads ``predictions.csv`` (written by
training from the best epoch), so it is cheap and re-runnable.  With
``dataset_dir`` set to another dataset (say, one rendered with another
SoundFont) it predicts that dataset's clips and writes the same report,
without learning curves, into ``evaluation/<dataset name>/``; so does
:mod:`labelled_recordings` for a folder of recordings sorted into class folders.

Report files are written into a hidden staging folder and moved into place
one by one, ``index.html`` last (:func:`cli.atomic_files`); sub-reports
(other datasets, ``errors/``) are left alone.  The page is the Jinja2
template ``templates/evaluation.html``.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

import numpy as np
import pandas as pd
from markupsafe import Markup

from .cli import UserError, atomic_files, printable, warn
from .generalisation import errors_by_soundfont
from .model_bundle import ModelBundle, load_model_dir
from .metrics import calibration_bins, metrics_table, predictions_table, read_predictions
from .model_files import (EVALUATION_DIR, INDEX_HTML, LEARNING_CURVES_CSV, PREDICTIONS_CSV, check_model_dir,
                          dataset_name, is_own_dataset)
from .feature_store import load_dataset_features
from .pages import render_page
from .plots import figure
from .training_data import SPLITS, target_labels

# Width of the MIDI-number bands of the error-by-pitch plot, in semitones: ~6 test clips per band on single-notes-2000.
PITCH_BAND = 6
# Sub-folder names that a report for another dataset must not take.
RESERVED_NAMES = ("errors",)
# The files left out of a report on recordings, each with its reason (labelled_recordings).
LEFT_OUT_CSV = "left_out.csv"
# The report's files that some reports have and others not: one left from an earlier report in the same
# folder is removed (the names of write_report and _write_split, per split for the patterns).
OPTIONAL_REPORT_FILES = ("predictions.csv", "error_by_soundfont.csv", "learning_curves.png", "per_class_metrics.csv",
                         "error_by_pitch.csv", "error_by_pitch.png", "calibration.csv", "calibration.png",
                         LEFT_OUT_CSV, "confusion_*.csv", "confusion_*.png", "roc_*.png", "per_class_*.png")


def read_learning_curves(path: str | os.PathLike) -> pd.DataFrame:
    """A model folder's learning_curves.csv, checked: the columns the plot needs, numbers in them."""
    path = Path(path)
    try:
        curves = pd.read_csv(path)
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {path}: {error}") from None
    loss = "crossentropy" if "val_crossentropy" in curves.columns else "loss"
    needed = ["epoch", loss, f"val_{loss}", "error", "val_error"]
    missing = [c for c in needed if c not in curves.columns]
    if missing:
        raise UserError(f"{path} lacks columns: {', '.join(missing)}")
    for column in needed:
        if not pd.api.types.is_numeric_dtype(curves[column]):
            raise UserError(f"{path}: column {column} holds something other than numbers")
    return curves


def _class_index(predictions: pd.DataFrame, class_names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y_true, y_pred, proba) as class indices and an (n, classes) array."""
    index = {name: i for i, name in enumerate(class_names)}
    y_true = predictions["true"].map(index).to_numpy(dtype=np.int64)
    y_pred = predictions["predicted"].map(index).to_numpy(dtype=np.int64)
    proba = predictions[[f"p_{name}" for name in class_names]].to_numpy(dtype=np.float64)
    return y_true, y_pred, proba


# ---------------------------------------------------------------------------
# Plots (each writes one PNG and returns its name)


def plot_learning_curves(curves: pd.DataFrame, path: Path) -> None:
    fig = figure(10, 3.8)
    loss_ax, error_ax = fig.subplots(1, 2)
    # The plain cross-entropy (what picks the saved epoch) where recorded, else the loss.
    loss = "crossentropy" if "val_crossentropy" in curves.columns else "loss"
    monitored = curves[f"val_{loss}"]
    best = monitored.idxmin() if monitored.notna().any() else None
    for ax, (column, label) in ((loss_ax, (loss, "cross-entropy")), (error_ax, ("error", "error"))):
        ax.plot(curves["epoch"], curves[column], label="train")
        ax.plot(curves["epoch"], curves[f"val_{column}"], label="valid")
        if best is not None:
            ax.axvline(curves.loc[best, "epoch"], color="gray", linestyle=":", label="best epoch (saved)")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    error_ax.set_yscale("log")
    fig.suptitle("Learning curves (train metrics include dropout and augmentation)")
    fig.savefig(path, dpi=90)


def plot_confusion(matrix: np.ndarray, class_names: list[str], title: str, path: Path) -> None:
    n = len(class_names)
    size = max(4.0, 0.45 * n + 2.5)
    fig = figure(2 * size, size)
    totals = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0)
    for ax, values, label, fmt in zip(fig.subplots(1, 2), (matrix, normalised), ("counts", "normalised by true class"),
                                      ("d", ".2f")):
        image = ax.imshow(values, cmap="Blues", vmin=0, vmax=values.max() or 1)
        ax.set_xticks(range(n), class_names, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(n), class_names, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(label)
        if n <= 20:
            limit = values.max() / 2 if values.max() else 0.5
            for i in range(n):
                for j in range(n):
                    ax.text(j, i, format(values[i, j], fmt), ha="center", va="center", fontsize=7,
                            color="white" if values[i, j] > limit else "black")
        fig.colorbar(image, ax=ax, shrink=0.7)
    fig.suptitle(title)
    fig.savefig(path, dpi=90)


def plot_roc(y_true: np.ndarray, proba: np.ndarray, class_names: list[str], title: str, path: Path) -> dict:
    """One-vs-rest ROC per class; returns {class: AUC} (classes absent from y_true are skipped)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fig = figure(6, 5.5)
    ax = fig.subplots()
    aucs = {}
    for k, name in enumerate(class_names):
        positive = y_true == k
        if not positive.any() or positive.all():
            continue
        fpr, tpr, _ = roc_curve(positive, proba[:, k])
        aucs[name] = float(roc_auc_score(positive, proba[:, k]))
        ax.plot(fpr, tpr, label=f"{name} (AUC {aucs[name]:.4f})")
    ax.plot([0, 1], [0, 1], color="gray", linestyle=":")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    macro = np.mean(list(aucs.values())) if aucs else float("nan")
    ax.set_title(f"{title}: macro AUC {macro:.4f}")
    if 0 < len(aucs) <= 20:  # none where the split holds one class: no curve can be drawn
        ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=90)
    return aucs


def plot_per_class(table: pd.DataFrame, title: str, path: Path) -> None:
    n = len(table)
    fig = figure(max(6, 0.6 * n + 2), 4)
    ax = fig.subplots()
    positions = np.arange(n)
    for offset, column in zip((-0.27, 0, 0.27), ("precision", "recall", "f1")):
        ax.bar(positions + offset, table[column], width=0.27, label=column)
    ax.set_xticks(positions, table["class"], rotation=60 if n > 8 else 0, ha="right" if n > 8 else "center")
    low = float(np.nanmin(table[["precision", "recall", "f1"]].to_numpy())) if n else 0.0
    ax.set_ylim(max(0.0, min(0.9, low - 0.05)), 1.0)
    ax.set_title(title)
    ax.legend(loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    fig.savefig(path, dpi=90)


def error_by_pitch(predictions: pd.DataFrame, splits: list[str], band: int = PITCH_BAND) -> pd.DataFrame:
    """Error rate per band of ``band`` MIDI numbers, per split: split, midi_low, midi_high, n, errors, error."""
    rows = []
    low_all = int(predictions["midi_number"].min()) // band * band
    for name in splits:
        part = predictions[predictions["split"] == name]
        lows = part["midi_number"].to_numpy() // band * band
        wrong = ~part["correct"].to_numpy(dtype=bool)
        for low in range(low_all, int(predictions["midi_number"].max()) + 1, band):
            inside = lows == low
            n = int(inside.sum())
            rows.append({"split": name, "midi_low": low, "midi_high": low + band - 1, "n": n,
                         "errors": int(wrong[inside].sum()), "error": wrong[inside].mean() if n else np.nan})
    return pd.DataFrame(rows)


def plot_error_by_pitch(table: pd.DataFrame, splits: list[str], band: int, path: Path) -> None:
    fig = figure(10, 5.5)
    error_ax, count_ax = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    width = band / (len(splits) + 1)
    for i, name in enumerate(splits):
        part = table[table["split"] == name]
        x = part["midi_low"] + (i + 0.5) * width
        error_ax.bar(x, part["error"].fillna(0), width=width, align="edge", label=name)
        count_ax.bar(x, part["n"], width=width, align="edge", label=name)
    error_ax.set_ylabel("error rate")
    error_ax.set_title(f"Error by pitch (bands of {band} semitones)")
    error_ax.legend()
    error_ax.grid(axis="y", alpha=0.3)
    count_ax.set_ylabel("clips")
    count_ax.set_xlabel("MIDI number")
    count_ax.grid(axis="y", alpha=0.3)
    fig.savefig(path, dpi=90)


def calibration_table(predictions: pd.DataFrame, class_names: list[str], splits: list[str]) -> pd.DataFrame:
    """:func:`metrics.calibration_bins` of every split: split, low, high, n, confidence, accuracy."""
    parts = []
    for name in splits:
        part = predictions[predictions["split"] == name]
        if not part.empty:
            y_true, y_pred, proba = _class_index(part, class_names)
            parts.append(calibration_bins(y_true == y_pred, proba.max(axis=1)).assign(split=name))
    columns = ["split", "low", "high", "n", "confidence", "accuracy"]
    return pd.concat(parts)[columns] if parts else pd.DataFrame(columns=columns)


def plot_calibration(table: pd.DataFrame, ece: dict[str, float], path: Path) -> None:
    """Reliability diagram: each split's accuracy against its mean top probability per bin, and the bins' clips."""
    fig = figure(7, 7)
    ax, count_ax = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    ax.plot([0, 1], [0, 1], color="gray", linestyle=":", label="calibrated")
    for name, part in table.groupby("split", sort=False):
        ax.plot(part["confidence"], part["accuracy"], marker="o", label=f"{name} (ECE {ece[name]:.3f})")
        count_ax.plot((part["low"] + part["high"]) / 2, part["n"], marker=".", label=name)
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability: is a clip given p right with probability p?")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    count_ax.set_yscale("log")
    count_ax.set_ylabel("clips")
    count_ax.set_xlabel("top probability")
    count_ax.set_xlim(0, 1)
    count_ax.grid(alpha=0.3)
    fig.savefig(path, dpi=90)


# ---------------------------------------------------------------------------
# The report


def write_report(out_dir: Path, predictions: pd.DataFrame, class_names: list[str], splits: list[str], *,
                 title: str, curves: pd.DataFrame | None = None, links: dict[str, str] | None = None,
                 notes: list[str] | None = None, with_predictions: bool = False,
                 tables: dict[str, pd.DataFrame] | None = None) -> Path:
    """Write the report's files into ``out_dir`` (index.html last); return index.html's path.

    ``with_predictions``: ``predictions`` are written too (``predictions.csv``), with the rest, so that an
    interrupted run leaves the report as it was rather than new predictions beside an old page; ``tables``
    (file name: table) too.  A report file of an earlier report that this one has not (its error by pitch,
    say) is removed, so that no figure outlives the clips it was measured on.
    """
    with atomic_files(out_dir, last=INDEX_HTML) as staging:
        for name, table in (tables or {}).items():
            table.to_csv(staging / name, index=False)
        if with_predictions:
            predictions.to_csv(staging / PREDICTIONS_CSV, index=False)
        metrics = metrics_table(predictions, class_names, splits)
        metrics.to_csv(staging / "metrics.csv", index=False)
        sections = []
        by_font = errors_by_soundfont(predictions)
        if not by_font.empty:
            by_font.to_csv(staging / "error_by_soundfont.csv", index=False)
            sections.append(_section("Error by SoundFont and lineage", table=_table(by_font, floats="{:.4f}")))
        if curves is not None:
            plot_learning_curves(curves, staging / "learning_curves.png")
            sections.append(_section("Learning curves", images=["learning_curves.png"]))
        per_class_tables = []
        for name in splits:
            part = predictions[predictions["split"] == name]
            if not part.empty:
                per_class_tables.append(_write_split(staging, part, name, class_names))
                sections.append(_section(f"Split: {name}", images=[f"{kind}_{name}.png" for kind in
                                                                   ("confusion", "roc", "per_class")],
                                         table=_table(per_class_tables[-1].drop(columns="split"), floats="{:.3f}")))
        if per_class_tables:
            pd.concat(per_class_tables).to_csv(staging / "per_class_metrics.csv", index=False)
        if "midi_number" in predictions.columns:
            pitch = error_by_pitch(predictions, splits)
            pitch.to_csv(staging / "error_by_pitch.csv", index=False)
            plot_error_by_pitch(pitch, splits, PITCH_BAND, staging / "error_by_pitch.png")
            sections.append(_section("Error by pitch", images=["error_by_pitch.png"]))
        calibration = calibration_table(predictions, class_names, splits)
        if not calibration.empty:
            calibration.to_csv(staging / "calibration.csv", index=False)
            plot_calibration(calibration, dict(zip(metrics["split"], metrics["ece"])), staging / "calibration.png")
            sections.append(_section("Calibration", images=["calibration.png"]))
        (staging / INDEX_HTML).write_text(render_page(
            "evaluation.html", title=title, metrics=_table(metrics, floats="{:.4f}"), notes=notes or [],
            links=links or {}, sections=sections))
        written = {p.name for p in staging.iterdir()}
    for stale in out_dir.iterdir():
        if stale.name not in written and stale.is_file() and not stale.name.startswith(".") and any(
                fnmatch.fnmatchcase(stale.name, pattern) for pattern in OPTIONAL_REPORT_FILES):
            stale.unlink()
    return out_dir / INDEX_HTML


def _write_split(out_dir: Path, part: pd.DataFrame, name: str, class_names: list[str]) -> pd.DataFrame:
    """Confusion matrix (CSV, PNG), ROC and per-class plots of one split; returns its per-class table."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    y_true, y_pred, proba = _class_index(part, class_names)
    labels = list(range(len(class_names)))
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    pd.DataFrame(matrix, index=pd.Index(class_names, name="true"), columns=class_names).to_csv(
        out_dir / f"confusion_{name}.csv")
    plot_confusion(matrix, class_names, f"Confusion matrix, {name} ({len(part)} clips)",
                   out_dir / f"confusion_{name}.png")
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    table = pd.DataFrame({"split": name, "class": class_names, "precision": precision, "recall": recall,
                          "f1": f1, "support": support})
    aucs = plot_roc(y_true, proba, class_names, f"ROC, {name}", out_dir / f"roc_{name}.png")
    table["auc"] = table["class"].map(aucs)
    plot_per_class(table, f"Per-class precision, recall and F1, {name}", out_dir / f"per_class_{name}.png")
    return table


def _section(title: str, *, images: list[str] = (), table: Markup | None = None) -> dict:
    return {"title": title, "images": list(images), "table": table}


def _table(frame: pd.DataFrame, *, floats: str) -> Markup:
    return Markup(frame.to_html(index=False, float_format=floats.format, na_rep="–", border=0, classes="metrics"))


def links_to_neighbours(model_dir: Path, evaluation_dir: Path, own: bool) -> dict[str, str]:
    """Links from a report to its neighbours: other-dataset reports, the error listing, the config."""
    links = {}
    if own:
        for sub in sorted(evaluation_dir.iterdir()) if evaluation_dir.is_dir() else []:
            if sub.is_dir() and not sub.name.startswith(".") and (sub / INDEX_HTML).is_file():
                label = "misclassified clips" if sub.name == "errors" else f"evaluation on {sub.name}"
                links[label] = f"{sub.name}/{INDEX_HTML}"
        if "misclassified clips" not in links:  # the page analyze_errors.py writes later, in this folder
            links["misclassified clips (once analyze_errors.py has listed them)"] = f"errors/{INDEX_HTML}"
        links["model configuration (config.json)"] = "../config.json"
    else:
        links["evaluation on the training dataset"] = f"../{INDEX_HTML}"
    return links


def evaluate_model(model_dir: str | os.PathLike, *, dataset_dir: str | os.PathLike | None = None,
                   quiet: bool = False) -> Path:
    """Write the evaluation report of a model folder; return the report's index.html.

    ``dataset_dir``: evaluate on another dataset (same feature parameters
    required) into ``evaluation/<dataset name>/``; the model's own dataset
    too once it was generated again since training.  Without it, the report
    is of the model's own splits as it predicted them (predictions.csv).
    """
    bundle = load_model_dir(model_dir)  # also validates model.keras
    # Generated again since training, the own dataset's clips are new to the model: scored as another dataset's.
    if dataset_dir is None or is_own_dataset(bundle.config, dataset_dir):
        index = evaluate_on_own_dataset(bundle)
    else:
        index = evaluate_on_dataset(bundle, Path(dataset_dir))
    if not quiet:
        print_summary(index)
    return index


def print_summary(index: Path) -> None:
    """Print a written report's metrics, a line per split, and where its page is."""
    metrics = pd.read_csv(index.parent / "metrics.csv")
    for row in metrics.itertuples():
        print(f"{row.split:>5}: error {row.error:.2%} (95 % interval {row.error_low:.1%}-{row.error_high:.1%}), "
              f"AUC {row.auc:.4f} ({row.n} clips)")
    print(f"evaluation report: {index}")


def evaluate_on_own_dataset(bundle: ModelBundle) -> Path:
    """The report of the model's own splits, from its predictions.csv and learning curves (cheap, re-runnable)."""
    model_dir, config = check_model_dir(bundle.model_dir, finished=True), bundle.config
    predictions = read_predictions(model_dir / PREDICTIONS_CSV, bundle.class_names, splits=SPLITS)
    curves = read_learning_curves(model_dir / LEARNING_CURVES_CSV)
    title = f"Evaluation of {config.get('model_id', model_dir.name)} ({config.get('arch', '?')}) " \
            f"on {config.get('dataset_name', '?')}"
    notes = [f"Architecture {config.get('arch')}, {config.get('parameters', '?')} parameters, "
             f"target {bundle.target}, {config.get('split', '?')} split, seed {config.get('seed')}, "
             f"best epoch {config.get('best_epoch')} of {config.get('epochs_run')}, "
             f"trained in {config.get('train_seconds')} s."]
    if config.get("fine_labels"):
        notes.append(f"Trained on instrument labels ({len(config.get('fine_classes') or [])} instruments), "
                     "family probability = sum of its instruments': the training cross-entropy is the "
                     "instruments', the validation cross-entropy and both error curves are the families'.")
    evaluation_dir = model_dir / EVALUATION_DIR
    return write_report(evaluation_dir, predictions, bundle.class_names, list(SPLITS), title=title,
                        curves=curves, links=links_to_neighbours(model_dir, evaluation_dir, own=True), notes=notes)


def check_dataset_name(dataset_dir: str | os.PathLike) -> str:
    """The name of ``dataset_dir``'s report folder, ``evaluation/<name>/``; UserError for one that would clash
    with the other report folders (:data:`RESERVED_NAMES`) or be hidden."""
    name = dataset_name(dataset_dir)
    if not name:  # "/": the report would be evaluation/ itself, the model's own
        raise UserError(f"{dataset_dir} has no folder name to give its report (evaluation/<name>/): give a folder "
                        "under it")
    if name in RESERVED_NAMES or name.startswith(".") or printable(name) != name:
        why = "would clash with the report folders" if printable(name) == name else "is not UTF-8, as its pages are"
        raise UserError(f"a dataset named '{printable(name)}' {why}; rename it")
    return name


def evaluate_on_dataset(bundle: ModelBundle, dataset_dir: Path) -> Path:
    """Predict every clip of another dataset and write its report into ``evaluation/<dataset name>/``."""
    name = check_dataset_name(dataset_dir)
    chromagrams, _, parameters, feature_params = load_dataset_features(dataset_dir)
    if feature_params != bundle.feature_params:
        differ = [key for key in sorted(set(feature_params) | set(bundle.feature_params))
                  if feature_params.get(key) != bundle.feature_params.get(key)]
        shown = ", ".join(f"{key} {feature_params.get(key)} there, {bundle.feature_params.get(key)} the model's"
                          for key in differ[:2])
        raise UserError(f"the features of {dataset_dir} were extracted with other parameters than the model "
                        f"was trained on ({shown}{', ...' if len(differ) > 2 else ''}): the model cannot read them")
    labels = target_labels(parameters, bundle.target)
    known = labels.isin(bundle.class_names).to_numpy()
    if not known.any():
        raise UserError(f"none of the classes of {dataset_dir} is known to the model "
                        f"({', '.join(bundle.class_names)})")
    proba = bundle.predict_proba(chromagrams, rows=np.flatnonzero(known))  # chunked features: batch by batch
    index_of = {c: i for i, c in enumerate(bundle.class_names)}
    y = labels[known].map(index_of).to_numpy(dtype=np.int64)
    predictions = predictions_table(parameters[known].reset_index(drop=True), np.full(len(y), "all"), y,
                                    proba, bundle.class_names)
    evaluation_dir, model_id = bundle.model_dir / EVALUATION_DIR, bundle.config.get("model_id", bundle.model_dir.name)
    notes = [f"Model {model_id} trained on {bundle.config.get('dataset_name', '?')}, "
             f"applied to every clip of {dataset_dir.resolve()}."]
    if (~known).any():
        unknown = sorted(set(labels[~known]))
        notes.append(f"{int((~known).sum())} clips of classes the model does not know were left out "
                     f"({', '.join(unknown)}).")
        warn(f"{dataset_dir}: left out {int((~known).sum())} of {len(known)} clips, of classes the model does not "
             f"know ({', '.join(unknown[:5])}{', ...' if len(unknown) > 5 else ''})")
    return write_report(evaluation_dir / name, predictions, bundle.class_names, ["all"],
                        title=f"Evaluation of {model_id} on {name}",
                        links=links_to_neighbours(bundle.model_dir, evaluation_dir, own=False), notes=notes,
                        with_predictions=True)
