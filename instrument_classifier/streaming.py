"""Feeding chromagrams to Keras batch by batch: training, and prediction over features that may not fit in memory.

:class:`ChromagramBatches` is a ``keras.utils.PyDataset`` over chromagrams
that are read on demand (a :class:`chunked_array.ChunkedArray`, or any array):
each batch reads its rows, scales them (:func:`scaling.to_model_input`) and
pairs them with their targets, so memory holds a few batches whatever the
dataset size.  Keras prefetches the next batches while the network trains on
one (``tf.data`` on TensorFlow), and uses a GPU where there is one.

Training reads every split this way, whether the chromagrams are in memory
(an ndarray) or chunked: one path, the same model from either.  The
training batches visit the rows in a fresh order every epoch, drawn from
the run's seed and the epoch (``numpy.random.default_rng([seed, epoch])``),
on every backend.  (Keras's own in-memory path, ``fit(x, y, shuffle=True)``,
drew its order with ``tf.random.shuffle`` in a ``tf.data`` function that
restarts each epoch: under a global seed every epoch got the same order on
TensorFlow, a new one on the other backends.)
In training (:mod:`training`), through :func:`keras_input`::

    batches = ChromagramBatches(chromagrams, scaler, rows=train_rows, targets=y, batch_size=32, shuffle=True, seed=42)
    model.fit(keras_input(batches, epochs=30), steps_per_epoch=len(batches), epochs=30, shuffle=False,
              validation_data=keras_input(valid_batches), callbacks=[EpochOrder(batches)])
    proba = model.predict(keras_input(ChromagramBatches(chromagrams, scaler, batch_size=256)))
"""

from __future__ import annotations

import math

import numpy as np

import keras

from .scaling import ChromagramScaler, to_model_input


class ChromagramBatches(keras.utils.PyDataset):
    """Batches of scaled model input (and targets) read from ``chromagrams[rows]``, a batch at a time.

    Parameters
    ----------
    chromagrams : [shape=(N, frames, bins)], an ndarray or a ``ChunkedArray`` (anything indexable by rows)
    scaler : the fitted scaler (:func:`scaling.to_model_input`)
    rows : which rows, in this order (default: all)
    targets : [shape=(len(rows), ...)], one per row of ``rows``; None for prediction (batches are ``(x,)``)
    batch_size : rows per batch; the last batch holds the rest
    shuffle : visit the rows in a new order every epoch, drawn from ``seed`` and the epoch
        (:meth:`order`; pass ``shuffle=False`` to ``fit``)
    seed : the seed of the orders (with ``shuffle``)
    **kwargs : ``workers``, ``use_multiprocessing``, ``max_queue_size`` of ``keras.utils.PyDataset``
    """

    def __init__(self, chromagrams, scaler: ChromagramScaler, *, rows: np.ndarray | None = None,
                 targets: np.ndarray | None = None, batch_size: int = 32, shuffle: bool = False,
                 seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.chromagrams, self.scaler = chromagrams, scaler
        self.rows = np.arange(len(chromagrams)) if rows is None else np.asarray(rows, dtype=np.int64)
        if targets is not None and len(targets) != len(self.rows):
            raise ValueError(f"{len(targets)} targets for {len(self.rows)} rows")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.targets, self.batch_size, self.shuffle, self.seed = targets, batch_size, shuffle, int(seed)
        self.epoch = 0  # the epoch whose order __getitem__ follows (EpochOrder sets it)
        self._orders: dict[int, np.ndarray] = {}

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one example of model input: (frames, bins, 1)."""
        return (*self.chromagrams.shape[1:], 1)

    def __len__(self) -> int:
        return math.ceil(len(self.rows) / self.batch_size)

    def __getitem__(self, index: int):
        return self.batch(self.epoch, index)

    def batch(self, epoch: int, index: int):
        """Batch ``index`` of epoch ``epoch``: ``(x,)`` or ``(x, targets)``, x of shape (b, frames, bins, 1)."""
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        picked = self.order(epoch)[index * self.batch_size:(index + 1) * self.batch_size]
        x = to_model_input(self.chromagrams[self.rows[picked]], self.scaler)
        return (x,) if self.targets is None else (x, self.targets[picked])

    def order(self, epoch: int) -> np.ndarray:
        """The positions in ``rows`` that epoch ``epoch`` visits, in order: a permutation with ``shuffle``."""
        if not self.shuffle:
            return np.arange(len(self.rows))
        if epoch not in self._orders:
            self._orders = {epoch: np.random.default_rng([self.seed, epoch]).permutation(len(self.rows))}
        return self._orders[epoch]


class EpochOrder(keras.callbacks.Callback):
    """Tells ``batches`` which epoch begins, so that a ``PyDataset`` read by Keras serves that epoch's order.

    Keras reads a ``PyDataset`` (on backends other than TensorFlow) lazily,
    after ``on_epoch_begin``; it also calls ``on_epoch_end`` on it outside of
    any epoch (``EpochIterator.reset``), so counting those would be off by one.
    On TensorFlow :func:`keras_input` carries the epoch itself; this does no harm there.
    """

    def __init__(self, batches: ChromagramBatches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.epoch = int(epoch)


def keras_input(batches: ChromagramBatches, *, epochs: int = 1):
    """What to give Keras's ``fit``/``predict`` for ``batches``: on TensorFlow a ``tf.data`` pipeline, else themselves.

    Shuffled batches are fed for ``epochs`` epochs in one pipeline, each in
    its own order (:meth:`ChromagramBatches.order`): give ``fit`` the same
    ``epochs`` and ``steps_per_epoch=len(batches)``, so that it draws every
    epoch from the one iterator and no callback has to tell the pipeline
    which epoch it is in (Keras creates an epoch's iterator before the epoch's
    callbacks run, and the pipeline prefetches).  Other backends get the
    ``PyDataset`` itself: give ``fit`` an :class:`EpochOrder` of it among its
    callbacks.

    Keras hands a ``PyDataset`` to TensorFlow through
    ``tf.data.Dataset.from_generator``.  Measured here (3000 clips, the
    default network, 2 cores, one process per route, 6 epochs): that route
    costs 10.4–11.8 s of CPU an epoch, the in-memory arrays ~10 s, and this
    one -- the batch index mapped through ``tf.numpy_function`` in order,
    two batches prefetched -- 7.6–8.4 s.  Same batches, same order, so the
    same model (``tests/test_streaming.py``).
    """
    if keras.backend.backend() != "tensorflow":
        return batches
    import tensorflow as tf

    x_spec = tf.TensorSpec((None, *batches.input_shape), tf.float32)
    specs = (x_spec,) if batches.targets is None else (
        x_spec, tf.TensorSpec((None, *batches.targets.shape[1:]), tf.float32))

    n = len(batches)
    passes = epochs if batches.shuffle else 1

    def load(step):
        epoch, index = divmod(int(step), n)
        return tuple(np.asarray(part, dtype=np.float32) for part in batches.batch(epoch, index))

    def shaped(*parts):
        for part, spec in zip(parts, specs):
            part.set_shape(spec.shape)
        return parts

    batch_index = tf.data.Dataset.range(passes * n)
    loaded = batch_index.map(lambda index: tf.numpy_function(load, [index], [spec.dtype for spec in specs]),
                             num_parallel_calls=1, deterministic=True)
    return loaded.map(shaped).prefetch(2)
