"""Reading and shaping audio from anywhere into the clips the models know: read, downmix, resample, onset, level.

The models were trained on 2 s clips of 44.1 kHz mono audio with the note
starting at t = 0.  A file from elsewhere is turned into such a clip by
:meth:`prediction.Predictor.prepare` with the steps here:

1. **Read** any format libsndfile decodes (WAV, FLAC, OGG/Vorbis, MP3, AIFF,
   ...) from a path or an in-memory upload, in blocks, at most
   ``max_samples`` samples x channels (:func:`read_mono`): the work per file
   is bounded whatever its length, rate and channel count.
2. **Downmix** to mono as the mean of the channels (:func:`to_mono`, as the
   synthesiser does), block by block, in float64 (finite samples stay finite).
3. **Resample** to the model's rate with soxr (:func:`resample`, its "HQ"
   quality); a float file that peaks above full scale is brought to 0 dBFS
   first (:func:`to_full_scale`), so that no finite sample can overflow.
4. **Find the onset** of the first note (:func:`find_onset`) and take
   ``CLIP_SECONDS`` from there (:func:`clip_window`), padding with zeros
   when the file is shorter; :func:`peak_dbfs` measures its level.

>>> samples, rate = read_audio("note.wav")          # (n, channels), Hz
>>> mono = resample(to_mono(samples), rate, 44_100)
>>> window = clip_window(mono, find_onset(mono, 44_100), 88_200)
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import soundfile as sf
import soxr
from scipy.ndimage import median_filter
from scipy.signal import welch

from .cli import UserError
from .dataset import open_error, soundfile_path

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
# Files longer than this are read only this far (the note must start before).
MAX_READ_SECONDS = 600.0
# ... and at most this many samples x channels are decoded per file (10 minutes
# of 48 kHz stereo): a small FLAC of digital silence can hold hours of
# 8-channel audio at 655 kHz, so the length alone does not bound the work.
MAX_DECODE_SAMPLES = 600 * 48_000 * 2
# Samples x channels decoded per read: 8 MB of float64 at most in flight.
DECODE_BLOCK_SAMPLES = 1 << 20
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
# tonal_fraction: Welch segments of ~93 ms at 44.1 kHz (10.8 Hz bins); a bin is part of a partial
# when it stands TONAL_PEAK_RATIO above the median of the TONAL_MEDIAN_BINS (~330 Hz) around it.
TONAL_SEGMENT = 4096
TONAL_MEDIAN_BINS = 31
TONAL_PEAK_RATIO = 4.0
TONAL_BAND_HZ = (25.0, 16_000.0)


class AudioError(UserError):
    """A file that cannot be classified; ``kind`` says why.

    kind : "missing" (no such file), "empty" (no samples), "unsupported" (not a
        format we read), "unreadable" (corrupt, or not audio at all).
    """

    def __init__(self, message: str, *, kind: str):
        super().__init__(message)
        self.kind = kind



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
        with sf.SoundFile(soundfile_path(source) if isinstance(source, str) else source) as audio:
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
        denied = open_error(source)
        if denied is not None:
            raise AudioError(f"{name}: cannot read: {denied}", kind="unreadable") from None
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
        if not os.fspath(source):  # Path("") is the current folder: "an empty path" is what was given
            raise AudioError("an empty path: give an audio file", kind="missing")
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


def tonal_fraction(samples: np.ndarray, sample_rate: int) -> float:
    """The share of a clip's energy in spectral peaks (partials), 0 to 1; NaN for no energy.

    The power spectrum, averaged over the clip (Welch), against its running
    median across ~330 Hz: a bin ``TONAL_PEAK_RATIO`` (6 dB) above it belongs to a
    partial.  A held or decaying note keeps most of its energy there (0.09 or more
    over 1900 varied clips of every font and the additive synthesiser, 0.55 or
    more over 600 clean ones; a note buried in white noise of equal power 0.58);
    a stationary noise (white, pink, brown, hiss, clicks) keeps none (0.00), a
    burst of noise a tenth (0.11).
    """
    samples = np.asarray(samples, dtype=np.float64)
    frequencies, power = welch(samples - samples.mean(), fs=sample_rate, nperseg=min(TONAL_SEGMENT, len(samples)))
    band = (frequencies >= TONAL_BAND_HZ[0]) & (frequencies <= TONAL_BAND_HZ[1])
    power, median = power[band], median_filter(power, size=TONAL_MEDIAN_BINS, mode="nearest")[band]
    total = power.sum()
    if not total > 0:
        return float("nan")
    return float(power[power > TONAL_PEAK_RATIO * median].sum() / total)
