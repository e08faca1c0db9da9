"""Reassigned chromagrams: a log-frequency, log-amplitude spectrogram in semitone bins.

The transform alone: :class:`ChromagramExtractor` turns clips into
chromagrams.  A dataset's chromagrams are extracted, cached and loaded by
:mod:`feature_store`; stored with the features and with every model, the
extractor's parameters rebuild the very same extractor
(:meth:`ChromagramExtractor.from_params`).

The algorithm, for a clip x of L samples (block N = 4096, hop H = 2048):

1. **Frames.**  F = ceil(L / H) frames (44 for 88,200 samples); frame i holds
   x[i H : i H + N], zero-padded past the end of the clip, times the periodic
   Hann window w[n] = (1 - cos(2 pi n / N)) / 2; X[k] is its FFT.
2. **Reassignment** of each coefficient X[k]:

   * instantaneous frequency from the phase advance between the frame and the
     frame shifted one sample earlier (FFT P):
     ``f = (angle(X conj(P)) mod 2 pi) / (2 pi) * sample_rate``;
   * reassigned time from the group delay, with the time-weighted window
     (n - N/2) w[n] (FFT X_T): ``t = i H + N/2 + Re(X_T conj(X)) / |X|^2``
     samples, the offset from the frame centre clamped to [-N/2, N/2].

3. **Gate.**  Coefficients with a < 10^(gate_db / 20), a = |X| / sum(w) (the
   scale below), are dropped as silence.  Without the gate the 16-bit
   quantisation noise of the clips (about -135 dB per coefficient) would add
   up to about -95 dB in the highest semitone bins, which span ~100 FFT bins.
4. **Binning.**  Pitch in semitones from A4: ``p = 12 log2(f / base_frequency)``;
   ``bin = floor(p d + 1/2) - bin_range[0] d``, d = bin_division, i.e. round
   half up: a tone exactly a quarter-tone above a semitone goes to the upper
   bin (in practice it splits, as estimates scatter around the border); bins
   outside [0, (bin_range[1] - bin_range[0]) d) are dropped.  With the
   defaults bin = MIDI number - 21: A0 (27.5 Hz) is bin 0, C8 bin 87, and
   bin 114 is MIDI 135 (19.9 kHz).  Frame: the nearest frame centre,
   ``j = floor((t - N/2) / H + 1/2)`` clamped to [0, F - 1]; output frame j is
   centred on input frame j, at ``(j H + N/2) / sample_rate`` s.  The
   magnitudes |X| are summed per (frame, bin) cell.
5. **Log amplitude.**  With A the cell's sum and a = A / sum(w) (sum(w) = N/2,
   so a full-scale sine on an FFT bin gives a = 1, 0 dB)::

       y = clip((20 log10(max(a, 10^(floor_db / 20))) - floor_db) / (top_db - floor_db), 0, 1)

   With floor_db = -120 and top_db = 0, silence is exactly 0.0 (never NaN or
   -inf), a full-scale sine 1.0, and 0.01 is 1.2 dB.

How it is computed: :mod:`chromagram_kernel`, the fast path (batched FFTs,
the window applied in the frequency domain, only the coefficients above the
gate reassigned).  Clips go through in chunks of :data:`TRANSFORM_CHUNK` on
``jobs`` threads (scipy.fft and numpy release the GIL); memory stays flat.
``bench/bench_features.py`` compares it with a plain float64 numpy version of
the same algorithm; ``tests/test_features.py`` with the formulas above written
out literally and with ``librosa.reassigned_spectrogram``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np

from .chromagram_kernel import Kernel
from .cli import UserError
from .defaults import SAMPLE_RATE

# Part of the features' fingerprint (feature_extraction): bump it whenever the numbers
# the algorithm writes change, so that old features are recomputed rather than silently reused.
ALGORITHM_VERSION = 1
# Clips per transform chunk: ~5 MB of working memory per clip; small chunks
# stay in cache and spread evenly over the threads (1 to 4 measured the same).
TRANSFORM_CHUNK = 4


class ChromagramExtractor:
    """Reassigned chromagram of single-note clips (see the module docstring).

    ``__init__`` only stores its keyword arguments; :meth:`get_params` returns
    them as JSON values and :meth:`from_params` rebuilds the same extractor.

    Parameters
    ----------
    sample_rate : int, the clips' sample rate in Hz.
    block_size : int, FFT frame length N in samples (even).
    hop_size : int, hop H between frames in samples, 0 < H <= N/2.
    bin_range : (int, int), pitch bins [start, stop) in semitones from
        ``base_frequency``; (-48, 67) is MIDI 21 (A0) up to MIDI 135.
    bin_division : int, bins per semitone.
    base_frequency : float, frequency of pitch 0 (A4) in Hz.
    floor_db, top_db : float, the dB range mapped onto [0, 1].
    gate_db : float, coefficients weaker than this (same dB scale) are dropped.

    Examples
    --------
    >>> extractor = ChromagramExtractor()
    >>> extractor.transform(np.zeros((3, 88200))).shape
    (3, 44, 115)
    >>> ChromagramExtractor.from_params(extractor.get_params()) == extractor
    True
    """

    def __init__(self, *, sample_rate: int = SAMPLE_RATE, block_size: int = 4096, hop_size: int = 2048,
                 bin_range: Sequence[int] = (-48, 67), bin_division: int = 1, base_frequency: float = 440.0,
                 floor_db: float = -120.0, top_db: float = 0.0, gate_db: float = -120.0):
        self.sample_rate = sample_rate
        self.block_size = block_size
        self.hop_size = hop_size
        self.bin_range = tuple(bin_range)
        self.bin_division = bin_division
        self.base_frequency = base_frequency
        self.floor_db = floor_db
        self.top_db = top_db
        self.gate_db = gate_db

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments as JSON values (``bin_range`` as a list)."""
        return {
            "sample_rate": self.sample_rate,
            "block_size": self.block_size,
            "hop_size": self.hop_size,
            "bin_range": list(self.bin_range),
            "bin_division": self.bin_division,
            "base_frequency": self.base_frequency,
            "floor_db": self.floor_db,
            "top_db": self.top_db,
            "gate_db": self.gate_db,
        }

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ChromagramExtractor:
        """Rebuild an extractor from :meth:`get_params` output, e.g. read back from JSON.

        Raises UserError for unknown names or values the algorithm cannot use.
        """
        if not isinstance(params, dict):
            raise UserError(f"feature parameters must be a JSON object, got {type(params).__name__}")
        unknown = sorted(set(params) - set(cls().get_params()))
        if unknown:
            raise UserError(f"unknown feature parameters: {', '.join(unknown)}")
        try:
            extractor = cls(**params)  # tuple(bin_range) of a number was a TypeError
            extractor.check_params()
        except (TypeError, ValueError) as error:
            raise UserError(f"bad feature parameters: {error}") from None
        return extractor

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={value!r}" for name, value in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.get_params() == self.get_params()

    def check_params(self) -> None:
        """Raise ValueError for parameters the algorithm cannot use."""
        n, h = self.block_size, self.hop_size
        if not (isinstance(n, int) and n >= 4 and n % 2 == 0):
            raise ValueError(f"block_size must be an even integer >= 4, got {n!r}")
        if not (isinstance(h, int) and 0 < h <= n // 2):
            raise ValueError(f"hop_size must be an integer in (0, block_size / 2], got {h!r}")
        if not (isinstance(self.sample_rate, int) and self.sample_rate > 0):
            raise ValueError(f"sample_rate must be a positive integer, got {self.sample_rate!r}")
        if not (len(self.bin_range) == 2 and all(isinstance(b, int) for b in self.bin_range)
                and self.bin_range[0] < self.bin_range[1]):
            raise ValueError(f"bin_range must be two increasing integers, got {self.bin_range!r}")
        if not (isinstance(self.bin_division, int) and self.bin_division >= 1):
            raise ValueError(f"bin_division must be a positive integer, got {self.bin_division!r}")
        if not (isinstance(self.base_frequency, (int, float)) and self.base_frequency > 0):
            raise ValueError(f"base_frequency must be positive, got {self.base_frequency!r}")
        # In dB of full scale: float32 audio lies well within +-1000 dB (and 10^(1e308 / 20) overflowed).
        for name in ("floor_db", "top_db", "gate_db"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and -1000 <= value <= 1000):
                raise ValueError(f"{name} must be a number of dB within -1000..1000, got {value!r}")
        if not self.floor_db < self.top_db:
            raise ValueError(f"floor_db must be below top_db, got {self.floor_db!r} and {self.top_db!r}")

    # -- geometry ------------------------------------------------------------

    @property
    def n_bins(self) -> int:
        """Number of pitch bins, (bin_range[1] - bin_range[0]) * bin_division."""
        return (self.bin_range[1] - self.bin_range[0]) * self.bin_division

    def n_frames(self, n_samples: int) -> int:
        """Number of time frames of a clip of ``n_samples``: ceil(n_samples / hop_size)."""
        return -(-n_samples // self.hop_size)

    def frame_times(self, n_samples: int) -> np.ndarray:
        """Centre of each output frame in seconds [shape=(n_frames,)]."""
        return (np.arange(self.n_frames(n_samples)) * self.hop_size + self.block_size / 2) / self.sample_rate

    def bin_pitches(self) -> np.ndarray:
        """MIDI pitch of each bin centre [shape=(n_bins,)]; 21, 22, ..., 135 by default.

        MIDI 69 is ``base_frequency``; with bin_division > 1 pitches are fractional.
        """
        return 69 + self.bin_range[0] + np.arange(self.n_bins) / self.bin_division

    # -- transform -----------------------------------------------------------

    def fit(self, clips: Any = None, y: Any = None) -> ChromagramExtractor:
        """Nothing to learn; returns ``self`` (the scikit-learn convention)."""
        return self

    def transform(self, clips: np.ndarray, *, jobs: int | None = None,
                  chunk_size: int = TRANSFORM_CHUNK) -> np.ndarray:
        """Chromagrams of a batch of clips.

        Parameters
        ----------
        clips : np.ndarray [shape=(N, n_samples)], real audio at ``sample_rate``,
            full scale +-1; computed in float32.
        jobs : threads (default: all cores).  The result does not depend on it.
        chunk_size : clips per chunk.  The result does not depend on it.

        Returns
        -------
        np.ndarray [shape=(N, n_frames, n_bins), dtype=float32] in [0, 1],
            ``n_frames = ceil(n_samples / hop_size)``; bit for bit the same as
            stacking :meth:`transform_one` of each clip.
        """
        self.check_params()
        clips = np.asarray(clips)
        if clips.ndim != 2 or clips.shape[1] == 0:
            raise ValueError(f"clips must have shape (N, n_samples), got {clips.shape}")
        if not (np.issubdtype(clips.dtype, np.floating) or np.issubdtype(clips.dtype, np.integer)):
            raise ValueError(f"clips must be real numbers, got dtype {clips.dtype}")
        if jobs is not None and jobs < 1:
            raise ValueError(f"jobs must be at least 1, got {jobs}")
        clips = clips.astype(np.float32, copy=False)
        if not np.isfinite(clips.sum()):  # cheaper than isfinite(clips).all(); overflow only past 1e33
            raise ValueError("clips contain NaN or infinity")
        n_clips, n_samples = clips.shape
        out = np.empty((n_clips, self.n_frames(n_samples), self.n_bins), dtype=np.float32)
        kernel = Kernel(self, n_samples)
        chunk_size = max(1, chunk_size)
        starts = range(0, n_clips, chunk_size)

        def work(start: int) -> None:
            stop = min(start + chunk_size, n_clips)
            out[start:stop] = kernel(clips[start:stop])

        workers = min(jobs or os.cpu_count() or 1, len(starts))
        if workers <= 1:
            for start in starts:
                work(start)
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(work, starts))
        return out

    def transform_one(self, clip: np.ndarray) -> np.ndarray:
        """Chromagram of one clip.

        Parameters
        ----------
        clip : np.ndarray [shape=(n_samples,)]

        Returns
        -------
        np.ndarray [shape=(n_frames, n_bins), dtype=float32]
        """
        clip = np.asarray(clip)
        if clip.ndim != 1:
            raise ValueError(f"clip must have shape (n_samples,), got {clip.shape}")
        return self.transform(clip[None, :], jobs=1)[0]
