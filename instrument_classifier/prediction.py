"""Classify real-world audio files with a trained model folder.

The models were trained on 2 s clips of 44.1 kHz mono audio with the note
starting at t = 0.  A file from elsewhere is turned into such a clip first:

1. **Read** any format libsndfile decodes (WAV, FLAC, OGG/Vorbis, MP3, AIFF,
   ...) from a path or an in-memory upload, in blocks, at most
   ``max_samples`` samples x channels (:func:`read_mono`): the work per file
   is bounded whatever its length, rate and channel count.
2. **Downmix** to mono as the mean of the channels (as the synthesiser does),
   block by block, in float64 (finite samples stay finite).
3. **Resample** to the model's rate with soxr (its "HQ" quality); a float file
   that peaks above full scale is brought to 0 dBFS first, so that no finite
   sample can overflow.
4. **Find the onset** of the first note (:func:`find_onset`) and take
   ``CLIP_SECONDS`` from there, padding with zeros when the file is shorter.
5. **Extract** the chromagram with the extractor rebuilt from the parameters
   stored in the model folder, scale it with the stored scaler
   (:meth:`model_bundle.ModelBundle.to_model_input`) and run the network.

The chromagram is in absolute dB (0 = -120 dBFS, 1 = 0 dBFS), so the level of
a clip is part of its features: a clip whose peak lies more than
``LEVEL_MARGIN_DB`` outside the training clips' peak levels (a file normalised
to 0 dBFS, say, where the clips peak near -19 dBFS) is scaled to the nearest
edge of that range, with a warning.  Nothing else is normalised.

>>> predictor = Predictor("data/working/single-notes-2000/models/<model_id>")
>>> samples, rate = read_audio("note.wav")
>>> predictor.predict(samples, rate).label
'guitar'
"""

from __future__ import annotations

import io
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator

import numpy as np
import soundfile as sf
import soxr

from .cli import UserError
from .defaults import CLIP_SECONDS, NOTE_SECONDS, PREDICT_BATCH_SIZE
from .metrics import read_final_metrics
from .model_bundle import load_model_dir

# Onset detection works on the mean power over short windows of this length.
ONSET_WINDOW_SECONDS = 0.005
# The note has begun once a window reaches this level below the loudest window.
ONSET_THRESHOLD_DB = -40.0
# ... and this far above the noise floor.
ONSET_ABOVE_NOISE_DB = 12.0
# Before that point, the last window this far below the loudest (or 3 dB above
# the file's noise floor, if that is higher) is the silence the note rose from.
QUIET_THRESHOLD_DB = -70.0
# ... searched for at most this far back; without one, start this much earlier.
ONSET_LOOKBACK_SECONDS = 0.2
ONSET_PREROLL_SECONDS = 0.005
# An onset this close to the start means the file starts with the note, as the
# training clips do: keep it from sample 0.
START_TOLERANCE_SECONDS = 0.01
# A clip whose peak is below this is silence (under one 16-bit step).
SILENCE_DBFS = -90.0
# Files longer than this are read only this far (the note must start before).
MAX_READ_SECONDS = 600.0
# ... and at most this many samples x channels are decoded per file (10 minutes
# of 48 kHz stereo): a small FLAC of digital silence can hold hours of
# 8-channel audio at 655 kHz, so the length alone does not bound the work.
MAX_DECODE_SAMPLES = 600 * 48_000 * 2
# Samples x channels decoded per read: 8 MB of float64 at most in flight.
DECODE_BLOCK_SAMPLES = 1 << 20
# Peak levels this far outside the training clips' range are scaled into it, with a warning.
LEVEL_MARGIN_DB = 6.0

# File extensions of the formats libsndfile can read, by its format name.
_FORMAT_EXTENSIONS = {
    "WAV": (".wav", ".wave"), "WAVEX": (".wav",), "FLAC": (".flac",), "OGG": (".ogg", ".oga", ".opus"),
    "MP3": (".mp3",), "AIFF": (".aif", ".aiff", ".aifc"), "AU": (".au", ".snd"), "CAF": (".caf",),
    "W64": (".w64",), "RF64": (".rf64",),
}
SUPPORTED_EXTENSIONS = tuple(sorted({ext for name, exts in _FORMAT_EXTENSIONS.items()
                                     if name in sf.available_formats() for ext in exts}))
READABLE_FORMATS = ", ".join(name for name in ("WAV", "FLAC", "OGG", "MP3", "AIFF")
                             if name in sf.available_formats())
# Sample rates outside this range are refused (resampling 1 Hz audio would
# blow a short file up to gigabytes).
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 768_000


class AudioError(UserError):
    """A file that cannot be classified; ``kind`` says why.

    kind : "missing" (no such file), "empty" (no samples), "unsupported" (not a
        format we read), "unreadable" (corrupt, or not audio at all).
    """

    def __init__(self, message: str, *, kind: str):
        super().__init__(message)
        self.kind = kind


