"""Scaling chromagrams into the network's input: one step, shared by training and prediction.

The model input is ``ChromagramScaler.transform(chromagrams)[..., None]``:
float32 of shape (N, 44 time frames, 115 semitone bins, 1);
:func:`to_model_input` does that.  The scaler is fitted on the training split
(``prepare_training.py``) and stored as plain JSON (:meth:`ChromagramScaler.to_dict`)
in ``training-data/preprocessing.json`` and in every model folder.

>>> scaler = ChromagramScaler().fit(train_chromagrams)
>>> x = to_model_input(chromagrams, scaler)         # (n, 44, 115, 1)
>>> ChromagramScaler.from_dict(scaler.to_dict()).mean_ == scaler.mean_
True
"""

from __future__ import annotations

import numpy as np

from .cli import UserError


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
        self.std_ = float(chromagrams.std()) or 1.0
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
        if not np.isfinite(scaler.std_) or scaler.std_ <= 0:
            raise UserError(f"invalid scaler std {scaler.std_}")
        return scaler


def to_model_input(chromagrams: np.ndarray, scaler: ChromagramScaler) -> np.ndarray:
    """Raw chromagrams [shape=(n, frames, bins)] (or one, (frames, bins)) -> model input (n, frames, bins, 1)."""
    chromagrams = np.asarray(chromagrams)
    if chromagrams.ndim == 2:
        chromagrams = chromagrams[None]
    if chromagrams.ndim != 3:
        raise UserError(f"expected chromagrams of shape (n, frames, bins), got {chromagrams.shape}")
    return scaler.transform(chromagrams)[..., None]
