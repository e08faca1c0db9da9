"""Scaling chromagrams into the network's input: one step, shared by training and prediction.

The model input is ``ChromagramScaler.transform(chromagrams)[..., None]``:
float32 of shape (N, 44 time frames, 115 semitone bins, 1);
:func:`to_model_input` does that.  The scaler is fitted on the training split
(``prepare_training.py``) and stored as plain JSON (:meth:`ChromagramScaler.to_dict`)
in ``training-data/preprocessing.json`` and in every model folder.

>>> import numpy as np
>>> train_rows = np.arange(6)
>>> scaler = ChromagramScaler().fit(chromagrams[train_rows])
>>> streamed = ChromagramScaler().fit_rows(chromagrams, train_rows)   # without loading them all
>>> (streamed.mean_, streamed.std_) == (scaler.mean_, scaler.std_)   # bit for bit
True
>>> to_model_input(chromagrams, scaler).shape
(8, 44, 115, 1)
>>> ChromagramScaler.from_dict(scaler.to_dict()).mean_ == scaler.mean_
True
"""

from __future__ import annotations

import numpy as np

from .cli import UserError

# Values summed at a time by fit_rows (32 MB of float64): memory stays flat.
STREAM_BLOCK_VALUES = 1 << 22
# The smallest standard deviation a scaler may have (a fit on chromagrams nearly constant stores 1).
MIN_STD = 1e-6


class ChromagramScaler:
    """Standardise chromagrams with one mean and one standard deviation.

    One scalar for all bins (not one per bin) keeps the input's structure
    intact: a transposition of the input is still a transposition of the
    scaled input, which the default architecture relies on.  The floor of the
    log-amplitude features (0) maps to ``transform(0) = -mean_ / std_``.

    The constructor takes no parameters; :meth:`to_dict` returns the fitted
    state as JSON values and :meth:`from_dict` rebuilds a fitted scaler.
    """

    KIND = "standard-scalar"

    def __init__(self) -> None:
        self.mean_: float | None = None
        self.std_: float | None = None

    def fit(self, chromagrams: np.ndarray) -> ChromagramScaler:
        """Learn mean and std from ``chromagrams`` [shape=(n, frames, bins)]."""
        chromagrams = np.asarray(chromagrams, dtype=np.float64)
        if chromagrams.size == 0:
            raise ValueError("cannot fit a scaler on no data")
        self.mean_ = float(chromagrams.mean())
        self.std_ = _usable_std(float(chromagrams.std()))
        return self

    def fit_rows(self, chromagrams, rows: np.ndarray, *, block_values: int = STREAM_BLOCK_VALUES
                 ) -> ChromagramScaler:
        """:meth:`fit` on ``chromagrams[rows]``, bit for bit, reading at most ``block_values`` values at a time.

        For chromagrams that do not fit in memory (a :class:`chunked_array.ChunkedArray`).
        NumPy sums float64 by pairwise summation over the whole flattened array,
        so the mean and the variance depend on the order of the additions, which
        depends only on the count: :func:`_pairwise_sum` adds the same partial
        sums in the same order, reading blocks that numpy would itself sum whole.
        Two passes over the rows: the mean, then the squared deviations from it.
        """
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        row_size = int(np.prod(chromagrams.shape[1:]))
        count = len(rows) * row_size
        if count == 0:
            raise ValueError("cannot fit a scaler on no data")

        def values(start: int, n: int) -> np.ndarray:  # flat float64 values [start, start + n) of chromagrams[rows]
            first, last = start // row_size, (start + n - 1) // row_size
            block = np.asarray(chromagrams[rows[first:last + 1]], dtype=np.float64).reshape(-1)
            return block[start - first * row_size:start - first * row_size + n]

        mean = _pairwise_sum(values, 0, count, block_values) / count
        variance = _pairwise_sum(lambda start, n: np.square(values(start, n) - mean), 0, count, block_values) / count
        self.mean_ = float(mean)
        self.std_ = _usable_std(float(np.sqrt(variance)))
        return self

    def transform(self, chromagrams: np.ndarray) -> np.ndarray:
        """Return ``(chromagrams - mean_) / std_`` as float32, same shape."""
        if self.mean_ is None or self.std_ is None:
            raise ValueError("the scaler is not fitted")
        return ((np.asarray(chromagrams, dtype=np.float32) - self.mean_) / self.std_).astype(np.float32)

    def to_dict(self) -> dict:
        """The fitted state as plain JSON values: ``{"kind", "mean", "std"}``."""
        return {"kind": self.KIND, "mean": self.mean_, "std": self.std_}

    @classmethod
    def from_dict(cls, state: dict) -> ChromagramScaler:
        """Rebuild a fitted scaler from :meth:`to_dict` output; UserError for anything else."""
        try:
            if state["kind"] != cls.KIND:
                raise ValueError(f"unknown scaler kind {state['kind']!r}")
            scaler = cls()
            scaler.mean_ = float(state["mean"])
            scaler.std_ = float(state["std"])
        except (KeyError, TypeError, ValueError) as error:
            raise UserError(f"invalid scaler parameters {state!r}: {error}") from None
        # Fitted on chromagrams in [0, 1]: any other mean, or a std that would blow the input up, is damage
        # (a NaN mean gave NaN probabilities and an answer, silently).
        if not np.isfinite(scaler.std_) or not MIN_STD <= scaler.std_ <= 1:
            raise UserError(f"invalid scaler std {scaler.std_} (a scaler of chromagrams has {MIN_STD:g}..1)")
        if not 0 <= scaler.mean_ <= 1:
            raise UserError(f"invalid scaler mean {scaler.mean_} (a scaler of chromagrams has 0..1)")
        return scaler


def _usable_std(std: float) -> float:
    """A fitted std, or 1 for (nearly) constant chromagrams: dividing by ~0 would blow the input up."""
    return std if std >= MIN_STD else 1.0


def _pairwise_sum(values, start: int, n: int, block: int) -> np.float64:
    """``np.add.reduce`` of the float64 values [start, start + n) of a stream, bit for bit, ``block`` at a time.

    NumPy's pairwise summation of n > 128 values adds the sums of the first
    n2 = n // 2 - (n // 2) % 8 values and of the rest, each summed the same way
    (numpy/_core/src/umath/loops_utils.h.src); a part of at most ``block``
    (>= 128) values is summed by numpy itself.  ``values(start, n)`` reads a part.
    """
    if block < 128:
        raise ValueError("block must hold at least 128 values (numpy's pairwise block)")
    if n <= block:
        return np.add.reduce(values(start, n))
    half = n // 2
    half -= half % 8
    return _pairwise_sum(values, start, half, block) + _pairwise_sum(values, start + half, n - half, block)


def to_model_input(chromagrams: np.ndarray, scaler: ChromagramScaler) -> np.ndarray:
    """Raw chromagrams [shape=(n, frames, bins)] (or one, (frames, bins)) -> model input (n, frames, bins, 1)."""
    chromagrams = np.asarray(chromagrams)
    if chromagrams.ndim == 2:
        chromagrams = chromagrams[None]
    if chromagrams.ndim != 3:
        raise UserError(f"expected chromagrams of shape (n, frames, bins), got {chromagrams.shape}")
    return scaler.transform(chromagrams)[..., None]