# ---------------------------------------------------------------------------
# Reading and shaping audio


@dataclass
class DecodedAudio:
    """The beginning of an audio file, as :func:`read_mono` / :func:`read_audio` read it.

    samples : np.ndarray [shape=(n,)] mono or [shape=(n, channels)], float32
        (float64 for 64-bit float files, whose finite samples may not fit float32)
    sample_rate : int, Hz
    channels : int, the file's channel count
    file_seconds : float, the length of the whole file; more than was read
        when the file goes on past ``max_seconds`` / ``max_samples``
    """

    samples: np.ndarray
    sample_rate: int
    channels: int
    file_seconds: float

    @property
    def read_seconds(self) -> float:
        return len(self.samples) / self.sample_rate

    @property
    def truncated(self) -> bool:
        """Whether the file goes on after what was read."""
        return self.file_seconds > self.read_seconds


def read_audio(source: str | os.PathLike | BinaryIO | bytes, *, name: str | None = None,
               max_seconds: float = MAX_READ_SECONDS, max_samples: int = MAX_DECODE_SAMPLES
               ) -> tuple[np.ndarray, int]:
    """Decode the beginning of an audio file, every channel kept.

    Parameters
    ----------
    source : a path, a seekable binary file object, or the file's bytes.
    name : what to call it in messages (default: the path); its extension
        tells an unsupported format from a corrupt file.
    max_seconds : read at most this much (the first note must start before).
    max_samples : and at most this many samples x channels.

    Returns
    -------
    samples : np.ndarray [shape=(n, channels), dtype=float32 (float64 for 64-bit float files)], n >= 1
    sample_rate : int, Hz

    Raises AudioError (a UserError) for a missing, empty, unsupported or
    unreadable file, or samples that are not finite.
    """
    audio = _decode(source, name=name, max_seconds=max_seconds, max_samples=max_samples, mono=False)
    return audio.samples, audio.sample_rate


def read_mono(source: str | os.PathLike | BinaryIO | bytes, *, name: str | None = None,
              max_seconds: float = MAX_READ_SECONDS, max_samples: int = MAX_DECODE_SAMPLES) -> DecodedAudio:
    """Decode the beginning of an audio file as mono, downmixing block by block.

    The parameters and errors are :func:`read_audio`'s.  At most
    ``min(max_seconds * rate, max_samples / channels)`` frames are decoded,
    :data:`DECODE_BLOCK_SAMPLES` at a time, so memory and time are bounded by
    ``max_samples`` whatever the file holds.
    """
    return _decode(source, name=name, max_seconds=max_seconds, max_samples=max_samples, mono=True)


