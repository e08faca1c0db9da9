"""Scoring a model on a folder of labelled recordings: the user's path, with the answers known.

The project holds no recordings of real instruments and trains on none
(README, *Results*); whoever has some can measure a model on them without
copying them into a dataset::

    my-recordings/
        strings/violin-a4.wav  strings/cello/low-c.flac  ...
        brass/trumpet.mp3  ...

Each file's class is the first folder under the given one (a class of the
model, in any case: ``Strings/`` is ``strings``); deeper folders only
group, and linked folders are followed.  Every file in a class folder is
read as ``predict.py`` reads it (:class:`Predictor`: any format libsndfile
reads, any rate, channels and length, the window from the note's onset, a
level outside the training range scaled into it), so the figures are those
a user gets.  ``evaluate.py MODEL --recordings DIR`` writes the report of
:func:`evaluation.write_report` into ``MODEL/evaluation/<DIR name>/``: its
``predictions.csv`` has a row per file (``file``, the path under DIR;
``warnings``, what ``predict.py`` would have said about it) and
``left_out.csv`` the files of the class folders left out, their kind and
reason; the generalisation report
(``--report``) gives the folder a column, as it does a dataset.

``sample_id`` numbers every file under DIR in path order, whatever the
model's classes and whichever files it could read, so that two models'
answers on one folder pair up clip by clip (the report's paired table).

Left out, with a warning line for each kind: audio files in folders that
are not a class of the model or directly in DIR (counted), and files of a
class folder that are not audio ``predict.py`` reads, cannot be read, or
are silent (listed in ``left_out.csv``).  Hidden files and folders, and
other files than audio outside the class folders, are skipped unsaid.

Scoring (:func:`score_recordings`) writes nothing; :func:`write_recordings_report`
writes, so that a command can score every folder for every model before it
writes any report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from .audio import SUPPORTED_EXTENSIONS, AudioError
from .cli import UserError, printable, warn
from .dataset import PARAMETERS_CSV
from .evaluation import LEFT_OUT_CSV, check_dataset_name, links_to_neighbours, write_report
from .metrics import predictions_table
from .model_files import EVALUATION_DIR, read_model_records
from .prediction import Predictor


def recording_files(folder: str | os.PathLike) -> list[str]:
    """Every file under ``folder`` (linked folders followed; hidden files and folders left out), as paths
    under it in sorted order: the order :func:`find_recordings` numbers them in.

    A link back up the tree is not followed again; one real folder reached under two first-level folders (two
    classes) is a UserError, reached twice under one its files are listed once.
    """
    if not str(folder).strip():  # before Path(), which makes "" the current folder
        raise UserError("the recordings folder is an empty path")
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder of recordings" if folder.exists()
                        else f"recordings folder {folder} not found")
    files, reached = [], {}  # real folder -> (first-level folder, path) it was first reached as
    stack = [((), frozenset())]
    while stack:
        parts, ancestors = stack.pop()
        path = folder.joinpath(*parts)
        status = path.stat()
        key = (status.st_dev, status.st_ino)
        if key in ancestors:  # a link back up
            continue
        top = parts[0] if parts else None
        if key in reached:
            if reached[key][0] != top:
                raise UserError(f"{path} is the folder {reached[key][1]} too (a link): its recordings would "
                                f"belong to two classes, {reached[key][0]} and {top}; keep each in one")
            continue
        reached[key] = (top, path)
        try:
            entries = sorted(os.scandir(path), key=lambda entry: entry.name, reverse=True)
        except OSError as error:
            raise UserError(f"cannot read the folder {path}: {error.strerror or error}") from None
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                stack.append(((*parts, entry.name), ancestors | {key}))
            elif entry.is_file():
                files.append("/".join((*parts, entry.name)))
    return sorted(files)


def find_recordings(folder: str | os.PathLike, class_names: list[str]) -> tuple[pd.DataFrame, dict[str, int]]:
    """The files of ``folder``'s class folders: (a table of ``sample_id``, ``file`` (the path under ``folder``)
    and ``true`` (the class), in path order; {where audio files were left out: how many}).

    UserError when ``folder`` is not a folder, or holds no file in a folder named after a class.
    """
    by_name = {name.casefold(): name for name in class_names}
    rows, left_out = [], {}
    for sample_id, file in enumerate(recording_files(folder)):
        parts = file.split("/")
        label = by_name.get(parts[0].casefold()) if len(parts) > 1 else None
        if label is not None:
            rows.append({"sample_id": sample_id, "file": file, "true": label})
        elif Path(file).suffix.lower() in SUPPORTED_EXTENSIONS:  # notes and licences beside them: unsaid
            where = f"in {parts[0]}/, not a class of the model" if len(parts) > 1 else \
                "directly in the folder (put each in a class folder)"
            left_out[where] = left_out.get(where, 0) + 1
    if not rows:
        raise UserError(f"{folder} holds no file in a folder named after a class of the model "
                        f"({', '.join(class_names)}): put each recording in FOLDER/<class>/")
    return pd.DataFrame(rows), left_out


def check_recordings(folders: list[str | os.PathLike], model_dirs: list[str | os.PathLike]) -> None:
    """UserError for a folder that cannot be scored by every model (:func:`find_recordings`), is a dataset
    (``--dataset`` scores its chromagrams), or lies inside a model folder (the report would be written there)."""
    for folder in folders:
        if str(folder).strip() and (Path(folder) / PARAMETERS_CSV).is_file():
            raise UserError(f"{folder} is a dataset: give it with --dataset")
        for model_dir in model_dirs:
            if str(folder).strip() and Path(folder).resolve().is_relative_to(Path(model_dir).resolve()):
                raise UserError(f"{folder} lies inside the model folder {model_dir}, where its report would be "
                                "written: keep the recordings elsewhere")
            find_recordings(folder, read_model_records(model_dir).class_names)


def _files(count: int, noun: str = "file") -> str:
    return f"{count} {noun}{'s' * (count != 1)}"


@dataclass
class ScoredRecordings:
    """A model's answers on one recordings folder, before anything is written."""

    folder: Path
    name: str                                  # of the report folder, evaluation/<name>/
    model_dir: Path
    model_id: str
    class_names: list[str]
    predictions: pd.DataFrame                  # as predictions.csv
    left_out: pd.DataFrame                     # file, kind, reason: as left_out.csv
    warnings: list[str] = field(default_factory=list)


