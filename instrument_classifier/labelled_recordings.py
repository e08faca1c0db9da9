"""Scoring a model on a folder of labelled recordings: the user's path, with the answers known.

The project holds no recordings of real instruments and trains on none
(README, *Results*); whoever has some can measure a model on them without
copying them into a dataset::

    my-recordings/
        strings/violin-a4.wav  strings/cello/low-c.flac  ...
        brass/trumpet.mp3  ...

Each file's class is the first folder under the given one (a class of the
model, in any case: ``Strings/`` is ``strings``); deeper folders only
group.  Every file is read as ``predict.py`` reads it (:class:`Predictor`:
any rate, channels and length, the window from the note's onset, a level
outside the training range scaled into it), so the figures are those a user
gets.  ``evaluate.py MODEL --recordings DIR`` writes the report of
:func:`evaluation.write_report` into ``MODEL/evaluation/<DIR name>/``, its
``predictions.csv`` with one row per file (``sample_id`` numbers the files
in path order, ``file`` is the path under DIR, ``warnings`` what
``predict.py`` would have said about the file), and the generalisation report
(``--report``) gives it a column, as it does a dataset.

Left out, with one warning line each: files in folders that are not a class
of the model, files directly in DIR, and files that cannot be read (the
first one's reason).  Files whose suffix is not an audio format's, and
hidden files and folders, are skipped unsaid (notes, licences, ``.DS_Store``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from .audio import SUPPORTED_EXTENSIONS, AudioError
from .cli import UserError, warn
from .evaluation import check_dataset_name, links_to_neighbours, write_report
from .metrics import predictions_table
from .model_files import EVALUATION_DIR
from .prediction import Predictor


def find_recordings(folder: str | os.PathLike, class_names: list[str]) -> tuple[pd.DataFrame, dict[str, int]]:
    """The audio files under ``folder``'s class folders: (a table of ``file`` (the path under
    ``folder``) and ``true`` (the class), in path order; {what was left out: how many files}).

    UserError when ``folder`` is not a folder, or holds no audio file in a folder named after a class.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder of recordings" if folder.exists()
                        else f"recordings folder {folder} not found")
    by_name = {name.casefold(): name for name in class_names}
    rows, left_out = [], {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file() \
                or path.suffix.lower() not in SUPPORTED_EXTENSIONS:
            continue
        label = by_name.get(relative.parts[0].casefold()) if len(relative.parts) > 1 else None
        if label is None:
            where = f"in {relative.parts[0]}/" if len(relative.parts) > 1 else "directly in the folder"
            left_out[where] = left_out.get(where, 0) + 1
            continue
        rows.append({"file": relative.as_posix(), "true": label})
    if not rows:
        raise UserError(f"{folder} holds no audio file in a folder named after a class of the model "
                        f"({', '.join(class_names)}): put each recording in FOLDER/<class>/")
    return pd.DataFrame(rows), left_out


def evaluate_on_recordings(model_dir: str | os.PathLike, recordings_dir: str | os.PathLike, *,
                           jobs: int | None = None, quiet: bool = False) -> Path:
    """Classify every labelled recording of ``recordings_dir`` (:func:`find_recordings`) with the model of
    ``model_dir``, as ``predict.py`` does, and write the report into ``evaluation/<folder name>/``;
    return its index.html."""
    recordings_dir = Path(recordings_dir)
    name = check_dataset_name(recordings_dir)
    predictor = Predictor(model_dir)
    files, left_out = find_recordings(recordings_dir, predictor.class_names)
    rows, proba, unreadable = [], [], []
    results = predictor.predict_files([recordings_dir / f for f in files["file"]], jobs=jobs)
    for row, (_, result) in zip(files.itertuples(index=False), tqdm(
            results, total=len(files), desc=f"recordings of {name}", unit="file", disable=quiet)):
        if isinstance(result, AudioError):
            unreadable.append(str(result))
            continue
        rows.append({"file": row.file, "true": row.true, "peak_dbfs": round(result.peak_dbfs, 2),
                     "warnings": "; ".join(result.warnings)})
        proba.append([result.probabilities[c] for c in predictor.class_names])
    if not rows:
        raise UserError(f"none of the {len(files)} recordings of {recordings_dir} could be read "
                        f"(the first: {unreadable[0]})")
    for where, count in left_out.items():
        warn(f"{recordings_dir}: left out {count} file{'s' * (count != 1)} {where}, not a class of the model "
             f"({', '.join(predictor.class_names)})" if where.endswith("/") else
             f"{recordings_dir}: left out {count} file{'s' * (count != 1)} {where}: put each in a class folder")
    if unreadable:
        warn(f"{recordings_dir}: left out {len(unreadable)} file{'s' * (len(unreadable) != 1)} that could not be "
             f"read (the first: {unreadable[0]})")
    kept = pd.DataFrame(rows)
    index_of = {c: i for i, c in enumerate(predictor.class_names)}
    parameters = kept.assign(sample_id=np.arange(len(kept)))
    table = predictions_table(parameters, np.full(len(kept), "all"), kept["true"].map(index_of).to_numpy(),
                              np.asarray(proba, dtype=np.float64), predictor.class_names)
    table = table.assign(file=kept["file"], peak_dbfs=kept["peak_dbfs"], warnings=kept["warnings"])
    notes = [f"Model {predictor.model_id} applied to the {len(kept)} labelled recordings of "
             f"{recordings_dir.resolve()}, each read as predict.py reads a file (the window from its onset, "
             f"resampled, levels brought into the training range)."]
    if left_out or unreadable:
        notes.append(f"Left out: {sum(left_out.values())} files outside the class folders, {len(unreadable)} "
                     f"that could not be read.")
    evaluation_dir = predictor.model_dir / EVALUATION_DIR
    return write_report(evaluation_dir / name, table, predictor.class_names, ["all"],
                        title=f"Evaluation of {predictor.model_id} on the recordings of {name}",
                        links=links_to_neighbours(predictor.model_dir, evaluation_dir, own=False), notes=notes,
                        with_predictions=True)
