"""The networks: their layers and architectures (Keras, backend-neutral).

Every network is a function ``network(input_shape, n_classes, *, floor,
ceiling, db_step, seed, **options)`` returning a functional ``keras.Model``
that maps scaled chromagrams (batch, 44 time frames, 115 semitone bins, 1)
to class probabilities; :data:`NETWORKS` names them, and
:func:`build_model` builds an architecture of :mod:`architectures` (a
network and its options) by name.  Trained on fine labels (instruments), the
saved model ends in :class:`GroupSum`, which adds them up into the classes
(families).  Code here uses only ``keras`` and ``keras.ops``.  Loading a
trained model folder: :mod:`model_bundle`.

>>> model = build_model("relative-harmonic", (44, 115, 1), n_classes=7, seed=42)
"""

from __future__ import annotations

import inspect
import math
from typing import Callable

import keras
from keras import layers, ops

from .architectures import ARCHITECTURE_OPTIONS
from .cli import UserError


# ---------------------------------------------------------------------------
# Layers that use the pitch axis (axis 2 of (batch, frames, bins, channels))


@keras.saving.register_keras_serializable(package="instrument_classifier")
class RandomPitchShift(layers.Layer):
    """Augmentation: transpose each example by a random whole number of semitones.

    Bins shifted in from outside the range get ``fill_value`` (the scaled
    silence floor).  Active only in training; the identity at inference.
    """

    def __init__(self, max_shift: int = 3, fill_value: float = 0.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.max_shift = int(max_shift)
        self.fill_value = float(fill_value)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

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

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "max_shift": self.max_shift, "fill_value": self.fill_value, "seed": self.seed}


@keras.saving.register_keras_serializable(package="instrument_classifier")
class RandomLevel(layers.Layer):
    """Augmentation: a random gain, and sometimes a random low-pass, per example.

    Real files are louder or quieter than the training clips (a normalised
    file peaks near 0 dBFS, the clips near -19 dBFS) and lossy codecs cut the
    highest frequencies.  The features are log amplitudes, so a gain of g dB
    adds ``g * db_step`` (the scaled size of one dB) to every cell above the
    silence floor ``floor``, cells pushed below it become silence and cells
    pushed above ``ceiling`` (0 dB) saturate, as the extractor's would.  g is
    uniform in [-max_cut_db, +max_boost_db]; with probability
    ``lowpass_probability`` every bin from a random one in
    [lowest_cutoff, bins) upwards becomes silence.  Active only in training.
    """

    def __init__(self, max_cut_db: float = 24.0, max_boost_db: float = 24.0, db_step: float = 0.0,
                 floor: float = 0.0, ceiling: float = 1.0, lowpass_probability: float = 0.5,
                 lowest_cutoff: int = 100, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.max_cut_db = float(max_cut_db)
        self.max_boost_db = float(max_boost_db)
        self.db_step = float(db_step)
        self.floor = float(floor)
        self.ceiling = float(ceiling)
        self.lowpass_probability = float(lowpass_probability)
        self.lowest_cutoff = int(lowest_cutoff)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

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

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "max_cut_db": self.max_cut_db, "max_boost_db": self.max_boost_db,
                "db_step": self.db_step, "floor": self.floor, "ceiling": self.ceiling,
                "lowpass_probability": self.lowpass_probability, "lowest_cutoff": self.lowest_cutoff,
                "seed": self.seed}


