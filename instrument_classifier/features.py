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

How it is computed (the fast path, :class:`_Kernel`).  Two batched
``scipy.fft.rfft`` calls per chunk of clips: R, of every frame as it is, and
X_T.  The Hann window is applied in the frequency domain,
``X[k] = R[k]/2 - (R[k-1] + R[k+1])/4``, and the same neighbours give the
shifted frame exactly (w[0] = 0): ``P = e^{-2 pi i k/N} (X + D)`` with
``D[k] = alpha R[k-1] + conj(alpha) R[k+1]``, ``alpha = (1 - e^{2 pi i/N})/4``,
so ``angle(X conj(P)) = 2 pi k/N + angle(|X|^2 + X conj(D))``, a small angle
taken from its series below 0.1 rad and from ``arctan2`` elsewhere.  Only the
coefficients that pass the gate (about 20 % in FluidSynth clips) are
reassigned, in float32, and one ``np.bincount`` over flat (clip, frame, bin)
indices sums them.  Clips go through in chunks of :data:`TRANSFORM_CHUNK` on
``jobs`` threads (scipy.fft and numpy release the GIL); memory stays flat.
``bench/bench_features.py`` compares it with a plain float64 numpy version of
the same algorithm; ``tests/test_features.py`` with the formulas above written
out literally and with ``librosa.reassigned_spectrogram``.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np
import scipy.fft

from .cli import UserError
from .defaults import SAMPLE_RATE

