"""Classify real-world audio files with a trained model folder.

The models were trained on 2 s clips of 44.1 kHz mono audio with the note
starting at t = 0.  A file from elsewhere is turned into such a clip first:

1. **Read, downmix, resample, find the onset** and take ``CLIP_SECONDS``
   from there: :mod:`audio`, with bounded work per file whatever it holds.
2. **Extract** the chromagram with the extractor rebuilt from the parameters
   stored in the model folder, scale it with the stored scaler
   (:meth:`model_bundle.ModelBundle.to_model_input`) and run the network.

The chromagram is in absolute dB (0 = -120 dBFS, 1 = 0 dBFS), so the level of
a clip is part of its features (the default network hears levels relative to
the clip's peak, the single-font ``harmonic`` one absolute levels): a clip
whose peak lies more than ``LEVEL_MARGIN_DB`` outside the training clips' peak
levels (-40 to -3 dBFS for the default dataset, -35 to -10 dBFS for the
single-font one) is scaled to the nearest edge of that range, with a warning.
Nothing else is normalised.

>>> predictor = Predictor("data/working/single-notes-2000/models/<model_id>")
>>> samples, rate = audio.read_audio("note.wav")
>>> predictor.predict(samples, rate).label
'guitar'
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator

import numpy as np

from .audio import (MAX_DECODE_SAMPLES, MAX_READ_SECONDS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, AudioError, clip_window,
                    find_onset, peak_dbfs, read_mono, resample, to_full_scale, to_mono, tonal_fraction)
from .cli import UserError
from .defaults import CLIP_SECONDS, NOTE_SECONDS, PREDICT_BATCH_SIZE
from .metrics import read_final_metrics
from .model_bundle import load_model_dir
from .model_files import PREPROCESSING_JSON

# A clip whose peak is below this is silence (under one 16-bit step).
SILENCE_DBFS = -90.0
# Peak levels this far outside the training clips' range are scaled into it, with a warning.
LEVEL_MARGIN_DB = 6.0
# A window with less of its energy in partials than this is noise, not a note (audio.tonal_fraction:
# every one of 1900 varied training-style clips has 0.09 or more, a steady noise 0.00).
MIN_TONAL_FRACTION = 0.05


@dataclass
class Prediction:
    """The result for one clip.

    label : the most probable class
    probabilities : class name -> probability, in the model's class order
    warnings : one line each: what may make the label less reliable
    onset_seconds : where the 2 s window starts in the (resampled) file
    duration_seconds : length of the file (more than was read, for a long one)
    sample_rate : the file's own rate in Hz
    peak_dbfs : the window's peak level
    chromagram : the features the network saw [shape=(frames, bins)], unscaled
    """

    label: str
    probabilities: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    onset_seconds: float = 0.0
    duration_seconds: float = 0.0
    sample_rate: int = 0
    peak_dbfs: float = -math.inf
    chromagram: np.ndarray | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        """label, probabilities, warnings and the measurements, as JSON values."""
        return {
            "label": self.label,
            "probabilities": {name: round(p, 6) for name, p in self.probabilities.items()},
            "warnings": list(self.warnings),
            "onset_seconds": round(self.onset_seconds, 4),
            "duration_seconds": round(self.duration_seconds, 4),
            "sample_rate": self.sample_rate,
            "peak_dbfs": round(self.peak_dbfs, 2) if math.isfinite(self.peak_dbfs) else None,
        }


@dataclass
class PreparedClip:
    """A file turned into the model's input clip, before feature extraction."""

    window: np.ndarray  # [shape=(clip_samples,)] at the model's rate
    warnings: list[str]
    onset_seconds: float
    duration_seconds: float
    sample_rate: int
    peak_dbfs: float


