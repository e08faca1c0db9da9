"""A dataset's chromagrams on disk: the files, their record, and the loaders every later stage uses.

``extract_features.py`` (:mod:`feature_extraction`) turns every clip of a
dataset into one chromagram and writes ``DATASET/features/``::

    chromagrams.npz   chromagrams: float32 [shape=(N, 44, 115)] (time frames,
                      pitch bins), rows in parameters.csv order; sample_id [shape=(N,)]
      or, for a dataset too large to hold in memory (the "chunked" layout):
    chromagrams/      the same rows as a chunked array (:mod:`chunked_array`): one
                      .npy file per shard of clips, index.json; and sample_id.npy
    features.json     the layout, the extractor's parameters, N, a fingerprint
                      of the inputs, library versions, the time taken
    chromagrams.png   (with --plot) one example chromagram per family

Later stages read the features with :func:`load_features`, or joined with the
rows of ``parameters.csv`` with :func:`load_dataset_features`: an ndarray for
the npz, a lazy :class:`chunked_array.ChunkedArray` (``shape``, ``len``, row
reads) for the chunked layout.  They rebuild the very same extractor from the
saved parameters with :meth:`~features.ChromagramExtractor.from_params`, and
record :func:`features_identity` to tell the dataset they were made from.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from .chunked_array import ChunkedArray, file_sha256, index_sha256, open_chunked
from .cli import UserError, read_json
from .dataset import (CHROMAGRAMS_DIR, CHROMAGRAMS_NPZ, FEATURES_DIR, FEATURES_JSON, PARAMETERS_CSV,  # noqa: F401
                      PLOT_PNG, SingleToneDataset)
from .defaults import CLIP_SAMPLES
from .features import ALGORITHM_VERSION, ChromagramExtractor

SAMPLE_ID_NPY = "sample_id.npy"     # inside CHROMAGRAMS_DIR


def load_features(dataset_dir: str | os.PathLike, *, verify: bool = True
                  ) -> tuple[np.ndarray | ChunkedArray, np.ndarray, dict[str, Any]]:
    """Read what :func:`extract_dataset` wrote, in either layout.

    Returns
    -------
    chromagrams : [shape=(N, n_frames, n_bins), dtype=float32], rows in parameters.csv order: an
        np.ndarray (npz layout) or a :class:`chunked_array.ChunkedArray` (chunked layout), which
        reads rows on demand (``chromagrams[rows]``) and never holds them all.
    sample_id : np.ndarray [shape=(N,)]
    params : dict, the extractor's :meth:`~ChromagramExtractor.get_params`; rebuild it with
        ``ChromagramExtractor.from_params(params)``.

    Raises UserError when there are no features, they cannot be read, a file
    or chunk changed since it was written (checked by sha256 unless
    ``verify`` is False: reads every file once), or parameters.csv changed
    since they were extracted.
    """
    dataset_dir = Path(dataset_dir)
    features_dir = dataset_dir / FEATURES_DIR
    record_path = features_dir / FEATURES_JSON
    layout = _features_layout(features_dir)
    if layout is None or not record_path.is_file():
        raise UserError(f"{dataset_dir} has no features: run extract_features.py first")
    record = read_json(record_path, what="features record")
    if not (isinstance(record, dict) and isinstance(record.get("params"), dict)):
        raise UserError(f"{record_path} has no extractor parameters: run extract_features.py --overwrite")
    version = record.get("algorithm_version", 1)  # absent from the first records: version 1
    if version != ALGORITHM_VERSION:
        raise UserError(f"the features of {dataset_dir} were computed by version {version!r} of the chromagram "
                        f"algorithm, this code's is {ALGORITHM_VERSION}: run extract_features.py again")
    try:  # else a model trained on them would be saved that nothing can load
        extractor = ChromagramExtractor.from_params(record["params"])
    except UserError as error:
        raise UserError(f"{record_path}: {error}: run extract_features.py --overwrite") from None
    if layout == "npz":
        chromagrams, sample_id, source = _load_npz(features_dir, record, verify=verify)
    else:
        chromagrams, sample_id, source = _open_chunked_features(features_dir, record, verify=verify)
    if (chromagrams.ndim != 3 or len(chromagrams) != len(sample_id) or len(sample_id) != record.get("n_clips")
            or chromagrams.shape[1:] != (extractor.n_frames(CLIP_SAMPLES), extractor.n_bins)):
        raise UserError(f"{source} does not match {record_path}: run extract_features.py --overwrite")
    csv_path = dataset_dir / PARAMETERS_CSV
    if csv_path.is_file() and file_sha256(csv_path) != record.get("parameters_csv_sha256"):
        raise UserError(f"{csv_path} changed since the features were extracted: run extract_features.py again")
    return chromagrams, sample_id, record["params"]


def features_identity(dataset_dir: str | os.PathLike) -> str | None:
    """What a dataset's features are of: a hash of its parameters.csv (the sha256 features.json records),
    the extractor's parameters and the algorithm's version; None where there are no features.

    Later stages record it, to tell another dataset, or one generated again with other clips, from the
    one they were made from.  Features extracted again from the same clips keep it (the fingerprint,
    which decides whether to extract again, also counts the clips' file times: a copy changes those).
    """
    try:
        record = json.loads((Path(dataset_dir) / FEATURES_DIR / FEATURES_JSON).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not record.get("parameters_csv_sha256"):
        return None
    what = {key: record.get(key) for key in ("parameters_csv_sha256", "params")}
    what["algorithm_version"] = record.get("algorithm_version", 1)
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def _features_layout(features_dir: Path) -> str | None:
    """"chunked" where features/chromagrams/ is, else "npz" where the npz is, else None."""
    if (features_dir / CHROMAGRAMS_DIR).is_dir():
        return "chunked"
    return "npz" if (features_dir / CHROMAGRAMS_NPZ).is_file() else None


def _load_npz(features_dir: Path, record: dict, *, verify: bool) -> tuple[np.ndarray, np.ndarray, Path]:
    npz_path = features_dir / CHROMAGRAMS_NPZ
    recorded = record.get("chromagrams_sha256")
    if verify and recorded is not None and recorded != file_sha256(npz_path):
        raise UserError(f"{npz_path} changed since it was written: run extract_features.py --overwrite")
    try:
        with np.load(npz_path, allow_pickle=False) as npz:
            chromagrams, sample_id = npz["chromagrams"], npz["sample_id"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise UserError(f"cannot read {npz_path}: {error}") from None
    return chromagrams, sample_id, npz_path


def _open_chunked_features(features_dir: Path, record: dict, *, verify: bool
                           ) -> tuple[ChunkedArray, np.ndarray, Path]:
    folder = features_dir / CHROMAGRAMS_DIR
    chromagrams = open_chunked(folder, verify=verify, what="chunked features")
    ids_path = folder / SAMPLE_ID_NPY
    if verify and (index_sha256(folder) != record.get("chromagrams_sha256")
                   or not ids_path.is_file() or file_sha256(ids_path) != record.get("sample_id_sha256")):
        raise UserError(f"{folder} changed since it was written: run extract_features.py --overwrite")
    try:
        sample_id = np.load(ids_path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise UserError(f"cannot read {ids_path}: {error}") from None
    return chromagrams, sample_id, folder


class DatasetFeatures(NamedTuple):
    """A dataset's chromagrams joined with its parameters.csv (:func:`load_dataset_features`)."""

    chromagrams: np.ndarray | ChunkedArray  # [shape=(N, n_frames, n_bins)], float32; chunked: read on demand
    sample_id: np.ndarray     # [shape=(N,)]
    parameters: pd.DataFrame  # the rows of parameters.csv, in the order of ``chromagrams``
    params: dict[str, Any]    # the extractor's parameters


def load_dataset_features(dataset_dir: str | os.PathLike) -> DatasetFeatures:
    """Read a dataset's parameters.csv and features, rows aligned; UserError when they do not match."""
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise UserError(f"{dataset_dir} is a file, not a dataset folder" if dataset_dir.exists()
                        else f"dataset folder not found: {dataset_dir}")
    parameters = SingleToneDataset(dataset_dir).parameters
    chromagrams, sample_id, params = load_features(dataset_dir)
    by_id = parameters.set_index("sample_id", drop=False)
    missing = np.setdiff1d(sample_id, by_id.index.to_numpy())
    if len(missing) or len(sample_id) != len(parameters):
        raise UserError(f"the features of {dataset_dir} do not match its parameters.csv "
                        f"({len(sample_id)} feature rows, {len(parameters)} clips); re-run extract_features.py")
    return DatasetFeatures(chromagrams, np.asarray(sample_id), by_id.loc[sample_id].reset_index(drop=True), params)


def recorded_fingerprint(features_dir: Path) -> tuple[str | None, str | None]:
    """(fingerprint, layout) of complete, intact features, else (None, None).

    The npz must be the file that was written; every chunk of the chunked
    layout must have the sha256 its index records (read once, in blocks).
    """
    try:
        record = json.loads((features_dir / FEATURES_JSON).read_text())
        layout = _features_layout(features_dir)
        if not isinstance(record, dict) or layout is None or record.get("layout", "npz") != layout:
            return None, None
        if layout == "npz":
            written = record.get("chromagrams_sha256") == file_sha256(features_dir / CHROMAGRAMS_NPZ)
        else:
            _open_chunked_features(features_dir, record, verify=True)
            written = True
    except (OSError, ValueError, UserError):
        return None, None
    # else unreadable, altered, or from before the hash
    return (record.get("fingerprint"), layout) if written else (None, None)