@keras.saving.register_keras_serializable(package="instrument_classifier")
class RandomEqualiser(layers.Layer):
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
    the shape of the whole series (README, *Generalisation*).  As in
    :class:`RandomLevel`, silent cells stay silent and cells saturate at
    ``ceiling``.  Active only in training; a fresh curve every epoch.
    """

    def __init__(self, max_tilt_db: float = 12.0, max_bump_db: float = 9.0, bumps: int = 3, db_step: float = 0.0,
                 floor: float = 0.0, ceiling: float = 1.0, seed: int | None = None, max_jitter_db: float = 0.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.max_tilt_db = float(max_tilt_db)
        self.max_bump_db = float(max_bump_db)
        self.max_jitter_db = float(max_jitter_db)
        self.bumps = int(bumps)
        self.db_step = float(db_step)
        self.floor = float(floor)
        self.ceiling = float(ceiling)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

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

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "max_tilt_db": self.max_tilt_db, "max_bump_db": self.max_bump_db,
                "bumps": self.bumps, "db_step": self.db_step, "floor": self.floor, "ceiling": self.ceiling,
                "seed": self.seed, "max_jitter_db": self.max_jitter_db}


@keras.saving.register_keras_serializable(package="instrument_classifier")
class RandomSwellCut(layers.Layer):
    """Augmentation: with ``probability``, a note reaches its full level right after its onset.

    The recorded banks' bowed strings swell: from their onset they take a
    median 7 frames (0.33 s) to come within 1 dB of their loudest.  The
    small banks' strings take 1: they store a note as ~40 ms of attack and a
    loop of a few waveform cycles (``bench/bench_soundfonts.py``), and a
    player's hard bow stroke starts as fast.  The frames between the onset
    frame and the first within ``peak_db`` of the loudest are dropped, but
    for 0..``keep`` of them (uniform): the onset frame stays (its transient
    is a cue the network needs; README, *Capacity and regularisation*), the
    rest of the note moves earlier and the end fills with silence
    (``floor``).  Onset: the first frame within ``onset_db`` of the loudest.
    A note that starts at full level is left as it is.  Training only.
    """

    def __init__(self, probability: float = 0.0, keep: int = 2, onset_db: float = 20.0, peak_db: float = 1.0,
                 db_step: float = 0.0, floor: float = 0.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.probability = float(probability)
        self.keep = int(keep)
        self.onset_db = float(onset_db)
        self.peak_db = float(peak_db)
        self.db_step = float(db_step)
        self.floor = float(floor)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

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

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "probability": self.probability, "keep": self.keep,
                "onset_db": self.onset_db, "peak_db": self.peak_db, "db_step": self.db_step, "floor": self.floor,
                "seed": self.seed}


@keras.saving.register_keras_serializable(package="instrument_classifier")
class RelativeLevel(layers.Layer):
    """Levels relative to each clip's loudest cell, floored ``range_db`` below it.

    The chromagram is in absolute dB: a recording's level and its noise floor
    (a real room's -60 dB hiss, where a clean render is silent down to -120
    dB) would otherwise be features.  Subtracting each example's maximum
    removes the level; the floor hides what lies more than ``range_db`` under
    the peak, so a noise floor below it looks like silence.  ``db_step`` is
    the scaled size of one dB.  (batch, frames, bins, 1) -> same, in
    [-range_db * db_step, 0].
    """

    def __init__(self, range_db: float = 80.0, db_step: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.range_db = float(range_db)
        self.db_step = float(db_step)

    def call(self, inputs):
        peak = ops.max(inputs, axis=(1, 2, 3), keepdims=True)
        return ops.maximum(inputs - peak, ops.cast(-self.range_db * self.db_step, inputs.dtype))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "range_db": self.range_db, "db_step": self.db_step}


@keras.saving.register_keras_serializable(package="instrument_classifier")
class PitchWindow(layers.Layer):
    """Pad (with ``fill_value``) or crop the top of the pitch axis to ``positions + span - 1`` bins.

    A 'valid' convolution ``span`` bins wide then has exactly ``positions``
    outputs along pitch: output p sees bins p .. p + span - 1, the candidate
    fundamental p and the ``span - 1`` semitones above it.
    (batch, frames, bins, channels) -> (batch, frames, positions + span - 1, channels)
    """

    def __init__(self, positions: int, span: int, fill_value: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.positions = int(positions)
        self.span = int(span)
        self.fill_value = float(fill_value)

    def call(self, inputs):
        bins, needed = inputs.shape[2], self.positions + self.span - 1
        if needed <= bins:
            return inputs[:, :, :needed, :]
        return ops.pad(inputs, [[0, 0], [0, 0], [0, needed - bins], [0, 0]], constant_values=self.fill_value)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:2], self.positions + self.span - 1, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "positions": self.positions, "span": self.span,
                "fill_value": self.fill_value}


@keras.saving.register_keras_serializable(package="instrument_classifier")
class PitchMax(layers.Layer):
    """Max over the pitch axis: (batch, frames, bins, channels) -> (batch, frames, channels)."""

    def call(self, inputs):
        return ops.max(inputs, axis=2)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], input_shape[3])


@keras.saving.register_keras_serializable(package="instrument_classifier")
class GroupSum(layers.Layer):
    """Probabilities of fine classes -> probabilities of the groups they belong to.

    ``groups[k]`` is the group (class) index of fine class k; the output is
    ``p_group[g] = sum of p[k] with groups[k] == g``, e.g. instrument
    probabilities summed into family probabilities.
    (batch, n_fine) -> (batch, n_groups)
    """

    def __init__(self, groups, n_groups: int, **kwargs):
        super().__init__(**kwargs)
        self.groups = [int(g) for g in groups]
        self.n_groups = int(n_groups)

    def call(self, inputs):
        matrix = ops.one_hot(ops.convert_to_tensor(self.groups, dtype="int32"), self.n_groups, dtype=inputs.dtype)
        return ops.matmul(inputs, matrix)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n_groups)

    def get_config(self):
        return {**super().get_config(), "groups": self.groups, "n_groups": self.n_groups}


# ---------------------------------------------------------------------------
# Architectures


def _layer_seeds(seed: int | None):
    """A distinct seed for each random layer, in build order (``None`` stays ``None``).

    Two layers given the same seed draw the same random stream: their dropout
    masks (or a transposition and a gain) would be correlated.
    """
    k = 0
    while True:
        yield None if seed is None else (seed + k) % 2**32
        k += 1


def reference(input_shape, n_classes: int, *, floor: float = 0.0, ceiling: float = 1.0, db_step: float = 0.0,
              seed: int | None = None) -> keras.Model:
    """The original network: 8 convolutions in 4 blocks, ~221k parameters.

    input -> BN -> 4 x [2 x (conv 3x3, BN, ELU), maxpool 2x2, dropout 0.1]
    with 32, 64, 64, 64 filters -> flatten -> dense -> BN -> softmax.  No
    augmentation (``floor``, ``ceiling`` and ``db_step`` are unused), as the original.
    """
    seeds = _layer_seeds(seed)
    inputs = keras.Input(shape=tuple(input_shape), name="chromagram")
    x = layers.BatchNormalization()(inputs)
    for filters in (32, 64, 64, 64):
        for _ in range(2):
            x = layers.Conv2D(filters, (3, 3), padding="same")(x)
            x = layers.BatchNormalization()(x)
            x = layers.Activation("elu")(x)
        x = layers.MaxPooling2D((2, 2))(x)
        x = layers.Dropout(0.1, seed=next(seeds))(x)
    x = layers.Flatten()(x)
    x = layers.Dense(n_classes)(x)
    x = layers.BatchNormalization()(x)
    outputs = layers.Activation("softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="reference")


def harmonic(input_shape, n_classes: int, *, floor: float = 0.0, ceiling: float = 1.0, db_step: float = 0.0,
             seed: int | None = None, filters: int = 64, span: int = 37, positions: int = 88,
             frames_per_template: int = 8, template_hop: int = 4, max_shift: int = 3, max_cut_db: float = 24.0,
             max_boost_db: float = 24.0, relative_db: float | None = None, dense_units: int = 64,
             dropout: float = 0.3, eq_tilt_db: float = 0.0, eq_bump_db: float = 0.0,
             bn_momentum: float = 0.99, eq_jitter_db: float = 0.0, lowpass_probability: float = 0.5,
             lowest_cutoff: int = 100, swell_cut_probability: float = 0.0) -> keras.Model:
    """The default: learnt harmonic templates, matched at every pitch, max over pitch.

    The chromagram's bins are semitones, so a note's harmonic series has the
    same shape at every pitch (harmonic h lies round(12 log2 h) bins above the
    fundamental) and a transposition is a shift along the pitch axis.

    1. Training only: random transpositions of up to ``max_shift`` semitones,
       random gains in [-max_cut_db, +max_boost_db] and random low-passes
       (:class:`RandomLevel`: with ``lowpass_probability``, every bin from a
       random one between ``lowest_cutoff`` and the top is silenced; bin 100
       is MIDI 121, 8.9 kHz), so that a file's level and codec matter less.
       Cutting down to 4 kHz (bin 86) helps telephone-band files but costs
       more on full-band ones (README, *Generalisation*).  With
       ``swell_cut_probability``, notes that swell reach their full level
       right after their onset (:class:`RandomSwellCut`).
    2. ``filters`` templates, each ``frames_per_template`` frames (~0.37 s) by
       ``span`` semitones (the fundamental and three octaves above it, i.e.
       harmonics 1-8 and what lies between them), slid along time with hop
       ``template_hop`` and matched at each of ``positions`` candidate
       fundamentals (bins 0-87, MIDI 21-108, by default): one large 'valid'
       convolution, cheap on a CPU because it is one big matrix product.
    3. Max over the candidate fundamentals: how well each template fits the
       note, wherever it is; the same for a transposed note.
       (B, 10, 88, F) -> (B, 10, F).  Then batch norm and ELU, on the small
       pooled tensor only.
    4. A time convolution over the template responses, mean and max over time.
    5. The register matters too (instruments' ranges differ), so the input's
       mean level per octave joins the timbre descriptor before the classifier.
    """
    frames, seeds = input_shape[0], _layer_seeds(seed)
    inputs = keras.Input(shape=tuple(input_shape), name="chromagram")
    x = RandomPitchShift(max_shift, fill_value=floor, seed=next(seeds), name="pitch_shift")(inputs)
    x = RandomLevel(max_cut_db, max_boost_db, db_step=db_step, floor=floor, ceiling=ceiling,
                    lowpass_probability=lowpass_probability, lowest_cutoff=lowest_cutoff, seed=next(seeds),
                    name="level")(x)
    if swell_cut_probability:  # its own random stream, so that it leaves the other layers' draws as they were
        x = RandomSwellCut(swell_cut_probability, db_step=db_step, floor=floor,
                           seed=None if seed is None else (seed + 7907) % 2**32, name="swell_cut")(x)
    if eq_tilt_db or eq_bump_db:
        x = RandomEqualiser(eq_tilt_db, eq_bump_db, db_step=db_step, floor=floor, ceiling=ceiling, seed=next(seeds),
                            max_jitter_db=eq_jitter_db, name="equaliser")(x)
    if relative_db:
        x = RelativeLevel(relative_db, db_step, name="relative_level")(x)
        floor = -relative_db * db_step
    register = layers.Flatten(name="register")(layers.AveragePooling2D((frames, 12), name="octave_levels")(x))
    x = PitchWindow(positions, span, fill_value=floor, name="pitch_window")(x)         # (B, 44, P + span - 1, 1)
    x = layers.Conv2D(filters, (frames_per_template, span), strides=(template_hop, 1), padding="valid",
                      name="harmonic_templates")(x)                                     # (B, 10, P, F)
    x = PitchMax(name="max_over_pitch")(x)                                              # (B, 10, F)
    x = layers.BatchNormalization(momentum=bn_momentum)(x)
    x = layers.Activation("elu")(x)
    x = layers.Conv1D(filters, 3, padding="same", use_bias=False, name="envelope")(x)
    x = layers.BatchNormalization(momentum=bn_momentum)(x)
    x = layers.Activation("elu")(x)
    timbre = layers.Concatenate()([layers.GlobalAveragePooling1D()(x), layers.GlobalMaxPooling1D()(x)])
    x = layers.Concatenate(name="descriptor")([timbre, register])
    x = layers.Dropout(dropout, seed=next(seeds))(x)
    x = layers.Dense(dense_units, activation="elu")(x)
    x = layers.Dropout(dropout, seed=next(seeds))(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="harmonic")


NETWORKS: dict[str, Callable[..., keras.Model]] = {
    "harmonic": harmonic,
    "reference": reference,
}
# The architectures by name (architectures.py): a network and its options.
ARCHITECTURES = {name: NETWORKS[network] for name, (network, _) in ARCHITECTURE_OPTIONS.items()}


# The allowed range of each network option (low, high), inclusive; None: no bound that side.
OPTION_BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "filters": (1, None), "span": (1, None), "positions": (1, None), "frames_per_template": (1, None),
    "template_hop": (1, None), "max_shift": (0, None), "max_cut_db": (0, None), "max_boost_db": (0, None),
    "relative_db": (0, None), "dense_units": (1, None), "dropout": (0, 0.95), "eq_tilt_db": (0, None),
    "eq_bump_db": (0, None), "bn_momentum": (0, 0.999), "eq_jitter_db": (0, None),
    "lowpass_probability": (0, 1), "lowest_cutoff": (0, None), "swell_cut_probability": (0, 1),
}
# Set by the training itself, never by an option.
_NOT_OPTIONS = ("input_shape", "n_classes", "floor", "ceiling", "db_step", "seed")


def check_options(arch: str, options: dict, input_shape) -> dict:
    """``options`` checked (whole numbers as ints); UserError, one line, for an option the architecture
    lacks, of the wrong type or out of its range."""
    network, _ = ARCHITECTURE_OPTIONS[arch]
    parameters = inspect.signature(NETWORKS[network]).parameters
    known = [name for name in parameters if name not in _NOT_OPTIONS]
    for name, value in options.items():
        if name not in known:
            raise UserError(f"architecture {arch} has no option {name!r} "
                            f"(its options: {', '.join(known) if known else 'none'})")
        default = parameters[name].default
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not numeric and not (value is None and default is None):
            raise UserError(f"option {name} of architecture {arch} must be a finite number"
                            f"{' (or null: off)' if default is None else ''}, got {value!r}")
        if isinstance(default, int) and not isinstance(default, bool) and value != int(value):
            raise UserError(f"option {name} of architecture {arch} must be a whole number, got {value!r}")
        low, high = OPTION_BOUNDS.get(name, (None, None))
        if name in ("positions", "span", "lowest_cutoff"):  # at most the input's pitch bins
            high = input_shape[1] - (1 if name == "lowest_cutoff" else 0)
        if value is not None and ((low is not None and value < low) or (high is not None and value > high)):
            bounds = f"{low if low is not None else '-inf'} to {high if high is not None else 'inf'}"
            raise UserError(f"option {name} of architecture {arch} must be in {bounds}, got {value!r}")
    return {name: int(value) if isinstance(parameters[name].default, int) and value is not None else value
            for name, value in options.items()}


def build_model(arch: str, input_shape, n_classes: int, *, floor: float = 0.0, ceiling: float = 1.0,
                db_step: float = 0.0, seed: int | None = None, options: dict | None = None) -> keras.Model:
    """Build the named architecture; UserError for an unknown name.

    ``floor`` and ``ceiling`` are the scaled values of silence and of 0 dB,
    ``db_step`` the scaled size of one dB (for the augmentations); ``seed``
    seeds them and dropout.  ``options`` are further keyword arguments of the
    architecture's network function, over those the architecture sets
    (``architectures.ARCHITECTURE_OPTIONS``), e.g. ``{"filters": 128}``.
    """
    if arch not in ARCHITECTURES:
        raise UserError(f"unknown architecture {arch!r} (choose from: {', '.join(ARCHITECTURES)})")
    network, defaults = ARCHITECTURE_OPTIONS[arch]
    options = check_options(arch, options or {}, input_shape)
    try:
        return NETWORKS[network](tuple(input_shape), n_classes, floor=floor, ceiling=ceiling, db_step=db_step,
                                 seed=seed, **{**defaults, **options})
    except (TypeError, ValueError) as error:  # an unknown option, or a value Keras refuses (filters=0, dropout=1.5)
        raise UserError(f"bad option for architecture {arch}: {str(error).splitlines()[0]}") from None
