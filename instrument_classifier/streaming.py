"""Feeding chromagrams to Keras batch by batch: training and prediction over features that do not fit in memory.

:class:`ChromagramBatches` is a ``keras.utils.PyDataset`` over chromagrams
that are read on demand (a :class:`chunked_array.ChunkedArray`, or any array):
each batch reads its rows, scales them (:func:`scaling.to_model_input`) and
pairs them with their targets, so memory holds a few batches whatever the
dataset size.  Keras prefetches the next batches while the network trains on
one (``tf.data`` on TensorFlow), and uses a GPU where there is one.

Same seed, same model as the in-memory path (``fit(x, y, shuffle=True)``):
the batches hold the same rows in the same order.  Keras's array path
draws its order with ``tf.random.shuffle`` inside a ``tf.data`` function, whose
seed is the global seed (``keras.utils.set_random_seed``) and the op's place in
that function; on Keras 3.15 / TensorFlow 2.21 every epoch gets the same
permutation, since each epoch's iterator starts the random op afresh.
:func:`keras_epoch_order` draws that very permutation; other backends'
array path draws ``np.random.permutation`` per epoch, and so does this one
(untested there).  ``tests/test_streaming.py`` trains both ways and compares.
In training (:mod:`training`), through :func:`keras_input`::

    batches = ChromagramBatches(chromagrams, scaler, rows=train_rows, targets=y, batch_size=32, shuffle=True)
    model.fit(keras_input(batches), validation_data=keras_input(valid_batches), epochs=30, shuffle=False)
    proba = model.predict(keras_input(ChromagramBatches(chromagrams, scaler, batch_size=256)))
"""

from __future__ import annotations

import math

import numpy as np

import keras

from .scaling import ChromagramScaler, to_model_input


def keras_epoch_order(n: int) -> np.ndarray:
    """The order in which Keras's in-memory ``fit(..., shuffle=True)`` visits ``n`` rows in an epoch.

    TensorFlow: the permutation of ``ArrayDataAdapter.get_tf_dataset``
    (keras/src/trainers/data_adapters/array_data_adapter.py), drawn by the same
    ops in a ``tf.data`` function so that the op's seed is the same.  Other
    backends: ``np.random.permutation(n)``, as their array path draws it.
    """
    if keras.backend.backend() != "tensorflow":
        return np.random.permutation(n)
    import tensorflow as tf

    def permutation(_):
        indices = tf.range(n, dtype=tf.int64)
        return tf.random.shuffle(indices)

    return next(iter(tf.data.Dataset.range(1).map(permutation))).numpy()


class ChromagramBatches(keras.utils.PyDataset):
    """Batches of scaled model input (and targets) read from ``chromagrams[rows]``, a batch at a time.

    Parameters
    ----------
    chromagrams : [shape=(N, frames, bins)], an ndarray or a ``ChunkedArray`` (anything indexable by rows)
    scaler : the fitted scaler (:func:`scaling.to_model_input`)
    rows : which rows, in this order (default: all)
    targets : [shape=(len(rows), ...)], one per row of ``rows``; None for prediction (batches are ``(x,)``)
    batch_size : rows per batch; the last batch holds the rest
    shuffle : visit the rows in :func:`keras_epoch_order` (pass ``shuffle=False`` to ``fit``)
    **kwargs : ``workers``, ``use_multiprocessing``, ``max_queue_size`` of ``keras.utils.PyDataset``
    """

    def __init__(self, chromagrams, scaler: ChromagramScaler, *, rows: np.ndarray | None = None,
                 targets: np.ndarray | None = None, batch_size: int = 32, shuffle: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.chromagrams, self.scaler = chromagrams, scaler
        self.rows = np.arange(len(chromagrams)) if rows is None else np.asarray(rows, dtype=np.int64)
        if targets is not None and len(targets) != len(self.rows):
            raise ValueError(f"{len(targets)} targets for {len(self.rows)} rows")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.targets, self.batch_size, self.shuffle = targets, batch_size, shuffle
        self._order: np.ndarray | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one example of model input: (frames, bins, 1)."""
        return (*self.chromagrams.shape[1:], 1)

    def __len__(self) -> int:
        return math.ceil(len(self.rows) / self.batch_size)

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        picked = self._epoch_order()[index * self.batch_size:(index + 1) * self.batch_size]
        x = to_model_input(self.chromagrams[self.rows[picked]], self.scaler)  # (b, frames, bins, 1)
        return (x,) if self.targets is None else (x, self.targets[picked])

    def on_epoch_end(self) -> None:
        if self.shuffle and keras.backend.backend() != "tensorflow":
            self._order = None  # a new permutation next epoch, as the array path draws one

    def _epoch_order(self) -> np.ndarray:
        if self._order is None:
            self._order = keras_epoch_order(len(self.rows)) if self.shuffle else np.arange(len(self.rows))
        return self._order


def keras_input(batches: ChromagramBatches):
    """What to give Keras's ``fit``/``predict`` for ``batches``: on TensorFlow a ``tf.data`` pipeline, else themselves.

    Keras hands a ``PyDataset`` to TensorFlow through
    ``tf.data.Dataset.from_generator``.  Measured here (3000 clips, the
    default network, 2 cores, one process per route, 6 epochs): that route
    costs 10.4–11.8 s of CPU an epoch, the in-memory arrays ~10 s, and this
    one -- the batch index mapped through ``tf.numpy_function`` in order,
    two batches prefetched -- 7.6–8.4 s.  Same batches, same order, so the
    same model (``tests/test_streaming.py``).  The order is the one of the
    first epoch: on TensorFlow it never changes (:func:`keras_epoch_order`).
    """
    if keras.backend.backend() != "tensorflow":
        return batches
    import tensorflow as tf

    x_spec = tf.TensorSpec((None, *batches.input_shape), tf.float32)
    specs = (x_spec,) if batches.targets is None else (
        x_spec, tf.TensorSpec((None, *batches.targets.shape[1:]), tf.float32))

    def load(index):
        return tuple(np.asarray(part, dtype=np.float32) for part in batches[int(index)])

    def shaped(*parts):
        for part, spec in zip(parts, specs):
            part.set_shape(spec.shape)
        return parts

    batch_index = tf.data.Dataset.range(len(batches))
    loaded = batch_index.map(lambda index: tf.numpy_function(load, [index], [spec.dtype for spec in specs]),
                             num_parallel_calls=1, deterministic=True)
    return loaded.map(shaped).prefetch(2)
