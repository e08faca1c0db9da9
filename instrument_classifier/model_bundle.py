"""Loading a trained model folder for prediction: the network, its scaler, its classes and feature parameters.

A model folder (written by :mod:`training`; its files named in
:mod:`model_files`) holds everything prediction needs::

    MODEL_DIR/model.keras          the best epoch on validation
    MODEL_DIR/preprocessing.json   feature extractor params, scaler, class names
    MODEL_DIR/config.json          how it was trained

>>> bundle = load_model_dir("data/working/single-notes-2000/models/<model_id>")
>>> bundle.predict_proba(chromagrams)          # (n, n_classes)
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import keras

from . import models  # noqa: F401 (registers the custom layers that model.keras names)
from .cli import UserError
from .defaults import SCORING_BATCH_SIZE
from .features import ChromagramExtractor
from .model_files import MODEL_FILE, read_prediction_records
from .scaling import ChromagramScaler, to_model_input
from .streaming import ChromagramBatches, keras_input


@dataclass
class ModelBundle:
    """A loaded model folder: the network plus what turns features into its input.

    ``to_model_input(chromagrams)`` scales raw chromagrams (n, frames, bins) into
    (n, frames, bins, 1); ``predict_proba`` returns (n, n_classes) in the order
    of ``class_names``.  ``feature_params`` rebuilds the extractor:
    ``features.ChromagramExtractor.from_params(bundle.feature_params)``.
    """

    model_dir: Path
    model: keras.Model
    scaler: ChromagramScaler
    class_names: list[str]
    feature_params: dict
    preprocessing: dict
    config: dict
    level_range_dbfs: tuple[float, float] | None = None  # peak levels of the training clips, where recorded

    @property
    def target(self) -> str:
        return self.preprocessing.get("target", "family")

    def to_model_input(self, chromagrams: np.ndarray) -> np.ndarray:
        """:func:`scaling.to_model_input`, checked against the network's input shape."""
        x = to_model_input(chromagrams, self.scaler)
        self._check_input_shape(x.shape[1:])
        return x

    def _check_input_shape(self, shape: tuple[int, ...]) -> None:
        expected = tuple(self.model.input_shape[1:])
        if tuple(shape) != expected:
            raise UserError(f"chromagrams of shape {tuple(shape[:2])} do not fit the model "
                            f"(expects {expected[:2]}); were they extracted with other parameters?")

    def predict_proba(self, chromagrams, *, rows: np.ndarray | None = None,
                      batch_size: int = SCORING_BATCH_SIZE) -> np.ndarray:
        """Probabilities [shape=(n, n_classes)] of ``chromagrams[rows]`` (default: all).

        An ndarray is scaled whole; chunked features (a ``ChunkedArray``) are
        read, scaled and predicted batch by batch (:class:`streaming.ChromagramBatches`).
        """
        if isinstance(chromagrams, np.ndarray):
            x = self.to_model_input(chromagrams if rows is None else chromagrams[rows])
            return np.asarray(self.model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float64)
        self._check_input_shape((*chromagrams.shape[1:], 1))
        batches = ChromagramBatches(chromagrams, self.scaler, rows=rows, batch_size=batch_size)
        return np.asarray(self.model.predict(keras_input(batches), verbose=0), dtype=np.float64)

    def predict(self, chromagrams: np.ndarray) -> list[str]:
        """The most probable class name of each chromagram."""
        return [self.class_names[i] for i in self.predict_proba(chromagrams).argmax(axis=1)]

    def extractor(self) -> ChromagramExtractor:
        """The feature extractor the model was trained with."""
        return ChromagramExtractor.from_params(self.feature_params)


def load_model_dir(model_dir: str | os.PathLike) -> ModelBundle:
    """Load and validate a model folder; one-line UserError for anything wrong."""
    (model_dir, preprocessing, config, class_names, feature_params), scaler, _, level_range = \
        read_prediction_records(model_dir)
    try:
        model = keras.saving.load_model(model_dir / MODEL_FILE, compile=False)
    except (OSError, ValueError, TypeError, KeyError, AttributeError, zipfile.BadZipFile) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"cannot load {model_dir / MODEL_FILE} (corrupt or not a Keras model): {first_line}") from None
    if model.output_shape[-1] != len(class_names):
        raise UserError(f"{model_dir / MODEL_FILE} has {model.output_shape[-1]} outputs "
                        f"but preprocessing.json names {len(class_names)} classes")
    return ModelBundle(model_dir=model_dir, model=model, scaler=scaler, class_names=class_names,
                       feature_params=feature_params, preprocessing=preprocessing, config=config,
                       level_range_dbfs=level_range)
