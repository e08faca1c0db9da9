"""Turn a dataset's chromagrams into training data: targets, splits, a scaler.

``prepare_training.py`` writes ``DATASET/training-data/``::

    splits.csv            sample_id, split (train / valid / test)
    preprocessing.json    target, split method, seed, class names (the label
                          encoding: class index = position in the list), the
                          scaler's parameters (fit on the training split only),
                          the feature extractor's parameters, counts, versions

Later stages read it back with :func:`load_training_data`, which joins it with
``parameters.csv`` and the features; :meth:`TrainingData.arrays` scales a
split into the model input (:func:`scaling.to_model_input`).  Chunked
features are never read whole: the scaler is fitted in a streaming pass
(:meth:`scaling.ChromagramScaler.fit_rows`, the same values bit for bit) and
training reads them batch by batch (:mod:`streaming`).

>>> data = load_training_data("data/working/single-notes-2000")
>>> x, y = data.arrays("train")     # x (n, 44, 115, 1) scaled, y (n,) class index
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .chunked_array import ChunkedArray
from .cli import UserError, atomic_dir, library_versions, read_json, warn, write_json
from .defaults import DEFAULT_SEED
from .dataset import (PARAMETERS_CSV, SPLITS_CSV, TRAINING_DATA_DIR, TRAINING_RECORD_JSON,  # noqa: F401
                      stale_renders)
from .feature_store import features_identity, load_dataset_features
from .instruments import load_instruments
from .output_folders import check_replaceable_dir
from .scaling import ChromagramScaler, to_model_input

TARGETS = ("family", "instrument")
SPLIT_METHODS = ("random", "instrument", "soundfont")
SPLITS = ("train", "valid", "test")

# The original's 60/20/20 split: 20 % of each class (or of each family's
# instruments, for --split instrument) for validation, 20 % for test.
VALID_FRACTION = 0.2
TEST_FRACTION = 0.2


# ---------------------------------------------------------------------------
# Targets and splits


def target_labels(parameters: pd.DataFrame, target: str) -> pd.Series:
    """The class label (a string) of every row of ``parameters.csv``.

    ``family``: the family name; ``instrument``: the GM instrument name.
    """
    if target == "family":
        return parameters["family_name"].astype(str)
    if target == "instrument":
        if "instrument_id" not in parameters.columns:
            raise UserError("parameters.csv lacks the instrument_id column needed for --target instrument")
        names = load_instruments().set_index("id")["name"]
        return parameters["instrument_id"].map(names).fillna(
            parameters["instrument_id"].map(lambda i: f"instrument_{i}")).astype(str)
    raise UserError(f"unknown target {target!r} (choose from: {', '.join(TARGETS)})")


def _split_counts(n: int, valid_fraction: float, test_fraction: float) -> tuple[int, int]:
    """(n_valid, n_test) out of n items: at least one each when n >= 3."""
    n_test = round(n * test_fraction)
    n_valid = round(n * valid_fraction)
    if n >= 3:
        n_test, n_valid = max(int(test_fraction > 0), n_test), max(int(valid_fraction > 0), n_valid)
        while n - n_test - n_valid < 1:
            if n_valid >= n_test:
                n_valid -= 1
            else:
                n_test -= 1
    return n_valid, n_test


def random_split(labels: pd.Series, *, seed: int = DEFAULT_SEED, valid_fraction: float = VALID_FRACTION,
                 test_fraction: float = TEST_FRACTION) -> np.ndarray:
    """Stratified random split: the fractions apply within every class.

    Returns an array of "train" / "valid" / "test", one per label.
    """
    rng = np.random.default_rng(seed)
    split = np.full(len(labels), "train", dtype=object)
    labels = np.asarray(labels)
    for label in sorted(set(labels)):
        rows = rng.permutation(np.flatnonzero(labels == label))
        n_valid, n_test = _split_counts(len(rows), valid_fraction, test_fraction)
        split[rows[:n_test]] = "test"
        split[rows[n_test:n_test + n_valid]] = "valid"
    return split


def instrument_split(parameters: pd.DataFrame, labels: pd.Series, *, seed: int = DEFAULT_SEED,
                     valid_fraction: float = VALID_FRACTION, test_fraction: float = TEST_FRACTION) -> np.ndarray:
    """Hold whole instruments out: every clip of an instrument lands in one split.

    The instruments of each class are shuffled and divided by the fractions, so
    each class keeps instruments in every split and the test set measures
    instruments the model never heard.
    """
    if "instrument_id" not in parameters.columns:
        raise UserError("parameters.csv lacks the instrument_id column needed for --split instrument")
    rng = np.random.default_rng(seed)
    instrument = parameters["instrument_id"].to_numpy()
    labels = np.asarray(labels)
    split = np.full(len(labels), "train", dtype=object)
    for label in sorted(set(labels)):
        instruments = np.array(sorted(set(instrument[labels == label])))
        if len(instruments) < 3:
            raise UserError(f"--split instrument needs at least 3 instruments per class, "
                            f"class {label!r} has {len(instruments)}")
        instruments = rng.permutation(instruments)
        n_valid, n_test = _split_counts(len(instruments), valid_fraction, test_fraction)
        split[np.isin(instrument, instruments[:n_test])] = "test"
        split[np.isin(instrument, instruments[n_test:n_test + n_valid])] = "valid"
    return split


def soundfont_split(parameters: pd.DataFrame, labels: pd.Series, *, test_fonts: list[str] | None = None,
                    test_lineages: list[str] | None = None, valid_fonts: list[str] | None = None,
                    seed: int = DEFAULT_SEED, valid_fraction: float = VALID_FRACTION) -> np.ndarray:
    """Hold whole SoundFonts out: every clip of a test font (or of a font of a test lineage) is a test clip.

    The test set then measures sound banks the model never heard.  Validation
    is ``valid_fonts`` where given (held out as well), else a stratified
    random ``valid_fraction`` of the other fonts' clips.  Names are matched
    without regard to case; a name the dataset does not hold is a UserError.
    """
    if "soundfont" not in parameters.columns:
        raise UserError("parameters.csv lacks the soundfont column needed for --split soundfont")
    fonts = parameters["soundfont"].astype(str).to_numpy()
    lineage = (parameters["lineage"].astype(str).to_numpy() if "lineage" in parameters.columns
               else np.full(len(fonts), ""))
    if not (test_fonts or test_lineages):
        raise UserError("--split soundfont needs --test-fonts or --test-lineage (the fonts to hold out)")

    def pick(names: list[str] | None, values: np.ndarray, what: str) -> np.ndarray:
        known = {value.lower(): value for value in sorted(set(values))}
        rows = np.zeros(len(values), dtype=bool)
        for name in names or []:
            if name.lower() not in known:
                raise UserError(f"the dataset has no {what} {name!r} (it has: {', '.join(known.values())})")
            rows |= values == known[name.lower()]
        return rows

    test = pick(test_fonts, fonts, "SoundFont") | pick(test_lineages, lineage, "lineage")
    valid = pick(valid_fonts, fonts, "SoundFont")
    both = sorted(set(fonts[test & valid]))
    if both:
        raise UserError(f"{', '.join(both)} would be both test and validation: --valid-fonts must name other fonts "
                        "than --test-fonts and --test-lineage")
    if test.all() or (test | valid).all():
        raise UserError("--split soundfont would hold out every font: no training clips are left")
    split = np.full(len(labels), "train", dtype=object)
    split[test] = "test"
    split[valid] = "valid"
    if not valid_fonts:
        rest = np.flatnonzero(~test)
        inner = random_split(labels.iloc[rest], seed=seed, valid_fraction=valid_fraction, test_fraction=0.0)
        split[rest[inner == "valid"]] = "valid"
    return split


def check_split(labels: pd.Series, split: np.ndarray) -> None:
    """Raise UserError when a split lacks a class (it could be neither learnt nor measured)."""
    labels = np.asarray(labels)
    for name in SPLITS:
        present = set(labels[split == name])
        missing = sorted(set(labels) - present)
        if missing:
            raise UserError(f"the {name} split has no samples of class {missing[0]!r} "
                            f"({len(missing)} class(es) empty); use a larger dataset or another split")


def assign_splits(parameters: pd.DataFrame, labels: pd.Series, split: str, *, seed: int, valid_fraction: float,
                  test_fraction: float, test_fonts: list[str] | None = None, test_lineages: list[str] | None = None,
                  valid_fonts: list[str] | None = None) -> np.ndarray:
    """The split ("train", "valid" or "test") of every row by the ``split`` method, checked (:func:`check_split`)."""
    if split != "soundfont" and (test_fonts or test_lineages or valid_fonts):
        raise UserError("--test-fonts, --test-lineage and --valid-fonts go with --split soundfont")
    if split == "random":
        assignment = random_split(labels, seed=seed, valid_fraction=valid_fraction, test_fraction=test_fraction)
    elif split == "soundfont":
        assignment = soundfont_split(parameters, labels, test_fonts=test_fonts, test_lineages=test_lineages,
                                     valid_fonts=valid_fonts, seed=seed, valid_fraction=valid_fraction)
    else:
        assignment = instrument_split(parameters, labels, seed=seed, valid_fraction=valid_fraction,
                                      test_fraction=test_fraction)
    check_split(labels, assignment)
    return assignment


# ---------------------------------------------------------------------------
# Preparing and loading


def _fractions(split: str, valid_fraction: float | None, test_fraction: float | None,
               valid_fonts: list[str] | None) -> tuple[float | None, float | None]:
    """The (valid, test) fractions the split uses, defaults filled in, None where it uses none; UserError for
    one given where the split would ignore it, or out of range."""
    if split == "soundfont" and test_fraction is not None:
        raise UserError("--test-fraction does not apply to --split soundfont: its test split is every clip of "
                        "the held-out fonts")
    if valid_fonts and valid_fraction is not None:
        raise UserError("--valid-fraction does not apply with --valid-fonts: the validation split is every clip "
                        "of those fonts")
    valid_fraction = None if valid_fonts and split == "soundfont" else \
        VALID_FRACTION if valid_fraction is None else valid_fraction
    test_fraction = None if split == "soundfont" else TEST_FRACTION if test_fraction is None else test_fraction
    if test_fraction is None:  # --split soundfont: the held-out fonts are the test split, the rest is shared
        if valid_fraction is not None and not 0 < valid_fraction < 1:
            raise UserError(f"the valid fraction must be in (0, 1), got {valid_fraction}")
    elif not (0 < valid_fraction < 1 and 0 < test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise UserError("the valid and test fractions must be in (0, 1) and sum to less than 1")
    return valid_fraction, test_fraction


def prepare_training_data(dataset_dir: str | os.PathLike, *, target: str = "family", split: str = "random",
                          seed: int = DEFAULT_SEED, valid_fraction: float | None = None,
                          test_fraction: float | None = None, output_dir: str | os.PathLike | None = None,
                          overwrite: bool = False, test_fonts: list[str] | None = None,
                          test_lineages: list[str] | None = None, valid_fonts: list[str] | None = None) -> Path:
    """Write ``splits.csv`` and ``preprocessing.json``; return the output folder.

    ``valid_fraction`` and ``test_fraction`` default to :data:`VALID_FRACTION`
    and :data:`TEST_FRACTION` where the split uses them; where it does not
    (the test fraction of ``--split soundfont``, the validation fraction
    beside ``valid_fonts``) they are None, recorded so, and one given is a
    UserError rather than silently ignored.
    The folder (default ``DATASET/training-data``) is built beside its target
    and renamed into place, so a failure leaves the previous one untouched.
    An existing one is replaced only with ``overwrite``, and only if it holds
    nothing but those two files (:func:`cli.check_replaceable_dir`).
    """
    dataset_dir = Path(dataset_dir)
    if target not in TARGETS:
        raise UserError(f"unknown target {target!r} (choose from: {', '.join(TARGETS)})")
    if split not in SPLIT_METHODS:
        raise UserError(f"unknown split {split!r} (choose from: {', '.join(SPLIT_METHODS)})")
    if target == "instrument" and split == "instrument":
        raise UserError("--split instrument holds whole instruments out, so every --target instrument class "
                        "would be missing from training; use --split random")
    valid_fraction, test_fraction = _fractions(split, valid_fraction, test_fraction, valid_fonts)
    if output_dir is not None and not str(output_dir).strip():
        raise UserError("the output folder is an empty path")
    output_dir = Path(output_dir) if output_dir is not None else dataset_dir / TRAINING_DATA_DIR
    check_replaceable_dir(output_dir, own_files=(SPLITS_CSV, TRAINING_RECORD_JSON), overwrite=overwrite)
    chromagrams, sample_id, parameters, feature_params = load_dataset_features(dataset_dir)
    bad = non_finite_rows(chromagrams)
    if bad.any():
        raise UserError(f"{int(bad.sum())} of {len(chromagrams)} chromagrams of {dataset_dir} hold NaN or "
                        f"infinity (sample {sample_id[np.argmax(bad)]} first): run extract_features.py --overwrite")
    labels = target_labels(parameters, target)
    if labels.nunique() < 2:
        raise UserError(f"every clip of {dataset_dir} is of one {target}, {labels.iloc[0]!r}: a classifier needs "
                        f"clips of two or more (generate the dataset with more families or instruments)")
    assignment = assign_splits(parameters, labels, split, seed=seed, valid_fraction=valid_fraction,
                               test_fraction=test_fraction, test_fonts=test_fonts, test_lineages=test_lineages,
                               valid_fonts=valid_fonts)
    class_names = sorted(set(labels))
    # Streamed (the chunked layout never holds every row), and bit for bit fit(chromagrams[train]).
    scaler = ChromagramScaler().fit_rows(chromagrams, np.flatnonzero(assignment == "train"))

    counts = pd.crosstab(labels.to_numpy(), assignment).reindex(columns=list(SPLITS), fill_value=0)
    record = {
        "dataset": str(dataset_dir.resolve()),
        "target": target,
        "split": split,
        "seed": seed,
        "valid_fraction": valid_fraction,
        "test_fraction": test_fraction,
        "held_out": ({"test_fonts": sorted(set(parameters["soundfont"][assignment == "test"].astype(str))),
                      "valid_fonts": list(valid_fonts or [])} if split == "soundfont" else None),
        "class_names": class_names,
        "scaler": scaler.to_dict(),
        "features": feature_params,
        "features_identity": features_identity(dataset_dir),
        "input_shape": list(chromagrams.shape[1:]),
        "counts": {name: {label: int(counts.loc[label, name]) for label in class_names} for name in SPLITS},
        "versions": library_versions("numpy", "pandas"),
    }
    with atomic_dir(output_dir, overwrite=True) as tmp:  # checked above: nothing but our own files
        pd.DataFrame({"sample_id": sample_id, "split": assignment}).to_csv(tmp / SPLITS_CSV, index=False)
        write_json(tmp / TRAINING_RECORD_JSON, record)
    return output_dir


def non_finite_rows(chromagrams, *, block_rows: int = 1024) -> np.ndarray:
    """[shape=(N,)] True for each chromagram holding NaN or infinity; reads ``block_rows`` at a time."""
    bad = np.zeros(len(chromagrams), dtype=bool)
    for first in range(0, len(chromagrams), block_rows):
        block = np.asarray(chromagrams[first:first + block_rows])
        bad[first:first + len(block)] = ~np.isfinite(block).all(axis=tuple(range(1, block.ndim)))
    return bad


@dataclass
class TrainingData:
    """A prepared dataset, rows in feature-file order.

    chromagrams : raw features [shape=(N, frames, bins)]: an ndarray, or a
        :class:`chunked_array.ChunkedArray` read on demand (see ``streamed``)
    y : class index per row [shape=(N,)], into ``class_names``
    split : "train" / "valid" / "test" per row
    parameters : the rows of parameters.csv, aligned with ``chromagrams``
    """

    dataset_dir: Path
    training_dir: Path
    chromagrams: np.ndarray | ChunkedArray
    sample_id: np.ndarray
    y: np.ndarray
    split: np.ndarray
    parameters: pd.DataFrame
    class_names: list[str]
    scaler: ChromagramScaler
    feature_params: dict
    record: dict

    @property
    def target(self) -> str:
        return self.record["target"]

    @property
    def streamed(self) -> bool:
        """True for chunked features: training and prediction read them batch by batch (:mod:`streaming`)."""
        return not isinstance(self.chromagrams, np.ndarray)

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of one split: x the scaled model input (n, frames, bins, 1), in memory."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}")
        rows = self.split == split
        return to_model_input(self.chromagrams[rows], self.scaler), self.y[rows]


def load_training_data(dataset_dir: str | os.PathLike, training_dir: str | os.PathLike | None = None
                       ) -> TrainingData:
    """Load what ``prepare_training.py`` wrote, joined with features and parameters.

    Raises UserError when the folder is missing, or was prepared from other
    features than the dataset's (another dataset, or one generated again since
    the split: the splits and the scaler would not fit them).
    """
    dataset_dir = Path(dataset_dir)
    training_dir = Path(training_dir) if training_dir is not None else dataset_dir / TRAINING_DATA_DIR
    if not dataset_dir.is_dir():
        raise UserError(f"{dataset_dir} is a file, not a dataset folder" if dataset_dir.exists()
                        else f"dataset folder not found: {dataset_dir}")
    prepared = (TRAINING_RECORD_JSON, SPLITS_CSV)
    where = "" if training_dir == dataset_dir / TRAINING_DATA_DIR else f" -o {training_dir}"  # for the advice
    if all((dataset_dir / name).is_file() for name in prepared):
        raise UserError(f"{dataset_dir} is prepared training data, not a dataset: give its dataset and "
                        f"--training-data {dataset_dir}")
    if not (dataset_dir / PARAMETERS_CSV).is_file():
        raise UserError(f"{dataset_dir} is not a dataset ({PARAMETERS_CSV} not found)")
    if not all((training_dir / name).is_file() for name in prepared):
        if training_dir.exists() and not training_dir.is_dir():
            raise UserError(f"{training_dir} is a file, not prepared training data")
        if training_dir.is_dir() and any(training_dir.iterdir()):
            raise UserError(f"{training_dir} is not prepared training data ({' and '.join(prepared)} not found)")
        raise UserError(f"no prepared training data in {training_dir}; run prepare_training.py {dataset_dir}{where} "
                        "first")
    record = read_json(training_dir / TRAINING_RECORD_JSON, what="training-data record")
    if stale := stale_renders(dataset_dir):
        warn(stale)
    chromagrams, sample_id, parameters, feature_params = load_dataset_features(dataset_dir)
    if feature_params != record.get("features"):
        raise UserError(f"the features of {dataset_dir} changed since prepare_training.py ran; run it again")
    recorded = record.get("features_identity")  # absent from records written before it was kept
    if recorded is not None and recorded != features_identity(dataset_dir):
        raise UserError(f"the training data in {training_dir} was prepared from other features than those of "
                        f"{dataset_dir} (another dataset, or one generated again since); run "
                        f"prepare_training.py {dataset_dir}{where} --overwrite")
    try:
        splits = pd.read_csv(training_dir / SPLITS_CSV)
        missing = np.setdiff1d(sample_id, splits["sample_id"].to_numpy())
        if len(missing):
            raise UserError(f"{training_dir / SPLITS_CSV} has no split for {len(missing)} of the dataset's "
                            f"{len(sample_id)} clips (sample_id {missing[0]}, ...); run prepare_training.py "
                            f"{dataset_dir} --overwrite")
        split = splits.set_index("sample_id").loc[sample_id, "split"].to_numpy()
        class_names = list(record["class_names"])
        labels = target_labels(parameters, record["target"])
    except (OSError, ValueError, KeyError) as error:
        raise UserError(f"cannot read the training data in {training_dir}: {error}") from None
    unknown = sorted(set(labels) - set(class_names))
    if unknown:
        raise UserError(f"class {unknown[0]!r} of {dataset_dir} is not in {training_dir}; run prepare_training.py")
    strange = sorted(set(map(str, split)) - set(SPLITS))
    if strange or not (split == "train").any():
        raise UserError(f"{training_dir / SPLITS_CSV} " + (f"names a split {strange[0]!r} (not train, valid or test)"
                        if strange else "holds no training clips") + f"; run prepare_training.py {dataset_dir}"
                        f"{where} --overwrite")
    index = {name: i for i, name in enumerate(class_names)}
    return TrainingData(
        dataset_dir=dataset_dir,
        training_dir=training_dir,
        chromagrams=chromagrams,
        sample_id=sample_id,
        y=labels.map(index).to_numpy(dtype=np.int64),
        split=split.astype(str),
        parameters=parameters,
        class_names=class_names,
        scaler=ChromagramScaler.from_dict(record["scaler"]),
        feature_params=feature_params,
        record=record,
    )