# Part of the features' fingerprint (feature_store): bump it whenever the numbers
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
        extractor = cls(**params)
        try:
            extractor.check_params()
        except ValueError as error:
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
        for name in ("floor_db", "top_db", "gate_db"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
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
        kernel = _Kernel(self, n_samples)
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


class _Kernel:
    """The fast path for one (extractor, clip length): constants and per-chunk work.

    Per chunk: two batched real FFTs of every frame, R of the frame as it is and
    X_T of the frame times (n - N/2) w[n].  The Hann window is applied to R in
    the frequency domain, which also gives the one-sample-shifted frame for free
    (theta = 2 pi / N):

        X[k] = R[k]/2 - (R[k-1] + R[k+1])/4
        D[k] = alpha R[k-1] + conj(alpha) R[k+1],  alpha = (1 - e^{i theta})/4,

    D being the FFT of the frame times w[n+1] - w[n], so that the shifted frame's
    FFT is P = e^{-i theta k} (X + D) exactly (w[0] = 0) and
    angle(X conj(P)) = theta k + angle(|X|^2 + X conj(D)).  The kernel keeps
    Y = 4 X (no halving: 2 R[k] - R[k-1] - R[k+1]) and scales its constants.
    """

    def __init__(self, extractor: ChromagramExtractor, n_samples: int):
        e = extractor
        self.n, self.h = e.block_size, e.hop_size
        self.n_samples = n_samples
        self.n_frames = e.n_frames(n_samples)
        self.n_bins = e.n_bins
        self.padded_length = (self.n_frames - 1) * self.h + self.n
        n = self.n
        window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)  # periodic Hann
        self.time_window = ((np.arange(n) - n / 2) * window).astype(np.float32)
        theta = 2 * np.pi / n
        self.alpha4 = np.complex64(1 - np.exp(1j * theta))  # 4 alpha, as Y = 4 X
        # |Y| >= 4 gate; never 0, so that |Y|^2 > 0 for every kept coefficient.
        self.gate4 = np.float32(max(4 * 10 ** (e.gate_db / 20) * window.sum(), np.finfo(np.float32).tiny))
        self.scale = 1 / (4 * window.sum())  # summed |Y| -> a
        self.floor = 10 ** (e.floor_db / 20)
        self.floor_db = e.floor_db
        self.db_span = e.top_db - e.floor_db
        self.bins_per_radian = np.float32(n / (2 * np.pi))
        # Re(X_T conj(Y)) / |Y|^2 is the time offset / 4; in hops: * 4 / H.
        self.hops_per_offset = np.float32(4 / self.h)
        self.max_offset = np.float32(n / 8)  # N/2, in the same units
        # Column of FFT-bin position f: floor(12 d log2(f) + pitch_offset), the bin
        # plus one, since columns 0 and n_bins + 1 collect what falls below / above.
        d = e.bin_division
        self.pitch_scale = np.float32(12 * d)
        self.pitch_offset = np.float32(d * (12 * np.log2(e.sample_rate / (n * e.base_frequency))
                                            - e.bin_range[0]) + 0.5 + 1)
        self._local = threading.local()

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        """Chromagrams [shape=(C, n_frames, n_bins)] float32 of clips [shape=(C, n_samples)] float32."""
        c, n_frames, n_bins = clips.shape[0], self.n_frames, self.n_bins
        buf = self._scratch()
        rect, x_timed, y, magnitude, kept = self._spectra(clips, buf)
        m = len(kept)

        # From here on only the m kept coefficients.
        def take(values: np.ndarray, name: str, index: np.ndarray = kept) -> np.ndarray:
            return np.take(values, index, out=buf.get(name, m, values.dtype), mode="clip")

        y_k, mag = take(y.reshape(-1), "y_k"), take(magnitude, "mag")
        x_t = take(x_timed.reshape(-1), "x_t")
        before = np.subtract(kept, 1, out=buf.get("before", m, np.int64))
        r_flat = rect.reshape(-1)
        below, above = take(r_flat, "below", before), take(r_flat[2:], "above", before)  # R[k-1], R[k+1]
        row, k = buf.get("row", m, np.int64), buf.get("k", m, np.int64)
        np.divmod(kept, rect.shape[-1], out=(row, k))  # row = clip * F + frame
        power = np.multiply(mag, mag, out=buf.get("power", m, np.float32))
        column = self._pitch_columns(y_k, below, above, power, k, buf)
        row = self._frame_rows(x_t, y_k, power, row, buf)

        width = n_bins + 2
        row *= width
        row += column
        summed = np.bincount(row, weights=mag, minlength=c * n_frames * width)
        return self.to_db(summed.reshape(c, n_frames, width)[..., 1:-1])

    def _spectra(self, clips: np.ndarray, buf: _Scratch
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The FFTs of every frame and the coefficients that pass the gate.

        Returns R and X_T [shape=(C, F, K)] complex64 (K = N/2 + 1), Y = 4 X,
        |Y| (flat) and the flat indices into (C, F, K) of the kept
        coefficients (never k = 0 or K-1).
        """
        n, h, c = self.n, self.h, clips.shape[0]
        padded = buf.get("padded", (c, self.padded_length), np.float32)
        padded[:, :self.n_samples] = clips
        padded[:, self.n_samples:] = 0
        frames = np.lib.stride_tricks.sliding_window_view(padded, n, axis=-1)[:, ::h]  # (C, F, N) view
        rect = scipy.fft.rfft(frames, axis=-1, workers=1)  # (C, F, K) complex64
        timed = np.multiply(frames, self.time_window, out=buf.get("timed", (c, self.n_frames, n), np.float32))
        x_timed = scipy.fft.rfft(timed, axis=-1, workers=1)  # X_T, (C, F, K)

        # Y = 4 X for k = 1 .. K-2, computed on float pairs; DC and Nyquist set to 0.
        y = buf.get("y", rect.shape, np.complex64)
        r_pairs, y_pairs = rect.view(np.float32), y.view(np.float32)
        inner, middle = y_pairs[..., 2:-2], r_pairs[..., 2:-2]
        np.add(r_pairs[..., :-4], r_pairs[..., 4:], out=inner)
        np.subtract(middle, inner, out=inner)
        np.add(middle, inner, out=inner)  # 2 R[k] - R[k-1] - R[k+1]
        y_pairs[..., :2] = 0
        y_pairs[..., -2:] = 0
        magnitude = np.abs(y, out=buf.get("magnitude", rect.shape, np.float32)).reshape(-1)
        kept = np.flatnonzero(magnitude >= self.gate4)  # flat over (C, F, K)
        return rect, x_timed, y, magnitude, kept

    def _pitch_columns(self, y_k: np.ndarray, below: np.ndarray, above: np.ndarray, power: np.ndarray,
                       k: np.ndarray, buf: _Scratch) -> np.ndarray:
        """Column (pitch bin + 1, clamped to the two trash columns) of each kept coefficient, in ``k``'s buffer.

        Instantaneous frequency in FFT bins: k + angle(|Y|^2 + Y conj(4 D)) / theta.
        ``below`` and ``above`` (R[k-1], R[k+1]) are overwritten.
        """
        m = len(k)
        real, imag = buf.get("real", m, np.float32), buf.get("imag", m, np.float32)
        ratio = buf.get("ratio", m, np.float32)
        d4 = np.multiply(below, self.alpha4, out=below)  # 4 D
        d4 += np.multiply(above, np.conj(self.alpha4), out=above)
        cross = np.multiply(y_k, np.conjugate(d4, out=d4), out=d4)
        np.add(cross.real, power, out=real)
        np.copyto(imag, cross.imag)
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(imag, real, out=ratio)
        # arctan(z) = z (1 - z^2/3 + z^4/5) + O(z^7): error < 2e-8 rad for |z| < 0.1.
        z2 = np.multiply(ratio, ratio, out=buf.get("z2", m, np.float32))
        angle = np.multiply(z2, np.float32(1 / 5), out=buf.get("angle", m, np.float32))
        angle -= np.float32(1 / 3)
        angle *= z2
        angle += np.float32(1)
        angle *= ratio
        near = np.less(np.abs(imag, out=ratio), np.multiply(real, np.float32(0.1), out=z2),
                       out=buf.get("near", m, np.bool_))
        far = np.flatnonzero(~near)  # includes real <= 0 and NaN
        angle[far] = np.arctan2(imag[far], real[far])
        freq = np.multiply(angle, self.bins_per_radian, out=angle)
        freq += k

        np.maximum(freq, np.float32(1e-30), out=freq)
        pitch = np.log2(freq, out=freq)
        pitch *= self.pitch_scale
        pitch += self.pitch_offset
        np.clip(pitch, 0, self.n_bins + 1, out=pitch)
        column = k  # k is no longer needed
        np.copyto(column, pitch, casting="unsafe")  # floor, as pitch >= 0
        return column

    def _frame_rows(self, x_t: np.ndarray, y_k: np.ndarray, power: np.ndarray, row: np.ndarray, buf: _Scratch
                    ) -> np.ndarray:
        """``row`` (clip * F + frame) with each kept coefficient's frame moved to its reassigned time.

        The offset from the frame centre is clamped to the window, rounded to
        the nearest frame centre and clamped to the clip's frames.
        """
        m, n_frames = len(row), self.n_frames
        offset = np.multiply(x_t.real, y_k.real, out=buf.get("real", m, np.float32))
        offset += np.multiply(x_t.imag, y_k.imag, out=buf.get("imag", m, np.float32))
        offset /= power  # Re(X_T conj(X)) / |X|^2 / 4
        np.clip(offset, -self.max_offset, self.max_offset, out=offset)
        offset *= self.hops_per_offset
        offset += np.float32(0.5)
        np.floor(offset, out=offset)
        frame = np.remainder(row, n_frames, out=buf.get("frame", m, np.int64))
        row -= frame
        np.add(frame, offset, out=frame, casting="unsafe")
        np.clip(frame, 0, n_frames - 1, out=frame)
        row += frame
        return row

    def to_db(self, summed: np.ndarray) -> np.ndarray:
        """Summed |X| -> normalised log amplitude in [0, 1], float32 (the module's formula)."""
        level = 20 * np.log10(np.maximum(summed * self.scale, self.floor))
        level -= self.floor_db
        level /= self.db_span
        return np.clip(level, 0.0, 1.0).astype(np.float32)

    def _scratch(self) -> _Scratch:
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = _Scratch()
        return scratch


class _Scratch:
    """Named arrays reused from chunk to chunk, one set per thread.

    Fresh multi-megabyte arrays for every chunk made glibc return the memory to
    the OS and fault it back in, which cost more than the arithmetic.
    """

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: int | tuple[int, ...], dtype: Any) -> np.ndarray:
        """An uninitialised array of ``shape`` and ``dtype``, a view of a cached buffer."""
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        size = math.prod(shape)
        array = self._arrays.get(name)
        if array is None or array.dtype != dtype or array.size < size:
            array = self._arrays[name] = np.empty(max(size, 1), dtype=dtype)
        return array[:size].reshape(shape)