def score_recordings(predictor: Predictor, folder: str | os.PathLike, *, jobs: int | None = None,
                     quiet: bool = False) -> ScoredRecordings:
    """Classify every file of ``folder``'s class folders (:func:`find_recordings`) as ``predict.py`` does.

    UserError when no file could be classified.
    """
    folder = Path(folder)
    name = check_dataset_name(folder)
    files, elsewhere = find_recordings(folder, predictor.class_names)
    rows, proba, left_out = [], [], []
    results = predictor.predict_files([folder / f for f in files["file"]], jobs=jobs)
    progress = tqdm(results, total=len(files), desc=f"recordings of {name}", unit="file", disable=quiet)
    for (_, result), row in zip(progress, files.itertuples(index=False)):
        if isinstance(result, AudioError):
            kind = "not audio" if result.kind == "unsupported" and \
                Path(row.file).suffix.lower() not in SUPPORTED_EXTENSIONS else "unreadable"
            left_out.append({"file": printable(row.file), "kind": kind,
                             "reason": printable(str(result).removeprefix(f"{folder / row.file}: "))})
        elif silent := next((w for w in result.warnings if w.startswith("silent clip")), None):
            left_out.append({"file": printable(row.file), "kind": "silent", "reason": silent})
        else:  # names as text files can hold them: bytes that are not UTF-8 written as \xff
            rows.append({"sample_id": row.sample_id, "file": printable(row.file), "true": row.true,
                         "peak_dbfs": round(result.peak_dbfs, 2), "warnings": "; ".join(result.warnings)})
            proba.append([result.probabilities[c] for c in predictor.class_names])
    left_out = pd.DataFrame(left_out, columns=["file", "kind", "reason"])
    if not rows:
        raise UserError(f"none of the {_files(len(files))} of {folder}'s class folders could be classified "
                        f"({left_out['file'].iloc[0]}: {left_out['reason'].iloc[0]})")
    warnings = [f"{folder}: left out {_files(count, 'audio file')} {where}"
                for where, count in elsewhere.items()]
    for kind, what in (("not audio", "that are not audio predict.py reads"), ("unreadable", "that could not be read"),
                       ("silent", "that are silent, no note to classify")):
        part = left_out[left_out["kind"] == kind]
        if len(part):
            suffixes = ", ".join(sorted({Path(f).suffix.lower() or "no suffix" for f in part["file"]}))
            shown = suffixes if kind == "not audio" else f"{part['file'].iloc[0]}: {part['reason'].iloc[0]}"
            warnings.append(f"{folder}: left out {_files(len(part))} of the class folders {what} ({shown}; "
                            f"listed in {LEFT_OUT_CSV})")
    kept = pd.DataFrame(rows)
    index_of = {c: i for i, c in enumerate(predictor.class_names)}
    table = predictions_table(kept, np.full(len(kept), "all"), kept["true"].map(index_of).to_numpy(),
                              np.asarray(proba, dtype=np.float64), predictor.class_names)
    table = table.assign(file=kept["file"], peak_dbfs=kept["peak_dbfs"], warnings=kept["warnings"])
    return ScoredRecordings(folder, name, Path(predictor.model_dir), predictor.model_id, predictor.class_names,
                            table, left_out, warnings)


def score_every_folder(model_dirs: list[str | os.PathLike], folders: list[str | os.PathLike], *,
                       quiet: bool = False) -> list[ScoredRecordings]:
    """:func:`score_recordings` of every folder by every model (each model loaded once), writing nothing;
    each warning printed once (models of the same classes leave the same files out)."""
    scored, said = [], set()
    for model_dir in model_dirs if folders else []:
        predictor = Predictor(model_dir)
        for folder in folders:
            scored.append(score_recordings(predictor, folder, quiet=quiet))
            for line in scored[-1].warnings:
                if line not in said:
                    said.add(line)
                    warn(line)
    return scored


def write_recordings_report(scored: ScoredRecordings) -> Path:
    """Write a :func:`score_recordings` result into ``MODEL/evaluation/<folder name>/``; return its index.html."""
    notes = [f"Model {scored.model_id} applied to the {len(scored.predictions)} labelled recordings of "
             f"{scored.folder.resolve()}, each read as predict.py reads a file (the window from its onset, "
             f"resampled, levels brought into the training range)."]
    if len(scored.left_out):
        notes.append(f"{_files(len(scored.left_out))} of the class folders left out ({LEFT_OUT_CSV}: "
                     f"each with its kind and reason).")
    evaluation_dir = scored.model_dir / EVALUATION_DIR
    return write_report(evaluation_dir / scored.name, scored.predictions, scored.class_names, ["all"],
                        title=f"Evaluation of {scored.model_id} on the recordings of {scored.name}",
                        links=links_to_neighbours(scored.model_dir, evaluation_dir, own=False), notes=notes,
                        with_predictions=True, tables={LEFT_OUT_CSV: scored.left_out} if len(scored.left_out)
                        else None)
