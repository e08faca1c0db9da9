"""The training-only augmentations of the networks (Keras layers, backend-neutral).

Each draws fresh values per example in training and is the identity at
inference: a transposition, a gain and a low-pass, an equaliser, a note
that reaches full level at once.  Inputs are scaled chromagrams (batch, 44
time frames, 115 semitone bins, 1): ``floor`` is the scaled silence,
``ceiling`` 0 dB, ``db_step`` the scaled size of one dB.  :mod:`models`
builds them into the networks.
"""

from __future__ import annotations

import keras
from keras import layers, ops


class _Augmentation(layers.Layer):
    """What the augmentations share: a seed generator, the input's shape out, and a config of the
    constructor arguments named in ``CONFIG`` (saved with the model, so that it loads as trained)."""

    CONFIG: tuple[str, ...] = ()

    def __init__(self, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), **{name: getattr(self, name) for name in self.CONFIG}, "seed": self.seed}


@keras.saving.register_keras_serializable(package="instrument_classifier")
class RandomPitchShift(_Augmentation):
    """Augmentation: transpose each example by a random whole number of semitones.

    Bins shifted in from outside the range get ``fill_value`` (the scaled
    silence floor).  Active only in training; the identity at inference.
    """

    CONFIG = ("max_shift", "fill_value")

    def __init__(self, max_shift: int = 3, fill_value: float = 0.0, seed: int | None = None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.max_shift = int(max_shift)
        self.fill_value = float(fill_value)

    def call(self, inputs, training=False):
        if not training or self.max_shift == 0:
            return inputs
        batch, bins = ops.shape(inputs)[0], inputs.shape[2]
        shift = keras.random.randint((batch, 1), -self.max_shift, self.max_shift + 1, seed=self.seed_generator)
        source = ops.arange(bins, dtype="int32")[None, :] - ops.cast(shift, "int32")  # (batch, bins)
        inside = ops.logical_and(source >= 0, source < bins)
        source = ops.clip(source, 0, bins - 1)
        source = ops.broadcast_to(source[:, None, :, None], ops.shape(inputs))
        shifted = ops.take_along_axis(inputs, source, axis=2)
        return ops.where(inside[:, None, :, None], shifted, ops.cast(self.fill_value, inputs.dtype))


@keras.saving.register_keras_serializable(package="instrument_classifier")
class RandomLevel(_Augmentation):
    """Augmentation: a random gain, and sometimes a random low-pass, per example.

    Real files are louder or quieter than the training clips (a normalised
    file peaks near 0 dBFS, the seed's clean clips near -19 dBFS) and lossy codecs cut the
    highest frequencies.  The features are log amplitudes, so a gain of g dB
    adds ``g * db_step`` (the scaled size of one dB) to every cell above the
    silence floor ``floor``, cells pushed below it become silence and cells
    pushed above ``ceiling`` (0 dB) saturate, as the extractor's would.  g is
    uniform in [-max_cut_db, +max_boost_db]; with probability
    ``lowpass_probability`` every bin from a random one in
    [lowest_cutoff, bins] upwards becomes silence (a draw of ``bins`` cuts
    nothing: 1 in 16 at the defaults).  Active only in training.
    """

    CONFIG = ("max_cut_db", "max_boost_db", "db_step", "floor", "ceiling", "lowpass_probability", "lowest_cutoff")

    def __init__(self, max_cut_db: float = 24.0, max_boost_db: float = 24.0, db_step: float = 0.0,
                 floor: float = 0.0, ceiling: float = 1.0, lowpass_probability: float = 0.5,
                 lowest_cutoff: int = 100, seed: int | None = None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.max_cut_db = float(max_cut_db)
        self.max_boost_db = float(max_boost_db)
        self.db_step = float(db_step)
        self.floor = float(floor)
        self.ceiling = float(ceiling)
        self.lowpass_probability = float(lowpass_probability)
        self.lowest_cutoff = int(lowest_cutoff)

    def call(self, inputs, training=False):
        if not training or self.db_step == 0:
            return inputs
        batch, bins = ops.shape(inputs)[0], inputs.shape[2]
        floor = ops.cast(self.floor, inputs.dtype)
        gain = keras.random.uniform((batch, 1, 1, 1), -self.max_cut_db, self.max_boost_db, seed=self.seed_generator)
        louder = ops.clip(inputs + ops.cast(gain * self.db_step, inputs.dtype), self.floor, self.ceiling)
        x = ops.where(inputs > floor, louder, inputs)
        cutoff = keras.random.randint((batch, 1, 1, 1), min(self.lowest_cutoff, bins), bins + 1,
                                      seed=self.seed_generator)
        cut = keras.random.uniform((batch, 1, 1, 1), seed=self.seed_generator) < self.lowpass_probability
        above = ops.reshape(ops.arange(bins, dtype="int32"), (1, 1, bins, 1)) >= ops.cast(cutoff, "int32")
        return ops.where(ops.logical_and(cut, above), floor, x)


@keras.saving.register_keras_serializable(package="instrument_classifier")
class RandomEqualiser(_Augmentation):
    """Augmentation: a random smooth equaliser curve over pitch, per example.

    A microphone, a room and a sound bank each colour a note with their own
    frequency response; in a log-amplitude chromagram that is a curve added
    along the pitch axis.  The curve is a tilt, uniform in +-``max_tilt_db``
    from the lowest bin to the highest, plus ``bumps`` bell curves of
    +-``max_bump_db`` at random pitches, 3-18 semitones wide, plus an
    independent gain uniform in +-``max_jitter_db`` for every bin: two sound
    banks' recordings of one instrument differ partial by partial (harmonic
    3 of the gs violin lies 6 dB under fluid's, harmonic 4 16 dB), not only
    smoothly; a network that may not trust any one partial's level learns
    the shape of the whole series (docs/generalisation.md, *One change at a time*).  As in
    :class:`RandomLevel`, silent cells stay silent and cells saturate at
    ``ceiling``.  Active only in training; a fresh curve every epoch.
    """

    CONFIG = ("max_tilt_db", "max_bump_db", "bumps", "db_step", "floor", "ceiling", "max_jitter_db")

    def __init__(self, max_tilt_db: float = 12.0, max_bump_db: float = 9.0, bumps: int = 3, db_step: float = 0.0,
                 floor: float = 0.0, ceiling: float = 1.0, seed: int | None = None, max_jitter_db: float = 0.0,
                 **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.max_tilt_db = float(max_tilt_db)
        self.max_bump_db = float(max_bump_db)
        self.max_jitter_db = float(max_jitter_db)
        self.bumps = int(bumps)
        self.db_step = float(db_step)
        self.floor = float(floor)
        self.ceiling = float(ceiling)

    def call(self, inputs, training=False):
        if not training or self.db_step == 0:
            return inputs
        batch, bins = ops.shape(inputs)[0], inputs.shape[2]
        position = ops.reshape(ops.arange(bins, dtype="float32"), (1, 1, bins, 1))          # (1, 1, bins, 1)
        tilt = keras.random.uniform((batch, 1, 1, 1), -self.max_tilt_db, self.max_tilt_db, seed=self.seed_generator)
        curve = tilt * (position / (bins - 1) - 0.5)
        for _ in range(self.bumps):
            gain = keras.random.uniform((batch, 1, 1, 1), -self.max_bump_db, self.max_bump_db,
                                        seed=self.seed_generator)
            centre = keras.random.uniform((batch, 1, 1, 1), 0.0, float(bins), seed=self.seed_generator)
            width = keras.random.uniform((batch, 1, 1, 1), 3.0, 18.0, seed=self.seed_generator)
            curve = curve + gain * ops.exp(-0.5 * ops.square((position - centre) / width))
        if self.max_jitter_db:
            jitter = keras.random.uniform((batch, bins), -self.max_jitter_db, self.max_jitter_db,
                                          seed=self.seed_generator)
            curve = curve + ops.reshape(jitter, (batch, 1, bins, 1))
        shaped = ops.clip(inputs + ops.cast(curve * self.db_step, inputs.dtype), self.floor, self.ceiling)
        return ops.where(inputs > ops.cast(self.floor, inputs.dtype), shaped, inputs)


@keras.saving.register_keras_serializable(package="instrument_classifier")
class RandomSwellCut(_Augmentation):
    """Augmentation: with ``probability``, a note reaches its full level right after its onset.

    The recorded banks' bowed strings swell: from their onset they take a
    median 7 frames (0.33 s) to come within 1 dB of their loudest.  The
    small banks' strings take 1: they store a note as ~40 ms of attack and a
    loop of a few waveform cycles (``bench/bench_soundfonts.py``), and a
    player's hard bow stroke starts as fast.  The frames between the onset
    frame and the first within ``peak_db`` of the loudest are dropped, but
    for 0..``keep`` of them (uniform): the onset frame stays (its transient
    is a cue the network needs; docs/generalisation.md, *Capacity and regularisation*), the
    rest of the note moves earlier and the end fills with silence
    (``floor``).  Onset: the first frame within ``onset_db`` of the loudest.
    A note that starts at full level is left as it is.  Training only.
    """

    CONFIG = ("probability", "keep", "onset_db", "peak_db", "db_step", "floor")

    def __init__(self, probability: float = 0.0, keep: int = 2, onset_db: float = 20.0, peak_db: float = 1.0,
                 db_step: float = 0.0, floor: float = 0.0, seed: int | None = None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.probability = float(probability)
        self.keep = int(keep)
        self.onset_db = float(onset_db)
        self.peak_db = float(peak_db)
        self.db_step = float(db_step)
        self.floor = float(floor)

    def call(self, inputs, training=False):
        if not training or self.probability == 0:
            return inputs
        batch, frames = ops.shape(inputs)[0], inputs.shape[1]
        level = ops.max(inputs, axis=(2, 3))                                                # (B, T)
        peak = ops.max(level, axis=1, keepdims=True)
        onset = ops.cast(ops.argmax(ops.cast(level >= peak - self.onset_db * self.db_step, "int32"), axis=1),
                         "int32")
        full = ops.cast(ops.argmax(ops.cast(level >= peak - self.peak_db * self.db_step, "int32"), axis=1),
                        "int32")
        kept = ops.cast(keras.random.randint((batch,), 0, self.keep + 1, seed=self.seed_generator), "int32")
        cut = ops.maximum(full - onset - 1 - kept, 0)                                       # frames dropped
        chosen = keras.random.uniform((batch,), seed=self.seed_generator) < self.probability
        cut = ops.where(chosen, cut, 0)[:, None]                                            # (B, 1)
        time = ops.arange(frames, dtype="int32")[None, :]
        source = ops.where(time > onset[:, None], time + cut, time)                         # (B, T)
        inside = source < frames
        source = ops.broadcast_to(ops.clip(source, 0, frames - 1)[:, :, None, None], ops.shape(inputs))
        moved = ops.take_along_axis(inputs, source, axis=1)
        return ops.where(inside[:, :, None, None], moved, ops.cast(self.floor, inputs.dtype))

