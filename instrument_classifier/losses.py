"""The loss and metrics of training on fine classes (instruments) for coarse targets (families).

A family is the set of its instruments: :class:`AllowedSetCrossEntropy`
scores the probability mass on a set of allowed classes, so one loss serves
instrument targets in training and family targets in validation;
:func:`group_accuracy` is the accuracy of the family the instrument
probabilities add up to.  :mod:`training` compiles the network with them.
"""

from __future__ import annotations

import keras
import numpy as np


def allowed_targets(classes: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """0/1 masks over the fine classes [shape=(n, n_fine)]: those of group ``classes[i]``."""
    return (groups[None, :] == np.asarray(classes)[:, None]).astype(np.float32)


@keras.saving.register_keras_serializable(package="instrument_classifier")
class AllowedSetCrossEntropy(keras.losses.Loss):
    """Cross-entropy against a set of allowed classes: ``-log sum(y_true * y_pred)``.

    ``y_true`` is a 0/1 mask.  With a one-hot mask this is the usual
    categorical cross-entropy; with the mask of a family's instruments it is
    the cross-entropy of the family, whose probability is the sum of its
    instruments'.  So one loss serves instrument targets in training and
    family targets in validation.  Label smoothing eps mixes in the
    cross-entropy against the uniform distribution, as Keras' does:
    ``(1 - eps) * loss + eps * mean_k(-log y_pred_k)``.
    """

    def __init__(self, label_smoothing: float = 0.0, name: str = "allowed_set_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        eps = keras.backend.epsilon()
        y_pred = keras.ops.clip(y_pred, eps, 1.0)
        mass = keras.ops.clip(keras.ops.sum(y_true * y_pred, axis=-1), eps, 1.0)
        loss = -keras.ops.log(mass)
        if self.label_smoothing:
            uniform = -keras.ops.mean(keras.ops.log(y_pred), axis=-1)
            loss = (1.0 - self.label_smoothing) * loss + self.label_smoothing * uniform
        return loss

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def crossentropy_metric() -> keras.metrics.Metric:
    """The plain cross-entropy of the classes (no label smoothing), as a metric named "crossentropy".

    The loss carries the label smoothing, which rewards spreading probability
    over all fine classes; epochs are chosen on this metric instead, the
    validation clips' cross-entropy of their true class.
    """
    return keras.metrics.MeanMetricWrapper(AllowedSetCrossEntropy().call, name="crossentropy")  # per clip


def group_accuracy(groups: np.ndarray, n_classes: int) -> keras.metrics.Metric:
    """Accuracy of the class the fine probabilities add up to, as a metric named "accuracy"."""
    matrix = np.eye(n_classes, dtype=np.float32)[groups]  # (n_fine, n_classes)

    def accuracy(y_true, y_pred):
        true_class = keras.ops.argmax(keras.ops.matmul(y_true, matrix), axis=-1)
        predicted = keras.ops.argmax(keras.ops.matmul(y_pred, matrix), axis=-1)
        return keras.ops.cast(keras.ops.equal(true_class, predicted), "float32")

    return keras.metrics.MeanMetricWrapper(accuracy, name="accuracy")