class Predictor:
    """A model folder loaded once, classifying any number of clips.

    Parameters
    ----------
    model_dir : a folder written by ``train.py`` (model.keras,
        preprocessing.json, config.json).

    Attributes
    ----------
    bundle : :class:`model_bundle.ModelBundle`, the network, scaler and class names
    extractor : the chromagram extractor with the parameters stored in the folder
    model_id, class_names, sample_rate, clip_samples
    level_range_dbfs : (low, high) peak levels of the training clips, or None

    Thread-safe: feature extraction runs in the caller's thread, the network
    call is serialised by a lock.
    """

    def __init__(self, model_dir: str | os.PathLike):
        self.bundle = load_model_dir(model_dir)
        self.model_dir = self.bundle.model_dir
        self.extractor = self.bundle.extractor()  # its parameters checked by load_model_dir
        self.level_range_dbfs = self.bundle.level_range_dbfs
        self.class_names = list(self.bundle.class_names)
        self.model_id = str(self.bundle.config.get("model_id") or Path(self.model_dir).name)
        self.sample_rate = int(self.extractor.sample_rate)
        self.clip_samples = round(CLIP_SECONDS * self.sample_rate)
        self._check_input_shape()
        self._lock = threading.Lock()
        # The first call builds the graph; do it now so no request pays for it.
        self._run_network(np.zeros((1, self.clip_samples), dtype=np.float32))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.model_dir)!r})"

    def _check_input_shape(self) -> None:
        """UserError unless the stored feature parameters give the network's input."""
        where = Path(self.model_dir) / PREPROCESSING_JSON
        shape = (self.extractor.n_frames(self.clip_samples), self.extractor.n_bins)
        expected = tuple(self.bundle.model.input_shape[1:3])
        if shape != expected:
            raise UserError(f"invalid {where}: its feature parameters give chromagrams of shape {shape}, "
                            f"the network takes {expected}")

    # -- one clip --------------------------------------------------------------

    def prepare(self, samples: np.ndarray, sample_rate: int, *, file_seconds: float | None = None) -> PreparedClip:
        """Downmix, resample, place the 2 s window at the onset; collect warnings.

        Parameters
        ----------
        samples : np.ndarray [shape=(n,) or (n, channels)], float audio, full scale +-1
            (any finite values are accepted)
        sample_rate : int, Hz
        file_seconds : the length of the whole file, where ``samples`` are only
            its beginning (:attr:`DecodedAudio.file_seconds`)
        """
        if not (isinstance(sample_rate, (int, np.integer)) and MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE):
            raise AudioError(f"unsupported sample rate {sample_rate!r} (use {MIN_SAMPLE_RATE} to "
                             f"{MAX_SAMPLE_RATE} Hz)", kind="unsupported")
        mono = to_mono(samples)
        if mono.size == 0:
            raise AudioError("no audio samples", kind="empty")
        if not np.isfinite(mono).all():
            raise AudioError("samples are not finite numbers (NaN or inf)", kind="unreadable")
        read_seconds = len(mono) / sample_rate
        duration = max(read_seconds, file_seconds or 0.0)
        mono, gain_db = to_full_scale(mono)
        mono = resample(mono, int(sample_rate), self.sample_rate)
        onset = find_onset(mono, self.sample_rate)
        window = clip_window(mono, onset, self.clip_samples)
        window_level = peak_dbfs(window)
        level = window_level + gain_db  # the clip's own level, before to_full_scale
        warnings = []
        if not level > SILENCE_DBFS:
            if duration > read_seconds:
                warnings.append(f"silent clip: no note in the first {read_seconds:.1f} s of {duration:.1f} s "
                                f"(a file is read only that far), the label means nothing")
            else:
                warnings.append("silent clip: there is no note to classify, the label means nothing")
        else:
            tonal = tonal_fraction(window, self.sample_rate)
            if tonal < MIN_TONAL_FRACTION:
                warnings.append(f"no clear note: the clip sounds like noise ({tonal:.0%} of its energy in "
                                f"partials), the label may mean nothing")
            remaining = (len(mono) - onset) / self.sample_rate
            if remaining < NOTE_SECONDS:
                warnings.append(f"short clip: {remaining:.2f} s from the onset, padded with silence "
                                f"to {CLIP_SECONDS:g} s")
            if self.level_range_dbfs is not None:
                low, high = self.level_range_dbfs
                if not low - LEVEL_MARGIN_DB <= level <= high + LEVEL_MARGIN_DB:
                    # The features are absolute levels: bring the clip into the range the model heard.
                    target = min(max(level, low), high)
                    window = window * np.float32(10 ** ((target - window_level) / 20))
                    warnings.append(f"peak level {level:.1f} dBFS is outside the training clips' "
                                    f"{low:.0f} to {high:.0f} dBFS: scaled to {target:.0f} dBFS")
        if sample_rate < self.sample_rate:
            warnings.append(f"sample rate {sample_rate} Hz is below the model's {self.sample_rate} Hz: "
                            f"nothing above {sample_rate / 2000:.1f} kHz, the label may be less reliable")
        return PreparedClip(window=window, warnings=warnings, onset_seconds=onset / self.sample_rate,
                            duration_seconds=duration, sample_rate=int(sample_rate), peak_dbfs=level)

    def predict(self, samples: np.ndarray, sample_rate: int) -> Prediction:
        """Classify one clip of any length, rate and channel count.

        Parameters
        ----------
        samples : np.ndarray [shape=(n,) or (n, channels)], float audio, full scale +-1
        sample_rate : int, Hz

        Returns
        -------
        :class:`Prediction`
        """
        return self.predict_prepared([self.prepare(samples, sample_rate)])[0]

    def prepare_file(self, source: str | os.PathLike | BinaryIO | bytes, *, name: str | None = None,
                     max_seconds: float = MAX_READ_SECONDS, max_samples: int = MAX_DECODE_SAMPLES) -> PreparedClip:
        """Read the beginning of one file (:func:`read_mono`) and :meth:`prepare` it; AudioError if unreadable."""
        audio = read_mono(source, name=name, max_seconds=max_seconds, max_samples=max_samples)
        return self.prepare(audio.samples, audio.sample_rate, file_seconds=audio.file_seconds)

    def predict_file(self, source: str | os.PathLike | BinaryIO | bytes, *, name: str | None = None,
                     max_seconds: float = MAX_READ_SECONDS, max_samples: int = MAX_DECODE_SAMPLES) -> Prediction:
        """Read and classify one file (a path, file object or bytes); AudioError if unreadable.

        At most ``max_seconds`` and ``max_samples`` samples x channels are read.
        """
        clip = self.prepare_file(source, name=name, max_seconds=max_seconds, max_samples=max_samples)
        return self.predict_prepared([clip])[0]

    # -- many clips ------------------------------------------------------------

    def predict_prepared(self, clips: list[PreparedClip], *, jobs: int | None = 1) -> list[Prediction]:
        """Classify prepared clips in one batch (features on ``jobs`` threads)."""
        if not clips:
            return []
        windows = np.stack([clip.window for clip in clips])              # (n, clip_samples)
        chromagrams, proba = self._run_network(windows, jobs=jobs)       # (n, frames, bins), (n, classes)
        results = []
        for clip, chromagram, row in zip(clips, chromagrams, proba):
            results.append(Prediction(
                label=self.class_names[int(np.argmax(row))],
                probabilities={name: float(p) for name, p in zip(self.class_names, row)},
                warnings=clip.warnings, onset_seconds=clip.onset_seconds,
                duration_seconds=clip.duration_seconds, sample_rate=clip.sample_rate,
                peak_dbfs=clip.peak_dbfs, chromagram=chromagram))
        return results

    def predict_files(self, paths: Iterable[str | os.PathLike], *, batch_size: int = PREDICT_BATCH_SIZE,
                      jobs: int | None = None) -> Iterator[tuple[str, Prediction | AudioError]]:
        """Classify files in batches, yielding ``(path, Prediction or AudioError)`` in order.

        Files are decoded and prepared on ``jobs`` threads (libsndfile, soxr
        and numpy release the GIL); a bad file yields its error and the others
        go on.
        """
        paths = [str(path) for path in paths]
        with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
            for first in range(0, len(paths), batch_size):
                chunk = paths[first:first + batch_size]
                prepared = list(pool.map(self._prepare_file, chunk))
                good = [item for item in prepared if isinstance(item, PreparedClip)]
                predictions = iter(self.predict_prepared(good, jobs=jobs))
                for path, item in zip(chunk, prepared):
                    yield path, (next(predictions) if isinstance(item, PreparedClip) else item)

    def _prepare_file(self, path: str) -> PreparedClip | AudioError:
        try:
            return self.prepare_file(path)
        except AudioError as error:
            return error
        except (UserError, ValueError, MemoryError) as error:  # one bad file must not stop the others
            return AudioError(f"{path}: cannot classify: {error or type(error).__name__}", kind="unreadable")

    # -- the network -----------------------------------------------------------

    def _run_network(self, windows: np.ndarray, *, jobs: int | None = 1) -> tuple[np.ndarray, np.ndarray]:
        """Chromagrams (n, frames, bins) and class probabilities (n, classes) of windows (n, samples)."""
        chromagrams = self.extractor.transform(windows, jobs=jobs)
        x = self.bundle.to_model_input(chromagrams)                     # (n, frames, bins, 1), scaled
        with self._lock:
            # predict_on_batch runs a compiled function: ~9 ms for one clip, where
            # model(x) in eager mode takes ~35 ms and model.predict more still.
            proba = self.bundle.model.predict_on_batch(x)
        return chromagrams, np.asarray(proba, dtype=np.float64)

    # -- description -----------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """The loaded model for people and the web API: id, classes, metrics, date, settings."""
        config = self.bundle.config
        return {
            "model_id": self.model_id,
            "model_dir": str(self.model_dir),
            "classes": self.class_names,
            "target": self.bundle.target,
            "arch": config.get("arch"),
            "created": config.get("created"),
            "dataset": config.get("dataset_name") or config.get("dataset"),
            "metrics": read_final_metrics(self.model_dir),
            "sample_rate": self.sample_rate,
            "clip_seconds": CLIP_SECONDS,
            "features": self.extractor.get_params(),
            "level_range_dbfs": list(self.level_range_dbfs) if self.level_range_dbfs else None,
        }