def _decode(source: str | os.PathLike | BinaryIO | bytes, *, name: str | None, max_seconds: float,
            max_samples: int, mono: bool) -> DecodedAudio:
    source, name = _checked_source(source, name)
    suffix = Path(str(name)).suffix.lower()
    try:
        with sf.SoundFile(source) as audio:
            rate, channels, frames = int(audio.samplerate), int(audio.channels), int(audio.frames)
            if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
                raise AudioError(f"{name}: unsupported sample rate {rate} Hz (use {MIN_SAMPLE_RATE} to "
                                 f"{MAX_SAMPLE_RATE} Hz)", kind="unsupported")
            dtype = np.float64 if audio.subtype == "DOUBLE" else np.float32
            limit = max(1, min(int(max_seconds * rate), max_samples // max(channels, 1)))
            blocks = _read_blocks(audio, limit=limit, dtype=dtype, mono=mono, name=name)
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, EOFError) as error:
        reason = str(error).split(":")[-1].strip() or type(error).__name__
        if suffix and suffix not in SUPPORTED_EXTENSIONS:
            raise AudioError(f"{name}: unsupported file type {suffix} (use {READABLE_FORMATS})",
                             kind="unsupported") from None
        raise AudioError(f"{name}: not an audio file or corrupt ({reason})", kind="unreadable") from None
    except OSError as error:
        raise AudioError(f"{name}: cannot read: {error.strerror or error}", kind="unreadable") from None
    read = sum(len(block) for block in blocks)
    if read == 0:
        raise AudioError(f"{name}: no audio samples", kind="empty")
    samples = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
    # The header's length where reading stopped at the limit, else what there was.
    file_frames = frames if read >= limit and frames > read else read
    return DecodedAudio(samples=samples, sample_rate=rate, channels=channels, file_seconds=file_frames / rate)


def _read_blocks(audio: sf.SoundFile, *, limit: int, dtype: Any, mono: bool, name: str) -> list[np.ndarray]:
    """Up to ``limit`` frames of an open file, in blocks; each block downmixed when ``mono``."""
    step = max(1, DECODE_BLOCK_SAMPLES // max(audio.channels, 1))
    blocks, read = [], 0
    while read < limit:
        block = audio.read(min(step, limit - read), dtype=dtype, always_2d=True)  # (frames, channels)
        if not len(block):
            break
        if not np.isfinite(block).all():
            raise AudioError(f"{name}: samples are not finite numbers (NaN or inf)", kind="unreadable")
        blocks.append(to_mono(block) if mono else block)
        read += len(block)
    return blocks


def _checked_source(source: str | os.PathLike | BinaryIO | bytes, name: str | None
                    ) -> tuple[str | BinaryIO, str]:
    """(what soundfile opens, the name for messages); AudioError for a missing or empty file."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = _Upload(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        name = name or str(path)
        if not path.exists():
            raise AudioError(f"{name}: file not found", kind="missing")
        if not path.is_file():
            raise AudioError(f"{name}: not a file", kind="missing")
        if path.stat().st_size == 0:
            raise AudioError(f"{name}: empty file", kind="empty")
        return str(path), name
    name = name or getattr(source, "name", None) or "upload"
    if _stream_size(source) == 0:
        raise AudioError(f"{name}: empty file", kind="empty")
    return source, name


class _Upload(io.BytesIO):
    """A file's bytes for libsndfile's virtual I/O.

    A corrupt header can make libsndfile seek before the start; BytesIO raises
    inside soundfile's callback, which prints a traceback to stderr and answers
    position 0.  Answer 0 without the traceback.
    """

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return super().seek(max(offset, 0) if whence == io.SEEK_SET else offset, whence)


def _stream_size(stream: BinaryIO) -> int | None:
    try:
        position = stream.tell()
        size = stream.seek(0, io.SEEK_END) - position
        stream.seek(position)
        return size
    except (AttributeError, OSError, ValueError):
        return None


def to_mono(samples: np.ndarray) -> np.ndarray:
    """[shape=(n,) or (n, channels)] -> [shape=(n,)], the mean of the channels.

    Summed in float64, so finite samples give a finite mean; float32 out,
    float64 for float64 input.
    """
    samples = np.asarray(samples)
    dtype = np.float64 if samples.dtype == np.float64 else np.float32
    samples = samples.astype(dtype, copy=False)
    if samples.ndim == 1:
        return samples
    if samples.ndim != 2:
        raise ValueError(f"samples must have shape (n,) or (n, channels), got {samples.shape}")
    if samples.shape[1] == 1:
        return samples[:, 0].copy()
    return samples.mean(axis=1, dtype=np.float64).astype(dtype, copy=False)


def to_full_scale(samples: np.ndarray) -> tuple[np.ndarray, float]:
    """Mono float32 audio no louder than 0 dBFS, and the gain in dB taken off to get there.

    A float file may hold any finite value (a peak of 1e37, say); resampling
    and the features work in float32 and would overflow, so a clip that peaks
    above full scale is scaled to peak at 1 (in float64), and the level is
    accounted for by the returned gain.  Anything else passes unchanged (gain 0).
    """
    peak = float(np.max(np.abs(samples), initial=0.0))
    if peak <= 1.0:
        return samples.astype(np.float32, copy=False), 0.0
    return (samples.astype(np.float64) / peak).astype(np.float32), 20 * math.log10(peak)


def resample(samples: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """Mono float32 audio from ``rate`` to ``target_rate`` Hz with soxr (unchanged if equal)."""
    if rate == target_rate:
        return samples
    return soxr.resample(samples, rate, target_rate, quality="HQ").astype(np.float32, copy=False)


def find_onset(samples: np.ndarray, sample_rate: int) -> int:
    """Sample index where the first note starts, 0 for a silent clip.

    The mean power over windows of ``ONSET_WINDOW_SECONDS`` locates the first
    window within ``ONSET_THRESHOLD_DB`` of the loudest one (and
    ``ONSET_ABOVE_NOISE_DB`` above the noise floor, the quietest tenth of the
    windows); the note rose
    from the last quiet window before it (``QUIET_THRESHOLD_DB`` below the
    loudest, or 3 dB above the noise floor) and starts at that window's first
    sample above the noise.  Without a quiet window in ``ONSET_LOOKBACK_SECONDS`` (a noisy
    recording) the onset is ``ONSET_PREROLL_SECONDS`` before the loud window.
    An onset within ``START_TOLERANCE_SECONDS`` of the start is 0: the clip
    already starts with its note, as the training clips do.

    Padding a clip with digital silence shifts its onset by exactly the padding.

    Parameters
    ----------
    samples : np.ndarray [shape=(n,)], mono audio
    sample_rate : int, Hz
    """
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise ValueError(f"samples must be mono [shape=(n,)], got {samples.shape}")
    width = max(1, min(len(samples), round(ONSET_WINDOW_SECONDS * sample_rate)))
    power = np.concatenate([[0.0], np.cumsum(np.square(samples, dtype=np.float64))])
    envelope = (power[width:] - power[:-width]) / width  # mean power of samples[i : i + width]
    loudest = envelope.max(initial=0.0)
    if not loudest > 0:
        return 0
    # The noise floor: the quietest tenth of the windows, of the whole file or
    # of the part before the loudest window, whichever is quieter (a file that
    # is mostly note has no quiet tenth, a file with a long quiet tail after a
    # noisy lead-in too quiet a one).
    # Every 16th window is plenty for a percentile (and 16 times cheaper).
    loudest_at = int(np.argmax(envelope))
    noise_floor = float(min(np.percentile(envelope[::16], 10), np.percentile(envelope[:loudest_at + 1:16], 10)))
    loud = max(loudest * 10 ** (ONSET_THRESHOLD_DB / 10), noise_floor * 10 ** (ONSET_ABOVE_NOISE_DB / 10))
    crossing = int(np.argmax(envelope >= loud))
    quiet = min(max(loudest * 10 ** (QUIET_THRESHOLD_DB / 10), 2 * noise_floor), loud / 4)
    first = max(0, crossing - round(ONSET_LOOKBACK_SECONDS * sample_rate))
    quiet_windows = np.flatnonzero(envelope[first:crossing + 1] <= quiet)
    if len(quiet_windows):
        # The note began inside the last quiet window: at its first sample above
        # the noise (exactly the first non-zero sample after digital silence).
        last_quiet = first + int(quiet_windows[-1])
        above = np.flatnonzero(np.abs(samples[last_quiet:last_quiet + width + 1]) > 2 * math.sqrt(noise_floor))
        onset = last_quiet + (int(above[0]) if len(above) else width)
    else:
        onset = crossing - round(ONSET_PREROLL_SECONDS * sample_rate)
    onset = min(max(onset, 0), len(samples) - 1)
    return 0 if onset <= START_TOLERANCE_SECONDS * sample_rate else onset


def clip_window(samples: np.ndarray, start: int, length: int) -> np.ndarray:
    """``samples[start : start + length]``, zero-padded at the end to ``length`` (float32)."""
    window = np.zeros(length, dtype=np.float32)
    part = samples[start:start + length]
    window[:len(part)] = part
    return window


def peak_dbfs(samples: np.ndarray) -> float:
    """Peak level in dB relative to full scale; -inf for digital silence."""
    peak = float(np.max(np.abs(samples), initial=0.0))
    return 20 * math.log10(peak) if peak > 0 else -math.inf


# ---------------------------------------------------------------------------
# Prediction


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
        self.extractor = self.bundle.extractor()
        self.class_names = list(self.bundle.class_names)
        self.model_id = str(self.bundle.config.get("model_id") or Path(self.model_dir).name)
        self.sample_rate = int(self.extractor.sample_rate)
        self.clip_samples = round(CLIP_SECONDS * self.sample_rate)
        self._check_extractor()
        self.level_range_dbfs = _training_level_range(self.bundle.preprocessing, self.model_dir)
        self._lock = threading.Lock()
        # The first call builds the graph; do it now so no request pays for it.
        self._run_network(np.zeros((1, self.clip_samples), dtype=np.float32))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.model_dir)!r})"

    def _check_extractor(self) -> None:
        """UserError unless the stored feature parameters give the network's input, at a sane cost.

        Checked before the first clip is made: a damaged preprocessing.json
        (a sample rate of 1e12, say) would otherwise allocate terabytes.
        """
        where = Path(self.model_dir) / "preprocessing.json"
        if not MIN_SAMPLE_RATE <= self.sample_rate <= MAX_SAMPLE_RATE:
            raise UserError(f"invalid {where}: feature sample_rate {self.sample_rate} Hz is outside "
                            f"{MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz")
        if self.extractor.block_size > self.clip_samples:
            raise UserError(f"invalid {where}: feature block_size {self.extractor.block_size} is longer than "
                            f"the {CLIP_SECONDS:g} s clip")
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


def _training_level_range(preprocessing: dict, model_dir: str | os.PathLike) -> tuple[float, float] | None:
    """Peak levels (dBFS) of the training clips, as train.py stored them; None where unknown.

    UserError for a stored value that is not two finite numbers, low <= high.
    """
    stored = preprocessing.get("peak_dbfs_range")
    if stored is None:
        return None
    try:
        low, high = (float(value) for value in stored)
        if not (math.isfinite(low) and math.isfinite(high) and low <= high):
            raise ValueError
    except (TypeError, ValueError):
        raise UserError(f"invalid {Path(model_dir) / 'preprocessing.json'}: peak_dbfs_range must be two numbers, "
                        f"low then high, got {stored!r}") from None
    return low, high
