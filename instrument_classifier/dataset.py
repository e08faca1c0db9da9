"""Load a generated dataset: ``parameters.csv`` plus one audio clip per row.

A dataset folder (written by ``generate_audio_samples.py``)::

    DATASET/parameters.csv        one row per clip (sample_id, instrument_id,
                                  midi_program, instrument_name, family_name,
                                  midi_number, volume, velocity, duration, the
                                  variation's drawn values (README, Stage 1),
                                  soundfont, lineage, bank, peak_dbfs, redraws,
                                  audio_file, midi_file)
    DATASET/audio/sample_000000.flac ...
    DATASET/midi/sample_000000.mid ...
    DATASET/generation.json       the run record

and what the later stages write beside them (named here, in the module of
the dataset folder, which each of them imports)::

    DATASET/features/             extract_features.py (feature_store)
    DATASET/training-data/        prepare_training.py (training_data; -o names others)
    DATASET/models/<model_id>/    train.py (model_files)

>>> dataset = SingleToneDataset("data/working/single-notes-2000")
>>> dataset.samples.shape
(2000, 88200)
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from .cli import UserError
from .defaults import CLIP_SAMPLES, SAMPLE_RATE

PARAMETERS_CSV = "parameters.csv"
RUN_RECORD = "generation.json"
# How the generator renders, recorded in generation.json ("renderer"): 2, every note from a settled synth
# (synthesis.py, *Determinism*); a record without it was written before, when each SoundFont clip but a shard's
# first of its font held the release of the note rendered before it (README, Stage 1).
RENDERER_VERSION = 2
# The later stages' files in a dataset folder (the stages take the names from here).
FEATURES_DIR = "features"
FEATURES_JSON = "features.json"
CHROMAGRAMS_NPZ = "chromagrams.npz"
CHROMAGRAMS_DIR = "chromagrams"     # the chunked layout
PLOT_PNG = "chromagrams.png"
TRAINING_DATA_DIR = "training-data"
SPLITS_CSV = "splits.csv"
TRAINING_RECORD_JSON = "preprocessing.json"  # not the model folder's file of that name (model_files)
REQUIRED_COLUMNS = ("sample_id", "family_name", "midi_number", "audio_file")
# Whole-number columns later stages compute with, and their ranges (None: unbounded), where present.
INTEGER_COLUMNS = {"sample_id": (0, None), "midi_number": (0, 127), "instrument_id": (1, 128)}


def stale_renders(path: str | os.PathLike) -> str | None:
    """Why the clips of the dataset at ``path`` should be generated again, or None (also without a run record)."""
    try:
        record = json.loads((Path(path) / RUN_RECORD).read_text())
        fonts = [font.get("path", "") for font in record["settings"]["soundfonts"]]
        stale = record.get("renderer", 1) < RENDERER_VERSION and any(not p.startswith("builtin:") for p in fonts)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # a dataset made otherwise: nothing to tell
    return (f"{path} was generated before each note was rendered from a settled synth: its SoundFont clips hold the "
            "release of the note rendered before them; generate it again (--overwrite)") if stale else None


def open_error(source) -> str | None:
    """Why the file ``source`` cannot be opened ("Permission denied", ...), or None (also for bytes and streams).

    libsndfile opens a path itself and says only "System error." when the system refused it.
    """
    if not isinstance(source, (str, os.PathLike)):
        return None
    try:
        open(source, "rb").close()
    except OSError as error:
        return error.strerror or str(error)
    return None


def soundfile_path(path: str | os.PathLike) -> bytes:
    """``path`` as soundfile should be given it: bytes.

    soundfile encodes a str path as strict UTF-8, so a file name that is not
    UTF-8 (Linux allows any bytes; Python holds them as surrogates) failed to
    open or be written ("surrogates not allowed").
    """
    return os.fsencode(path)


def read_clip(path: str | os.PathLike, *, sample_rate: int = SAMPLE_RATE, length: int = CLIP_SAMPLES) -> np.ndarray:
    """Read one dataset clip as float32 of shape (length,), checking rate, length and that every sample is finite."""
    try:
        audio, rate = sf.read(soundfile_path(path), dtype="float32", always_2d=False)
    except (OSError, RuntimeError, sf.LibsndfileError) as error:
        raise UserError(f"cannot read audio clip {path}: {open_error(path) or error}") from None
    if rate != sample_rate:
        raise UserError(f"clip {path} has sample rate {rate} Hz, expected {sample_rate} Hz")
    if audio.ndim != 1:
        raise UserError(f"clip {path} has {audio.shape[1]} channels, expected mono")
    if len(audio) != length:
        raise UserError(f"clip {path} has {len(audio)} samples, expected {length}")
    if not np.isfinite(audio).all():  # a float file can hold them; no chromagram can
        raise UserError(f"clip {path} holds NaN or infinite samples")
    return audio


def read_clips(paths: list[Path], *, sample_rate: int = SAMPLE_RATE, length: int = CLIP_SAMPLES,
               jobs: int | None = None) -> np.ndarray:
    """Read many clips into one (len(paths), length) float32 array.

    Decoding runs in threads: libsndfile releases the GIL, so this scales with
    cores without copying arrays between processes.
    """
    out = np.empty((len(paths), length), dtype=np.float32)

    def load(index: int) -> None:
        out[index] = read_clip(paths[index], sample_rate=sample_rate, length=length)

    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        try:
            list(pool.map(load, range(len(paths))))
        except BaseException:  # a bad clip, Ctrl-C: stop without reading the rest first
            pool.shutdown(cancel_futures=True)
            raise
    return out


class SingleToneDataset:
    """A dataset folder of single-note clips.

    Parameters
    ----------
    path : folder holding ``parameters.csv`` and the clips it names.

    Attributes
    ----------
    parameters : DataFrame, one row per clip, in the file's order (``sample_id`` order as generated).
    audio_paths : list of absolute clip paths, in row order.
    samples : float32 array [shape=(N, 88200)], decoded on first access.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        csv_path = self.path / PARAMETERS_CSV
        if not csv_path.is_file():
            if self.path.is_file():
                raise UserError(f"{self.path} is a file: give the dataset folder that holds {PARAMETERS_CSV}")
            raise UserError(f"{self.path} is not a dataset: {PARAMETERS_CSV} not found")
        try:
            parameters = pd.read_csv(csv_path)
        except (OSError, ValueError) as error:
            raise UserError(f"cannot read {csv_path}: {error}") from None
        missing = [c for c in REQUIRED_COLUMNS if c not in parameters.columns]
        if missing:
            raise UserError(f"{csv_path} lacks columns: {', '.join(missing)}")
        for column in REQUIRED_COLUMNS:
            blank = parameters.index[parameters[column].isna()]
            if len(blank):
                more = f" (nor do {len(blank) - 1} more rows)" if len(blank) > 1 else ""
                raise UserError(f"{csv_path}: line {blank[0] + 2} has no {column}{more}")
        for column, (low, high) in INTEGER_COLUMNS.items():
            if column not in parameters.columns:
                continue
            values = pd.to_numeric(parameters[column], errors="coerce")
            bad = values.isna() | (values % 1 != 0) | (values < low) | ((values > high) if high is not None else False)
            if bad.any():
                first = int(np.flatnonzero(bad.to_numpy())[0])
                allowed = f"{low}..{high}" if high is not None else f"at least {low}"
                raise UserError(f"{csv_path}: line {first + 2} has {column} {parameters[column].iloc[first]}, "
                                f"not a whole number {allowed}")
            parameters[column] = values.astype(np.int64)
        repeated = parameters["sample_id"][parameters["sample_id"].duplicated()]
        if len(repeated):
            raise UserError(f"{csv_path}: sample_id {repeated.iloc[0]} appears more than once "
                            f"({len(repeated)} repeated rows)")
        self.parameters = parameters
        self.audio_paths = [self.path / name for name in parameters["audio_file"]]

    def __len__(self) -> int:
        return len(self.parameters)

    @cached_property
    def samples(self) -> np.ndarray:
        return read_clips(self.audio_paths)
