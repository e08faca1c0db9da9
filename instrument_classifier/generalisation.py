"""How a model does on sound banks it never heard: error per SoundFont and lineage, and a table across models.

A model trained with ``prepare_training.py --split soundfont`` has the
held-out fonts in its test split; :func:`errors_by_soundfont` breaks any
predictions table (a model's own ``predictions.csv``, or the one
``evaluate.py --dataset`` writes for another dataset) down by font and
lineage.  :func:`generalisation_table` puts several models side by side,
one row per model (a training recipe), one column per held-out font and
lineage, beside the in-distribution error (the validation split: clips of
the training fonts the model did not learn from, though they chose its
epoch, so the figure leans a little low); :func:`family_table` splits
the error on the fonts each model never heard (:func:`unheard_parts`) by
family, and :func:`instrument_table` by instrument, so that a headline
error can be read (bowed strings are not harpsichords; one bank's violin may
be unlike any other); :func:`paired_table` sets each model against the first
on the same clips::

    python evaluate.py MODEL_A MODEL_B --dataset data/working/other --report data/working/report
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .cli import UserError, atomic_path, read_json
from .metrics import calibration_error, error_interval, read_predictions
from .model_files import CONFIG_JSON, EVALUATION_DIR, PREDICTIONS_CSV, is_own_dataset

GENERALISATION_CSV = "generalisation.csv"
GENERALISATION_MD = "generalisation.md"
FAMILY_CSV = "generalisation_by_family.csv"
INSTRUMENT_CSV = "generalisation_by_instrument.csv"
PAIRED_CSV = "generalisation_paired.csv"
REPORT_FILES = (GENERALISATION_CSV, GENERALISATION_MD, FAMILY_CSV, INSTRUMENT_CSV, PAIRED_CSV)
# What two parts' clips of one sample_id must agree on to be taken as the same clip.
SAME_CLIP_COLUMNS = ("true", "soundfont", "instrument_name", "midi_number", "file")  # "file": a recording
# generalisation.md lists this many of the worst instruments of each model and part (the CSV has all).
WORST_INSTRUMENTS_SHOWN = 10
# Columns of a model row before the per-font ones.
ROW_COLUMNS = ("model_id", "arch", "options", "split", "trained_on", "in_distribution_error", "test_error")


def errors_by_soundfont(predictions: pd.DataFrame) -> pd.DataFrame:
    """Error per split and SoundFont, then per split and lineage: split, group, name, n, errors, error,
    error_low, error_high (:func:`metrics.error_interval`).

    ``group`` is "soundfont" or "lineage".  Empty when the table has no soundfont column.
    """
    rows = []
    correct = predictions["correct"].astype(bool)
    for group in ("soundfont", "lineage"):
        if group not in predictions.columns:
            continue
        for (split, name), part in predictions.groupby(["split", group], sort=True):
            wrong = int((~correct[part.index]).sum())
            low, high = error_interval(wrong, len(part))
            rows.append({"split": split, "group": group, "name": str(name), "n": len(part), "errors": wrong,
                         "error": wrong / len(part), "error_low": low, "error_high": high})
    return pd.DataFrame(rows, columns=["split", "group", "name", "n", "errors", "error", "error_low", "error_high"])


def _with_interval(row: dict, column: str, correct: pd.Series) -> None:
    """``row[column]``, the error of ``correct``, and beside it ``COLUMN low`` and ``COLUMN high``, its interval."""
    wrong, n = int((~correct.astype(bool)).sum()), len(correct)
    row[column] = wrong / n if n else float("nan")
    row[f"{column} low"], row[f"{column} high"] = error_interval(wrong, n)


def model_row(model_dir: str | os.PathLike, dataset_names: list[str] = ()) -> dict:
    """One model's row: its recipe, in-distribution and test error, and the error of every held-out font.

    Columns ``held out: FONT`` / ``held out: LINEAGE lineage`` come from the
    model's test split (only the fonts its training split never held);
    ``DATASET: FONT`` from ``evaluation/DATASET/predictions.csv`` (written by
    ``evaluate.py MODEL --dataset DATASET``).  Every error has its 95 %
    interval beside it, in ``COLUMN low`` and ``COLUMN high``.
    """
    model_dir = Path(model_dir)
    config = read_json(model_dir / CONFIG_JSON, what="model config file")
    own = read_predictions(model_dir / PREDICTIONS_CSV)
    correct = own["correct"].astype(bool)
    trained_on = sorted(set(own.loc[own["split"] == "train", "soundfont"])) if "soundfont" in own else []
    options = config.get("model_options") or {}
    row = {
        "model_id": config.get("model_id", model_dir.name),
        "arch": config.get("arch"),
        "options": ", ".join(f"{key}={value}" for key, value in sorted(options.items())) or "-",
        "split": config.get("split"),
        "trained_on": " ".join(trained_on),
    }
    _with_interval(row, "in_distribution_error", correct[_in_distribution(own, trained_on)])
    _with_interval(row, "test_error", correct[own["split"] == "test"])
    if config.get("split") == "soundfont":
        for item in errors_by_soundfont(own[own["split"] == "test"]).itertuples():
            if item.name in trained_on:
                continue
            label = item.name if item.group == "soundfont" else f"{item.name} lineage"
            row[f"held out: {label}"] = item.error
            row[f"held out: {label} low"], row[f"held out: {label} high"] = item.error_low, item.error_high
    for name in dataset_names:
        path = model_dir / EVALUATION_DIR / name / PREDICTIONS_CSV
        if not path.is_file():
            raise UserError(f"{model_dir} has not been evaluated on {name}: run evaluate.py {model_dir} "
                            f"--dataset DATASET_DIR")
        other = read_predictions(path)
        _with_interval(row, f"{name}: all", other["correct"])
        for item in errors_by_soundfont(other).itertuples():
            label = item.name if item.group == "soundfont" else f"{item.name} lineage"
            row[f"{name}: {label}"] = item.error
            row[f"{name}: {label} low"], row[f"{name}: {label} high"] = item.error_low, item.error_high
    return row


def _in_distribution(own: pd.DataFrame, trained_on: list[str]) -> pd.Series:
    """Which clips are in distribution: the validation clips of fonts the training split holds.

    With ``--valid-fonts`` the validation split holds fonts out too: those are not in distribution.
    """
    valid = own["split"] == "valid"
    if "soundfont" in own:
        valid &= own["soundfont"].isin(trained_on)
    return valid


def unheard_parts(model_dirs: list[str | os.PathLike],
                  dataset_names: list[str] = ()) -> list[tuple[str, str, pd.DataFrame]]:
    """(model_id, part, predictions) of every model's clips of fonts it never trained on.

    A part is the model's held-out test split (``held out``, with ``--split
    soundfont``) or a dataset of ``dataset_names`` (its clips of fonts the
    model did not train on); empty parts are left out.  Each part's
    ``predictions.attrs["clips"]`` names the clips it scored (the dataset's
    identity), which :func:`paired_table` compares.  Call after
    :func:`generalisation_table`, which checks that the evaluations exist.
    """
    found = []
    for model_dir in map(Path, model_dirs):
        config = read_json(model_dir / CONFIG_JSON, what="model config file")
        own = read_predictions(model_dir / PREDICTIONS_CSV)
        trained_on = set(own.loc[own["split"] == "train", "soundfont"]) if "soundfont" in own else set()
        # Its own dataset: two datasets of one seed and fonts hold the same notes under the same sample ids,
        # rendered with other variation; its features' identity tells them apart.
        own_clips = config.get("features_identity") or str(Path(config.get("dataset") or model_dir).resolve())
        parts = [("held out", own[own["split"] == "test"], f"own:{own_clips}")] \
            if config.get("split") == "soundfont" else []
        for name in dataset_names:  # scored by evaluate.py just before, every model on the same dataset
            other = read_predictions(model_dir / EVALUATION_DIR / name / PREDICTIONS_CSV)
            parts.append((name, other[~other["soundfont"].isin(trained_on)] if "soundfont" in other else other,
                          f"dataset:{name}"))
        model_id = config.get("model_id", model_dir.name)
        for part, predictions, clips in parts:
            if len(predictions):
                predictions = predictions.copy()
                predictions.attrs["clips"] = clips
                found.append((model_id, part, predictions))
    return found


def family_table(parts: list[tuple[str, str, pd.DataFrame]]) -> pd.DataFrame:
    """Error by true family of :func:`unheard_parts`: one row per model and part.

    Columns model_id, part, n, error, error_low, error_high (its 95 %
    interval), confidence (the mean top probability:
    above 1 - error, the model is surer than it is right), ece (the expected
    calibration error, :func:`metrics.calibration_error`), then one per family.
    """
    rows = []
    for model_id, part, predictions in parts:
        correct = predictions["correct"].astype(bool)
        top = predictions[[c for c in predictions.columns if c.startswith("p_")]].max(axis=1).to_numpy()
        low, high = error_interval(int((~correct).sum()), len(correct))
        row = {"model_id": model_id, "part": part, "n": len(predictions), "error": float(1 - correct.mean()),
               "error_low": low, "error_high": high, "confidence": float(top.mean()),
               "ece": calibration_error(correct.to_numpy(), top)}
        for family, group in correct.groupby(predictions["true"], sort=True):
            row[str(family)] = float(1 - group.mean())
        rows.append(row)
    return pd.DataFrame(rows)


def instrument_table(parts: list[tuple[str, str, pd.DataFrame]]) -> pd.DataFrame:
    """Error by instrument of :func:`unheard_parts`, the worst first within each model and part.

    Columns model_id, part, instrument, family (the true class), n, error,
    error_low, error_high (its 95 % interval: a few dozen clips leave it
    wide), and ``called`` (the wrong answer given most often, "" when none): a
    family's error often comes from a few instruments whose samples in the
    unheard banks are unlike any the model heard.  Empty when the
    predictions have no ``instrument_name``.
    """
    rows = []
    for model_id, part, predictions in parts:
        if "instrument_name" not in predictions.columns:
            continue
        for instrument, clips in predictions.groupby("instrument_name", sort=True):
            wrong = clips.loc[~clips["correct"].astype(bool), "predicted"]
            low, high = error_interval(len(wrong), len(clips))
            rows.append({"model_id": model_id, "part": part, "instrument": str(instrument),
                         "family": str(clips["true"].iloc[0]), "n": len(clips), "error": float(len(wrong) / len(clips)),
                         "error_low": low, "error_high": high,
                         "called": str(wrong.value_counts().index[0]) if len(wrong) else ""})
    table = pd.DataFrame(rows, columns=["model_id", "part", "instrument", "family", "n", "error", "error_low",
                                        "error_high", "called"])
    order = table.sort_values("error", ascending=False, kind="stable")
    return order.sort_values(["model_id", "part"], kind="stable").reset_index(drop=True)


def worst_instruments(instruments: pd.DataFrame, count: int = WORST_INSTRUMENTS_SHOWN) -> pd.DataFrame:
    """The first ``count`` rows of each model and part of an :func:`instrument_table`: its worst instruments."""
    return instruments.groupby(["model_id", "part"], sort=False).head(count)


def mcnemar_p(only_first_wrong: int, only_second_wrong: int) -> float:
    """McNemar's exact test (two-sided): the chance that the clips on which exactly one of two models
    errs split at least this unevenly between them if both erred equally often (binomial, p = 1/2)."""
    from scipy.stats import binomtest

    discordant = only_first_wrong + only_second_wrong
    return 1.0 if discordant == 0 else float(binomtest(only_first_wrong, discordant, 0.5).pvalue)


def reference_clips(predictions: pd.DataFrame) -> str | None:
    """Which clips a part of :func:`unheard_parts` scored (its ``attrs["clips"]``; None if not said)."""
    return predictions.attrs.get("clips")


def paired_table(baseline: list[tuple[str, str, pd.DataFrame]],
                 others: list[tuple[str, str, pd.DataFrame]]) -> pd.DataFrame:
    """Each other model against the baseline model, on the clips of a part that both scored.

    ``baseline`` is the :func:`unheard_parts` of one model, ``others`` those
    of the models compared with it.  One row per other model and part it
    shares with the baseline: model_id, baseline (its model_id), part, n
    (the shared clips, matched by sample_id), error and baseline_error on
    them, difference (error - baseline_error), only_model_wrong and
    only_baseline_wrong (the discordant clips) and p_value
    (:func:`mcnemar_p`).  Two errors measured on the same clips differ by less
    than their separate intervals suggest: the test uses the pairing.  It asks
    whether these two trained models differ on such clips; the spread between
    two trainings of one recipe (its seed) is not in it.  Parts of other clips
    are left out: held-out splits of two datasets (:func:`reference_clips`:
    two datasets of one seed hold the same notes, rendered otherwise), or
    clips that disagree on what they are under one sample_id.
    """
    columns = ["model_id", "baseline", "part", "n", "error", "baseline_error", "difference", "only_model_wrong",
               "only_baseline_wrong", "p_value"]
    own = {part: (model_id, predictions) for model_id, part, predictions in baseline}
    rows = []
    for model_id, part, predictions in others:
        if part not in own or reference_clips(own[part][1]) != reference_clips(predictions) or \
                "sample_id" not in predictions or "sample_id" not in own[part][1]:
            continue
        first, reference = own[part]
        both = reference.merge(predictions, on="sample_id", suffixes=("_baseline", ""))
        same = [c for c in SAME_CLIP_COLUMNS if c in predictions.columns and f"{c}_baseline" in both.columns]
        if not len(both) or any((both[c] != both[f"{c}_baseline"]).any() for c in same):
            continue
        wrong, baseline_wrong = ~both["correct"].astype(bool), ~both["correct_baseline"].astype(bool)
        only_model, only_baseline = int((wrong & ~baseline_wrong).sum()), int((baseline_wrong & ~wrong).sum())
        rows.append({"model_id": model_id, "baseline": first, "part": part, "n": len(both),
                     "error": float(wrong.mean()), "baseline_error": float(baseline_wrong.mean()),
                     "difference": float(wrong.mean() - baseline_wrong.mean()), "only_model_wrong": only_model,
                     "only_baseline_wrong": only_baseline, "p_value": mcnemar_p(only_model, only_baseline)})
    return pd.DataFrame(rows, columns=columns)


def generalisation_table(model_dirs: list[str | os.PathLike], dataset_names: list[str] = ()) -> pd.DataFrame:
    """One row per model (see :func:`model_row`): a font a model trained on is empty in its ``held out:`` columns."""
    if not model_dirs:
        raise UserError("no models to compare")
    table = pd.DataFrame([model_row(path, dataset_names) for path in model_dirs])
    fixed = [name for c in ROW_COLUMNS for name in (c, f"{c} low", f"{c} high") if name in table.columns]
    return table[fixed + [c for c in table.columns if c not in fixed]]


def format_markdown(table: pd.DataFrame) -> str:
    """The table as Markdown, errors in percent, '–' where a column does not apply.

    A column with an interval beside it (``COLUMN low`` and ``COLUMN high``, or
    ``COLUMN_low`` and ``COLUMN_high``) shows it in one cell: ``34.6 % (32.5–36.8)``.
    """
    shown = table.copy()
    for column in list(shown.columns):
        for low, high in ((f"{column} low", f"{column} high"), (f"{column}_low", f"{column}_high")):
            if low in shown.columns and high in shown.columns:
                shown[column] = [_percent_with_interval(*values) for values in
                                 zip(shown[column], shown.pop(low), shown.pop(high))]
    for column in shown.columns:
        if shown[column].dtype.kind == "f":
            shown[column] = shown[column].map(lambda v: "–" if pd.isna(v) else f"{100 * v:.1f} %")
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "---|" * len(shown.columns)
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join([header, rule, *body])


PAIRED_NOTE = ("p: McNemar's exact test on the clips only one of the two models gets wrong. It compares these "
               "two trained models on such clips; another training seed of either recipe moves its error too "
               "(docs/generalisation.md: about a point on 3000 clips), which p does not include.")


def format_paired(paired: pd.DataFrame) -> str:
    """A :func:`paired_table` as Markdown: errors in percent, the difference in points, p to two digits."""
    shown = paired.copy()
    shown["difference"] = [f"{100 * v:+.1f} points" for v in shown["difference"]]
    shown["p_value"] = [f"{v:.2g}" for v in shown["p_value"]]
    return format_markdown(shown)


def _percent_with_interval(value: float, low: float, high: float) -> str:
    if pd.isna(value):
        return "–"
    return f"{100 * value:.1f} %" + ("" if pd.isna(low) else f" ({100 * low:.1f}–{100 * high:.1f})")


def write_generalisation_report(table: pd.DataFrame, out_dir: str | os.PathLike,
                                families: pd.DataFrame | None = None,
                                instruments: pd.DataFrame | None = None,
                                paired: pd.DataFrame | None = None) -> Path:
    """Write a :func:`generalisation_table` (and a :func:`family_table`, an :func:`instrument_table`, a
    :func:`paired_table`) into ``out_dir``.

    ``generalisation.csv``, ``generalisation_by_family.csv``,
    ``generalisation_by_instrument.csv``, ``generalisation_paired.csv``, and
    the tables in ``generalisation.md`` (of the instruments, the worst
    :data:`WORST_INSTRUMENTS_SHOWN` of each model and part), whose path is returned.
    A table that is empty or not given leaves its CSV out (an earlier report's is removed).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = "# Generalisation: family error on sound banks the models never heard\n\n" + format_markdown(table) + "\n"
    sections = [
        (families, FAMILY_CSV, "%.4f", "By family, on the fonts each model never heard", format_markdown),
        (instruments, INSTRUMENT_CSV, "%.4f", f"The instruments most often wrong, on the fonts each model never "
         f"heard (the worst {WORST_INSTRUMENTS_SHOWN} of each; all in {INSTRUMENT_CSV})",
         lambda t: format_markdown(worst_instruments(t))),
        (paired, PAIRED_CSV, "%.4g", "Each model against the first, on the same clips",
         lambda t: format_paired(t) + "\n\n" + PAIRED_NOTE),
    ]
    for part, name, float_format, title, shown in [(table, GENERALISATION_CSV, "%.4f", None, None), *sections]:
        if part is None or not len(part):
            (out_dir / name).unlink(missing_ok=True)  # an earlier report's, of other models
            continue
        with atomic_path(out_dir / name) as tmp:
            part.to_csv(tmp, index=False, float_format=float_format)
        if title:
            text += f"\n## {title}\n\n" + shown(part) + "\n"
    with atomic_path(out_dir / GENERALISATION_MD) as tmp:
        tmp.write_text(text)
    return out_dir / GENERALISATION_MD


def check_report_dir(out_dir: str | os.PathLike, model_dirs: list[str | os.PathLike] = ()) -> Path:
    """``out_dir`` as a Path, if a report may be written there: a new folder, or an earlier report's.

    UserError for a path that is, or lies under, a file, for a folder
    holding other files than a report's (a dataset's or a model's, say:
    the report would mix in with them, and replace some), and for one inside
    any of ``model_dirs`` (where evaluate.py writes the model's own reports).
    """
    if not str(out_dir).strip():
        raise UserError("the report folder is an empty path")
    out_dir = Path(out_dir)
    for model_dir in model_dirs:
        if out_dir.resolve().is_relative_to(Path(model_dir).resolve()):
            raise UserError(f"the report folder {out_dir} lies inside the model folder {model_dir}, whose reports "
                            "evaluate.py rewrites: give a folder outside it")
    blocker = next((p for p in [out_dir, *out_dir.parents] if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise UserError(f"cannot write the report into {out_dir}: {blocker} is a file, not a folder")
    others = sorted(p.name for p in out_dir.iterdir() if p.name not in REPORT_FILES and not p.name.startswith(".")
                    ) if out_dir.is_dir() else []
    if others:
        raise UserError(f"{out_dir} holds other files than a generalisation report ({others[0]}"
                        f"{', ...' if len(others) > 1 else ''}): give a new folder, or an earlier report's")
    return out_dir


def check_report_datasets(model_dirs: list[str | os.PathLike], dataset_dirs: list[str | os.PathLike]) -> None:
    """UserError when a dataset of the report is a model's own: its column would be what
    ``evaluation/<name>/`` held from before, or nothing (the model's own clips are scored in its own
    report, and its held-out fonts are the ``held out:`` columns)."""
    for model_dir in model_dirs:
        config = read_json(Path(model_dir) / CONFIG_JSON, what="model config file")
        for dataset in dataset_dirs:
            if isinstance(config, dict) and is_own_dataset(config, dataset):
                raise UserError(f"{dataset} is the dataset {model_dir} was trained on: the report's 'held out:' "
                                f"columns are its unheard clips; leave it out of --dataset")


def write_report(model_dirs: list[str | os.PathLike], dataset_names: list[str], out_dir: str | os.PathLike) -> Path:
    """The whole generalisation report of ``model_dirs`` (each evaluated on every dataset of ``dataset_names``)
    into ``out_dir``: :func:`generalisation_table`, :func:`family_table` and :func:`instrument_table` of the
    fonts each never heard, and :func:`paired_table` of every model against the first.  Returns the .md's path.
    """
    table = generalisation_table(model_dirs, dataset_names)
    by_model = [unheard_parts([model_dir], dataset_names) for model_dir in model_dirs]
    parts = [part for found in by_model for part in found]
    return write_generalisation_report(table, out_dir, family_table(parts), instrument_table(parts),
                                       paired_table(by_model[0], parts[len(by_model[0]):]))
